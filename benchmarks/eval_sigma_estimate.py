"""How well ``hinas denoise --sigma auto`` estimates the noise level (issue #13, target 5).

Adds seeded Gaussian noise at each sigma to BSD500 test photos (grey and colour, values kept
unclipped and then clipped to [0, 255] and rounded, as a saved 8-bit photo would be) and
runs :func:`hinas.pipeline.denoise.estimate_sigma` beside scikit-image's ``estimate_sigma``.
Prints per sigma and estimator the mean estimate, mean and max absolute error, and how often the nearest shipped model (30/50/70) is the one a
correct sigma would pick.

    python benchmarks/eval_sigma_estimate.py --bsds-root PATH [--images 50] [--sigmas 15 30 45 60 75]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from hinas import models as shipped
from hinas.pipeline.denoise import estimate_sigma


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bsds-root", required=True)
    ap.add_argument("--images", type=int, default=50, help="the first N sorted test images")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[15, 30, 45, 60, 75])
    args = ap.parse_args()
    files = sorted((Path(args.bsds_root) / "images" / "test").glob("*.jpg"))[:args.images]
    from skimage.restoration import estimate_sigma as skimage_sigma

    estimators = {"hinas": estimate_sigma,
                  "skimage": lambda x: 255 * float(skimage_sigma(x, channel_axis=-1 if x.ndim == 3 else None,
                                                                 average_sigmas=True))}
    print(f"{len(files)} BSD500 test images, 8-bit clipped noisy input")
    print(f"{'mode':7s} {'sigma':>5s} {'estimator':9s} {'mean est':>9s} {'mean |err|':>10s} {'max |err|':>9s} {'same model':>10s}")
    for mode in ("grey", "colour"):
        for sigma in args.sigmas:
            est = {name: [] for name in estimators}
            for i, f in enumerate(files):
                img = np.asarray(Image.open(f).convert("L" if mode == "grey" else "RGB"), np.float64)
                rng = np.random.default_rng([int(sigma), i])
                noisy = np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).round() / 255
                for name, fn in estimators.items():
                    est[name].append(fn(noisy))
            for name, e in est.items():
                e = np.array(e)
                same = np.mean([shipped.for_sigma(v)["sigma"] == shipped.for_sigma(sigma)["sigma"] for v in e])
                err = np.abs(e - sigma)
                print(f"{mode:7s} {sigma:5.0f} {name:9s} {e.mean():9.2f} {err.mean():10.2f} {err.max():9.2f} {same:10.0%}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
