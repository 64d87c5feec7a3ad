"""Colour denoising with the shipped grey models (issue #13, target 4), in one run: the
opponent-transform path of ``hinas denoise`` against each of R, G, B through the grey model
on its own and against CBM3D (``bm3d.bm3d_rgb``), on colour BSD500 test photos.

Central ``--crop`` x ``--crop`` crops of the first ``--images`` sorted test images (the CPU
is slow for whole images), seeded Gaussian noise (seed = 1000 sigma + image index), values
unclipped as in the paper's protocol; PSNR in dB on [0, 1], averaged over the images.

    python benchmarks/eval_denoise_colour.py --bsds-root PATH [--images 3] [--crop 128] [--sigmas 30 50 70]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import bm3d
import numpy as np
from PIL import Image

from hinas import models as shipped
from hinas.pipeline.denoise import denoise_gray, denoise_rgb, load_denoiser


def psnr(a, b) -> float:
    return 10 * math.log10(1 / float(np.mean((np.asarray(a, np.float64) - b) ** 2)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bsds-root", required=True)
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[30, 50, 70])
    args = ap.parse_args()
    files = sorted((Path(args.bsds_root) / "images" / "test").glob("*.jpg"))[:args.images]
    print(f"{len(files)} BSD500 colour test images, central {args.crop}x{args.crop} crops, PSNR dB")
    methods = ("noisy", "opponent (hinas denoise)", "per RGB channel", "CBM3D")
    print("| sigma | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for sigma in args.sigmas:
        net, _, _ = load_denoiser(shipped.for_sigma(sigma)["path"])
        gray = lambda c: denoise_gray(net, c)  # noqa: E731
        scores = {m: [] for m in methods}
        for i, f in enumerate(files):
            img = np.asarray(Image.open(f).convert("RGB"), np.float32) / 255
            h, w, _ = img.shape
            t, l = (h - args.crop) // 2, (w - args.crop) // 2
            img = img[t:t + args.crop, l:l + args.crop]
            noisy = (img + np.random.default_rng(int(1000 * sigma) + i).normal(0, sigma / 255, img.shape)).astype(np.float32)
            outs = {"noisy": np.clip(noisy, 0, 1), "opponent (hinas denoise)": denoise_rgb(gray, noisy),
                    "per RGB channel": denoise_rgb(gray, noisy, "rgb"),
                    "CBM3D": np.clip(bm3d.bm3d_rgb(noisy, sigma / 255), 0, 1)}
            for m in methods:
                scores[m].append(psnr(outs[m], img))
        print(f"| {sigma:g} | " + " | ".join(f"{np.mean(scores[m]):.2f}" for m in methods) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
