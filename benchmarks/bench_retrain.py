"""Retraining throughput: patches per second of a derived HiNAS network and of DnCNN.

Runs :class:`hinas_core.retrain.Trainer` - the code the pipeline's retraining trials run -
on random 64x64 crops of BSD500 (or the sample set) with the paper's batch of 12, eager and
with the step replayed as a CUDA graph, in one run, and prints patches/s and the projected
time of the paper's budget (600k iterations x 12 patches). The HiNAS network is a genotype
(default: the example genotype) at the width that gives 0.63 M parameters, as in the paper.

    python benchmarks/bench_retrain.py --device cuda --bsds-root PATH
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
from _common import device_name, write_json

from hinas_core.genotype import Genotype
from hinas_core.models import hinas_spec
from hinas_core.retrain import RetrainConfig, Trainer

PAPER_ITERATIONS = 600_000


def _sampler(dataset: str, root, sigma: float):
    from hinas.pipeline.data import training_sampler
    from hinas.pipeline.experiment import DataConfig

    return training_sampler(DataConfig(dataset=dataset, root=root), sigma)


def measure(spec, name, sampler, device, cuda_graph, iterations, warmup, batch) -> dict:
    cfg = RetrainConfig(iterations=warmup + iterations, batch_size=batch, cuda_graph=cuda_graph, report_every=iterations)
    trainer = Trainer(spec, cfg, sampler, device)
    trainer.run(warmup)  # graph capture, cuDNN autotuning
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    m = trainer.run(iterations)  # reads the loss at the end, so the GPU work is inside the timing
    pps = m["patches_per_s"]
    return {"model": name, "mode": "graph" if cuda_graph else "eager", "params": trainer.params,
            "patches_per_s": pps, "step_ms": 1000 * batch / pps,
            "paper_budget_min": PAPER_ITERATIONS * batch / pps / 60}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--genotype", default="example_denoise", help="genotype JSON or packaged name (default: example_denoise)")
    ap.add_argument("--target-params", type=int, default=630_000)
    ap.add_argument("--dataset", default="bsd500", choices=["bsd500", "sample"])
    ap.add_argument("--bsds-root", default=None, help="BSDS500 root (default: $HINAS_BSDS500_ROOT)")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--iterations", type=int, default=300, help="timed iterations per row")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--modes", nargs="+", default=["eager", "graph"], choices=["eager", "graph"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    genotype = Genotype.load(args.genotype)
    specs = [(hinas_spec(genotype, target_params=args.target_params), "hinas"),
             ({"kind": "dncnn", "depth": 17, "width": 64, "in_channels": 1}, "dncnn")]
    sampler = _sampler(args.dataset, args.bsds_root, 30)
    rows = []
    for spec, name in specs:
        for mode in args.modes:
            r = measure(spec, name, sampler, device, mode == "graph", args.iterations, args.warmup, args.batch)
            rows.append(r)
            print(f"{name:6s} ({r['params'] / 1e6:.2f} M) {mode:5s} {r['patches_per_s']:8.0f} patches/s "
                  f"({r['step_ms']:.2f} ms/step); 600k x {args.batch} in {r['paper_budget_min']:.0f} min", flush=True)
    result = {"device": device_name(device),
              "torch": torch.__version__, "batch": args.batch, "rows": rows}
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
