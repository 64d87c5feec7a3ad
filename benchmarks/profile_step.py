"""Where a retraining step's GPU time goes: the top CUDA kernels of one variant.

Builds :class:`hinas_core.retrain.Trainer` as the pipeline does (variant words as in
bench_retrain.py), warms it up, profiles ``--steps`` steps with ``torch.profiler`` and prints
the kernels that take the most GPU time, with their share. ``--no-cudnn-benchmark`` turns
cuDNN's algorithm search off again (the trainer turns it on) to measure what it buys.

    python benchmarks/profile_step.py --device cuda --variant graph+bf16+cl
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
from bench_retrain import _sampler, retrain_config
from torch.profiler import ProfilerActivity, profile

from hinas_core.genotype import Genotype
from hinas_core.models import hinas_spec, load_model
from hinas_core.retrain import Trainer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="graph")
    ap.add_argument("--genotype", default="example_denoise", help="genotype JSON or packaged name")
    ap.add_argument("--model", help="take the spec (genotype, width) from this model file instead")
    ap.add_argument("--dataset", default="sample", choices=["bsd500", "sample"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--no-cudnn-benchmark", action="store_true")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    spec = load_model(args.model, "cpu")[1] if args.model else hinas_spec(Genotype.load(args.genotype), target_params=630_000)
    trainer = Trainer(spec, retrain_config(args.variant, 10**6, 12), _sampler(args.dataset, None, 30), device)
    if args.no_cudnn_benchmark:
        torch.backends.cudnn.benchmark = False
    trainer.run(20)
    t0 = time.perf_counter()
    m = trainer.run(100)
    print(f"{args.variant} (cudnn.benchmark={torch.backends.cudnn.benchmark}): {m['patches_per_s']:.0f} patches/s "
          f"({time.perf_counter() - t0:.2f} s for 100 steps)", flush=True)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        trainer.run(args.steps)
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    total = sum(e.self_device_time_total for e in events) or 1
    print(f"GPU time per step: {total / args.steps / 1000:.2f} ms")
    for e in sorted(events, key=lambda e: -e.self_device_time_total)[:args.top]:
        print(f"{100 * e.self_device_time_total / total:5.1f} %  {e.self_device_time_total / args.steps / 1000:7.3f} ms/step "
              f"x{e.count // args.steps:<4d} {e.key[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
