"""Retraining throughput: patches per second of a derived HiNAS network and of DnCNN.

Runs :class:`hinas_core.retrain.Trainer` - the code the pipeline's retraining trials run -
on random 64x64 crops of BSD500 (or the sample set) with the paper's batch of 12, in several
variants in one run, and prints patches/s and the projected time of the paper's budget (600k
iterations x 12 patches). The HiNAS network is a genotype (default: the example genotype) at
the width that gives 0.63 M parameters, as in the paper.

A variant is ``+``-joined words: ``eager`` or ``graph`` (CUDA graph replay), ``bf16`` (autocast),
``cl`` (channels-last), ``compile`` (torch.compile); e.g. ``graph+compile+bf16+cl``.
``--together N`` adds rows where N copies of the HiNAS network train at once on separate CUDA
streams (:func:`hinas_core.retrain.run_together`), in the last variant; the figure is the
patches/s of all N together.

    python benchmarks/bench_retrain.py --device cuda --bsds-root PATH
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import torch
from _common import device_name, write_json

from hinas_core.genotype import Genotype
from hinas_core.models import hinas_spec
from hinas_core.retrain import RetrainConfig, Trainer, run_together

PAPER_ITERATIONS = 600_000


def _sampler(dataset: str, root, sigma: float):
    from hinas.pipeline.data import training_sampler
    from hinas.pipeline.experiment import DataConfig

    return training_sampler(DataConfig(dataset=dataset, root=root), sigma)


def retrain_config(variant: str, iterations: int, batch: int) -> RetrainConfig:
    words = set(variant.split("+"))
    unknown = words - {"eager", "graph", "bf16", "cl", "compile"}
    if unknown or len(words & {"eager", "graph"}) != 1:
        raise SystemExit(f"bad variant {variant!r}: one of eager/graph, plus any of bf16, cl, compile")
    return RetrainConfig(iterations=iterations, batch_size=batch, report_every=iterations, cuda_graph="graph" in words,
                         precision="bf16" if "bf16" in words else "fp32", channels_last="cl" in words,
                         compile="compile" in words)


def measure(spec, name, sampler, device, variant, iterations, warmup, batch, together=1) -> dict:
    cfg = retrain_config(variant, warmup + iterations, batch)
    trainers = [Trainer(spec, replace(cfg, seed=k), sampler, device) for k in range(together)]
    t0 = time.perf_counter()
    run_together(trainers, warmup)  # graph capture, compilation, cuDNN autotuning
    setup_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    m = run_together(trainers, iterations)  # reads the losses at the end: the GPU work is inside the timing
    pps = sum(r["patches_per_s"] for r in m)
    return {"model": name, "variant": variant, "together": together, "params": trainers[0].params,
            "patches_per_s": pps, "step_ms": 1000 * batch * together / pps, "setup_s": setup_s,
            "paper_budget_min": PAPER_ITERATIONS * batch / (pps / together) / 60,
            "final_loss": m[0]["train_loss"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--genotype", default="example_denoise", help="genotype JSON or packaged name (default: example_denoise)")
    ap.add_argument("--target-params", type=int, default=630_000)
    ap.add_argument("--dataset", default="bsd500", choices=["bsd500", "sample"])
    ap.add_argument("--bsds-root", default=None, help="BSDS500 root (default: $HINAS_BSDS500_ROOT)")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--iterations", type=int, default=300, help="timed iterations per row")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--variants", nargs="+", default=["eager", "graph", "graph+bf16+cl", "graph+compile+bf16+cl"],
                    help="see above (default: eager graph graph+bf16+cl graph+compile+bf16+cl)")
    ap.add_argument("--models", nargs="+", default=["hinas", "dncnn"], choices=["hinas", "dncnn"])
    ap.add_argument("--together", type=int, nargs="*", default=[], help="also train N HiNAS models at once, per N")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    genotype = Genotype.load(args.genotype)
    specs = {"hinas": hinas_spec(genotype, target_params=args.target_params),
             "dncnn": {"kind": "dncnn", "depth": 17, "width": 64, "in_channels": 1}}
    sampler = _sampler(args.dataset, args.bsds_root, 30)
    rows = []
    runs = [(name, v, 1) for name in args.models for v in args.variants]
    runs += [("hinas", args.variants[-1], n) for n in args.together]
    for name, variant, together in runs:
        r = measure(specs[name], name, sampler, device, variant, args.iterations, args.warmup, args.batch, together)
        rows.append(r)
        print(f"{name:6s} ({r['params'] / 1e6:.2f} M) x{together} {variant:22s} {r['patches_per_s']:8.0f} patches/s "
              f"({r['step_ms']:.2f} ms per step of one model); 600k x {args.batch} in {r['paper_budget_min']:.0f} min "
              f"per model; set-up {r['setup_s']:.0f} s", flush=True)
        write_json(args.json, {"device": device_name(device), "torch": torch.__version__, "batch": args.batch, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
