"""Inference time for the BSD500 test-200 images: a HiNAS network next to DnCNN, in one run.

Each model denoises the 200 noisy test images (whole images, 321x481 or 481x321; images of
one orientation are batched), timed from tensors already on the device to outputs on the
device, in fp32 and with bf16 autocast, as trained and with BatchNorm folded into the convs
(``hinas_core.inference.fold_batchnorm``, plus channels-last memory for bf16). A model is either a trained model file (``--model``)
or built at random from a spec (speed does not depend on the weights). Prints seconds per
model and precision and the HiNAS / DnCNN ratio.

    python benchmarks/bench_inference.py --device cuda --bsds-root PATH [--model models/hinas_sigma30.pt]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time

import numpy as np
import torch
from _common import device_name, write_json

from hinas_core.genotype import Genotype
from hinas_core.inference import fold_batchnorm
from hinas_core.models import build_model, hinas_spec, load_model
from hinas_core.ops import configure_dcn


def batches(root, sigma: float, device, batch: int, max_images: int = 0):
    from hinas.datasets import load_bsd500, noisy_pairs

    images = load_bsd500("test", root)
    if max_images:
        images = images.subset(range(min(max_images, len(images))), images.name)
    pairs = noisy_pairs(images, sigma, seed=0)
    by_shape = {}
    for p in pairs:
        by_shape.setdefault(p.input.shape[:2], []).append(p.input)
    out = []
    for imgs in by_shape.values():
        for i in range(0, len(imgs), batch):
            out.append(torch.from_numpy(np.stack(imgs[i:i + batch])[:, None].astype(np.float32)).to(device))
    return out, len(pairs)


VARIANTS = (  # name, bf16 autocast, fold BN, channels-last, torch.compile
    ("fp32", False, False, False, False),
    ("bf16", True, False, False, False),
    ("fp32 folded", False, True, False, False),
    ("bf16 folded channels-last", True, True, True, False),
    ("fp32 folded channels-last compiled", False, True, True, True),
    ("bf16 folded channels-last compiled", True, True, True, True),
)


def prepare(model, fold: bool, compiled: bool):
    """A copy of ``model`` with BatchNorm folded, and compiled (DCNv2 through the sampled kernel,
    which the compiler fuses)."""
    m = fold_batchnorm(copy.deepcopy(model)) if fold else model
    if compiled:
        configure_dcn(m, impl="sampled", recompute=False)
        m = torch.compile(m, dynamic=False)
    return m


@torch.no_grad()
def time_model(model, inputs, device, bf16: bool, repeats: int, channels_last: bool = False) -> float:
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        inputs = [x.contiguous(memory_format=torch.channels_last) for x in inputs]
    times = []
    for _ in range(repeats + 1):  # the first pass is warm-up (cuDNN autotuning, compilation)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with ctx:
            for x in inputs:
                model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a trained HiNAS model file (default: the example genotype at 0.63 M parameters)")
    ap.add_argument("--bsds-root", default=None, help="BSDS500 root (default: $HINAS_BSDS500_ROOT)")
    ap.add_argument("--sigma", type=float, default=30)
    ap.add_argument("--batch", type=int, default=8, help="images per forward pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-images", type=int, default=0, help="only the first N test images (0 = all 200)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--variants", nargs="+", default=[v[0] for v in VARIANTS], choices=[v[0] for v in VARIANTS],
                    metavar="VARIANT", help="which of: " + "; ".join(repr(v[0]) for v in VARIANTS) + " (default: all)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    if args.model:
        hinas, _, _ = load_model(args.model, device)
    else:
        hinas = build_model(hinas_spec(Genotype.load("example_denoise"), target_params=630_000)).to(device)
    dncnn = build_model({"kind": "dncnn", "depth": 17, "width": 64, "in_channels": 1}).to(device)
    inputs, n = batches(args.bsds_root, args.sigma, device, args.batch, args.max_images)
    rows = []
    for name, model in (("hinas", hinas.eval()), ("dncnn", dncnn.eval())):
        params = sum(p.numel() for p in model.parameters())
        for variant, bf16, fold, channels_last, compiled in VARIANTS:
            if variant not in args.variants:
                continue
            s = time_model(prepare(model, fold, compiled), inputs, device, bf16, args.repeats, channels_last)
            rows.append({"model": name, "params": params, "variant": variant, "seconds": s, "images": n})
            print(f"{name:6s} ({params / 1e6:.2f} M) {variant:26s}: {n} images in {s:.3f} s", flush=True)
    ratios = {}
    for variant in args.variants:
        h, d = (next(r["seconds"] for r in rows if r["model"] == m and r["variant"] == variant) for m in ("hinas", "dncnn"))
        ratios[variant] = h / d
        print(f"HiNAS / DnCNN time ({variant}): {h / d:.2f}x")
    result = {"device": device_name(device),
              "torch": torch.__version__, "batch": args.batch, "rows": rows, "ratio_hinas_dncnn": ratios}
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
