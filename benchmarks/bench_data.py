"""Data-side throughput: training patches per second and evaluation images per second.

Prints figures; it is not a test. Usage::

    python benchmarks/bench_data.py [--root BSDS500_ROOT] [--seconds 5] [--sigma 30]

Measures, on BSD500 (gray):
* decode vs cache load of the 300 training images;
* training batches (12 x 64x64, 8 augmentations, Gaussian noise) from the in-memory images with
  ``PatchSampler`` (the fast path), and the same through ``PatchDataset`` + ``DataLoader``;
* evaluation of the 200 test images with an identity denoiser, paper (64x64 patch) protocol and
  whole-image protocol, PSNR/SSIM included.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hinas.datasets import PatchDataset, PatchSampler, evaluate, load_bsd500, noisy_pairs


def _rate(step, seconds: float) -> tuple[float, int]:
    step()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return n / (time.perf_counter() - t0), n


def main() -> None:
    default_root = os.environ.get("HINAS_BSDS500_ROOT") or str(Path(__file__).resolve().parents[2] / "shared/datasets/BSDS500")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=default_root, help="BSDS500 root (default: $HINAS_BSDS500_ROOT or ../shared)")
    ap.add_argument("--seconds", type=float, default=5.0, help="time per training measurement")
    ap.add_argument("--sigma", type=float, default=30.0)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), numpy {np.__version__}, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as cache:  # a fresh cache: the first load really decodes
        t0 = time.perf_counter()
        load_bsd500("train", args.root, cache_dir=cache)
        t1 = time.perf_counter()
        train = load_bsd500("train", args.root, cache_dir=cache)
        t2 = time.perf_counter()
        test_images = load_bsd500("test", args.root, cache_dir=cache)
    print(f"BSD500 train (300 gray): decode + write cache {t1 - t0:.2f} s, load from cache {t2 - t1:.3f} s")

    sampler = PatchSampler(train, args.sigma)
    rng = np.random.default_rng(0)
    per_s, n = _rate(lambda: sampler.sample(rng, args.batch), args.seconds)
    print(f"training patches, PatchSampler.sample (batch {args.batch}, 64x64, 8 augmentations, noise): "
          f"{per_s * args.batch:,.0f} patches/s ({n} batches)")

    loader = torch.utils.data.DataLoader(PatchDataset(sampler, length=10**9), batch_size=args.batch)
    it = iter(loader)
    per_s, n = _rate(lambda: next(it), args.seconds)
    print(f"training patches, PatchDataset + DataLoader(num_workers=0): {per_s * args.batch:,.0f} patches/s ({n} batches)")

    test = noisy_pairs(test_images, args.sigma, seed=0)
    for protocol in ("patch", "whole"):
        t0 = time.perf_counter()
        res = evaluate(lambda x: x, test, protocol=protocol, sigma=args.sigma)
        wall = time.perf_counter() - t0
        print(f"evaluation, {protocol} protocol, identity denoiser, 200 test images: {len(test) / wall:.1f} images/s "
              f"({wall:.2f} s wall, of which denoise+tiling {res.seconds:.2f} s; PSNR {res.psnr:.2f} dB, SSIM {res.ssim:.4f})")


if __name__ == "__main__":
    main()
