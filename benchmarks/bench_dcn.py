"""DCNv2 (modulated deformable 3x3 conv) forward + backward against a same-shape 3x3 conv.

One run, one device: for each channel count, the time of forward + backward (input, offsets,
mask and weight all need gradients, as in training) of torchvision's kernel, of the sampled
formulation (:func:`hinas_core.ops.deform_conv2d_sampled`, with and without recompute, through
PyTorch's grid_sample kernel or cuDNN's sampler), of the sampled formulation through
``torch.compile``, and of a plain ``nn.Conv2d`` 3x3 of the same
shape; fp32 and bf16 (autocast). Offsets are random (a few pixels), so the sampling is not
the regular grid. Prints the time and the ratio to the plain conv in the same precision.

    python benchmarks/bench_dcn.py --device cuda --channels 43 86 172
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from _common import device_name, write_json
from torchvision.ops import deform_conv2d

from hinas_core.ops import deform_conv2d_sampled


def _time(fn, device, reps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        times = []
        for _ in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        return statistics.median(times)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def kernels(c: int, batch: int, size: int, device):
    g = torch.Generator(device="cpu").manual_seed(c)
    x = torch.randn(batch, c, size, size, generator=g).to(device).requires_grad_()
    offset = (2 * torch.randn(batch, 18, size, size, generator=g)).to(device).requires_grad_()
    mask = torch.rand(batch, 9, size, size, generator=g).to(device).requires_grad_()
    w = (torch.randn(c, c, 3, 3, generator=g) / (3 * c ** 0.5)).to(device).requires_grad_()
    compiled = torch.compile(lambda *a: deform_conv2d_sampled(*a, recompute=False), dynamic=False)
    compiled_cudnn = torch.compile(lambda *a: deform_conv2d_sampled(*a, recompute=False, align_corners=True), dynamic=False)

    def fb(f):
        def run():
            f().float().square().mean().backward()
        return run

    return {
        "conv3x3": fb(lambda: F.conv2d(x, w, padding=1)),
        "torchvision": fb(lambda: deform_conv2d(x, offset, w, padding=1, mask=mask)),
        "sampled": fb(lambda: deform_conv2d_sampled(x, offset, w, mask, recompute=False)),
        "sampled+recompute": fb(lambda: deform_conv2d_sampled(x, offset, w, mask, recompute=True)),
        "sampled+compile": fb(lambda: compiled(x, offset, w, mask)),
        "sampled-cudnn": fb(lambda: deform_conv2d_sampled(x, offset, w, mask, recompute=False, align_corners=True)),
        "sampled-cudnn+compile": fb(lambda: compiled_cudnn(x, offset, w, mask)),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, nargs="+", default=[43, 86, 172])
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    rows = []
    for c in args.channels:
        fns = kernels(c, args.batch, args.size, device)
        for precision in args.precisions:
            ctx = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
            base = None
            for name, fn in fns.items():
                if name == "torchvision" and precision == "bf16":
                    continue  # torchvision's kernel has no bf16 path: autocast runs it in fp32 anyway
                def run(fn=fn):
                    with ctx:
                        fn()
                ms = _time(run, device, args.reps, args.warmup)
                base = ms if name == "conv3x3" else base
                rows.append({"channels": c, "precision": precision, "kernel": name, "ms": ms, "vs_conv": ms / base})
                print(f"C={c:4d} {precision} {name:18s} {ms:8.3f} ms  {ms / base:6.2f}x conv3x3", flush=True)
    write_json(args.json, {"device": device_name(device), "torch": torch.__version__, "batch": args.batch,
                           "size": args.size, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
