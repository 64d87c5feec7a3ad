"""Seconds per search step and per search epoch of the HiNAS supernet.

One search step = a weight step (SGD) on a Train-W batch + an architecture step (Adam) on a
Train-A batch, as after the warm-up. Batches are random crops of real images (BSD500 when
--bsds-root or $HINAS_BSDS500_ROOT is given, else scikit-image's sample images) with
Gaussian noise. An epoch of the paper's BSD500 search is ceil(147 / 12) = 13 such steps
(one crop per Train-W image) plus validation on 6 images; this prints the step time and
that estimate. Several DCNv2 kernels can be compared in the same run (--dcn).

    python benchmarks/bench_search.py --preset denoise --device cuda --dcn torchvision sampled
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time

import numpy as np
import torch

from hinas_core import preset
from hinas_core.loss import HiNASLoss
from hinas_core.network import Supernet
from hinas_core.ops import DeformConv2d


def _images(root):
    from hinas.datasets import load_bsd500, sample_set

    try:
        return load_bsd500("train", root)
    except Exception:
        return sample_set("train")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(net, sampler, rng, batch, steps, warmup, device):
    crit = HiNASLoss()
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=1e-3, weight_decay=1e-3)
    times = []
    for i in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        for opt in (w_opt, a_opt):
            noisy, clean = sampler.sample(rng, batch)
            noisy, clean = noisy.to(device), clean.to(device)
            opt.zero_grad(set_to_none=True)
            crit(net(noisy), clean).backward()
            opt.step()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="denoise")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--sharing", choices=["on", "off", "both"], default="on")
    ap.add_argument("--dcn", nargs="+", default=["auto"], choices=DeformConv2d.IMPLS)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--bsds-root", default=None)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from hinas.datasets import PatchSampler

    device = torch.device(args.device)
    sampler = PatchSampler(_images(args.bsds_root), sigma=30, patch_size=args.size)
    rows = []
    for sharing in ([True, False] if args.sharing == "both" else [args.sharing == "on"]):
        for impl in args.dcn:
            torch.manual_seed(0)
            cfg = dataclasses.replace(preset(args.preset), cell_sharing=sharing)
            net = Supernet(cfg).to(device)
            for m in net.modules():
                if isinstance(m, DeformConv2d):
                    m.impl = impl
            med, best = time_steps(net, sampler, np.random.default_rng(0), args.batch, args.steps, args.warmup, device)
            row = {"sharing": sharing, "dcn": impl, "step_s_median": med, "step_s_min": best,
                   "epoch_s_estimate": med * math.ceil(147 / args.batch)}
            rows.append(row)
            print(f"sharing={'on ' if sharing else 'off'} dcn={impl:12s} search step (W+A) median {med * 1000:8.1f} ms"
                  f" (min {best * 1000:.1f}); paper-epoch training estimate {row['epoch_s_estimate']:.1f} s", flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result = {"preset": args.preset, "batch": args.batch, "size": args.size, "device": name,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
