"""`hinas denoise` against BM3D on one photo, startup included, in one run (issue #13, target 3).

Times, each as a fresh process (wall clock, best of ``--repeat``):
``hinas --help``; ``python -c "import torch"``; ``hinas denoise --sigma S`` on a grey and on a
colour version of one BSD500 test photo with seeded Gaussian noise; and BM3D (``bm3d.bm3d``)
/ CBM3D (``bm3d.bm3d_rgb``) on the same noisy images, also in a fresh process that reads the
image and writes the result. Prints the times, the ratios (denoise / BM3D, --help / import
torch) and the machine's load average, which matters on a shared box.

    python benchmarks/bench_denoise_cli.py --bsds-root PATH [--sigma 30] [--image 0] [--repeat 1]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

BM3D = ("import sys, numpy as np, bm3d\nfrom PIL import Image\n"
        "x = np.asarray(Image.open(sys.argv[1]), np.float32) / 255\n"
        "f = bm3d.bm3d_rgb if x.ndim == 3 else bm3d.bm3d\n"
        "y = f(x, float(sys.argv[3]) / 255)\n"
        "Image.fromarray((np.clip(y, 0, 1) * 255).round().astype(np.uint8)).save(sys.argv[2])\n")


TORCH = "python -c 'import torch'"


def timed(argv, repeat: int, env=None) -> tuple:
    """(wall seconds, CPU seconds of the child) of the fastest of ``repeat`` runs."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run(argv, capture_output=True, text=True, env=env)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, (time.perf_counter() - t0, c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime))
        if r.returncode != 0:
            sys.exit(f"failed: {' '.join(map(str, argv))}\n{r.stderr}")
    return best


def psnr(a, b) -> float:
    return float(10 * np.log10(255.0 ** 2 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bsds-root", required=True)
    ap.add_argument("--sigma", type=float, default=30.0)
    ap.add_argument("--image", type=int, default=0, help="index into the sorted BSD500 test images")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    src = sorted((Path(args.bsds_root) / "images" / "test").glob("*.jpg"))[args.image]
    clean = np.asarray(Image.open(src).convert("RGB"), np.float64)
    rng = np.random.default_rng(0)
    py = sys.executable
    hinas = [py, "-m", "hinas.pipeline.cli"]
    rows, psnrs = {}, {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        grey_clean = np.asarray(Image.open(src).convert("L"), np.float64)
        for kind, img in (("grey", grey_clean), ("colour", clean)):
            noisy = np.clip(img + rng.normal(0, args.sigma, img.shape), 0, 255).round().astype(np.uint8)
            Image.fromarray(noisy).save(tmp / f"{kind}.png")
            psnrs[f"noisy {kind}"] = psnr(noisy, img)
        rows["hinas --help"] = timed(hinas + ["--help"], args.repeat)
        rows[TORCH] = timed([py, "-c", "import torch"], args.repeat)
        for kind, img in (("grey", grey_clean), ("colour", clean)):
            out = tmp / f"hinas_{kind}.png"
            rows[f"hinas denoise {kind}"] = timed(hinas + ["denoise", "--sigma", f"{args.sigma:g}", tmp / f"{kind}.png", out],
                                                  args.repeat)
            psnrs[f"hinas {kind}"] = psnr(Image.open(out), img)
            out = tmp / f"bm3d_{kind}.png"
            rows[f"{'BM3D' if kind == 'grey' else 'CBM3D'} {kind}"] = timed(
                [py, "-c", BM3D, tmp / f"{kind}.png", out, f"{args.sigma:g}"], args.repeat)
            psnrs[f"{'BM3D' if kind == 'grey' else 'CBM3D'} {kind}"] = psnr(Image.open(out), img)
    load_after = os.getloadavg()

    print(f"image {src.name} {clean.shape[1]}x{clean.shape[0]}, sigma {args.sigma:g}, "
          f"{os.cpu_count()} CPUs, load average {load_before[0]:.1f} before / {load_after[0]:.1f} after")
    print(f"{'command':32s} {'wall s':>8s} {'CPU s':>8s}")
    for name, (sec, cpu) in rows.items():
        print(f"{name:32s} {sec:8.2f} {cpu:8.2f}")
    for what, a, b in (("hinas --help / import torch", "hinas --help", TORCH),
                       ("hinas denoise / BM3D (grey)", "hinas denoise grey", "BM3D grey"),
                       ("hinas denoise / CBM3D (colour)", "hinas denoise colour", "CBM3D colour")):
        print(f"ratio {what:31s}: wall {rows[a][0] / rows[b][0]:.2f}, CPU {rows[a][1] / rows[b][1]:.2f}")
    print("PSNR dB: " + ", ".join(f"{k} {v:.2f}" for k, v in psnrs.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
