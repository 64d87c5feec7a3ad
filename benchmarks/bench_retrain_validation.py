"""What retraining's validation costs (issue #12): one validation on Validation-V against the
training between two validations, for the models of a config, on CPU or GPU.

Builds the retraining data of the config (:func:`hinas.pipeline.data.retrain_data`: V held
out, seeded noise, ``data.val_protocol``) and, per model (the network the quickstart's search
derived at sigma 30, or a genotype given with ``--genotype``, and the config's DnCNN), a
:class:`hinas_core.retrain.Trainer` exactly as the retrain stage builds it; then times
``--repeats`` validations (:meth:`Trainer.validate_now`: eager model, eval mode, float32,
no_grad) and one training interval of ``retrain.validate_every`` iterations. Prints a
Markdown table: validation seconds (median), training seconds per interval, and the share of
an interval the validation adds.

    python benchmarks/bench_retrain_validation.py [--config tune_configs/quickstart.yaml] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from _common import device_name, write_json

from hinas.pipeline.data import retrain_data
from hinas.pipeline.experiment import load_experiment
from hinas_core.genotype import Genotype
from hinas_core.models import hinas_spec
from hinas_core.retrain import Trainer

# What the quickstart's tiny search derived at sigma 30 (tests/pipeline/test_quickstart_recipe.py).
SEARCHED = {"format": 1, "cells": [[[["skip", 0], ["def", 1]], [["skip", 0], ["skip", 2]]]],
            "levels": [0, 1], "widths": [4, 8, 16]}


def measure(trainer: Trainer, repeats: int, interval: int) -> dict:
    trainer.validate_now()  # warm-up: first-call allocations (and cuDNN's choices on a GPU)
    times = []
    for _ in range(repeats):
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.validate_now()
        times.append(time.perf_counter() - t0)
    trainer.run(2)  # warm-up of the training step
    m = trainer.run(interval)
    return {"val_s": statistics.median(times), "train_s": m["seconds"], "interval": interval}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "tune_configs/quickstart.yaml"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override, as for hinas")
    ap.add_argument("--genotype", help="genotype.json or a known name (default: the quickstart's searched one)")
    ap.add_argument("--sigma", type=float, default=30.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    exp = load_experiment(args.config, args.overrides)
    device = torch.device(args.device)
    genotype = Genotype.load(args.genotype) if args.genotype else Genotype.from_dict(SEARCHED)
    specs = {"hinas": hinas_spec(genotype, width=exp.model.width,
                                 target_params=None if exp.model.width else exp.model.target_params or None,
                                 activation=exp.space.activation, output=exp.space.output)}
    if "dncnn" in exp.model.baselines:
        specs["dncnn"] = {"kind": "dncnn", "depth": exp.model.dncnn_depth, "width": exp.model.dncnn_width}
    data = retrain_data(exp.data, args.sigma, exp.retrain.hold_out_val)
    print(f"{exp.name}: V = {data.sizes['val']} images ({exp.data.val_protocol} protocol, val_crop "
          f"{exp.data.val_crop or 'none'}), {data.sizes['train']} trained on; {device_name(device)}, {args.threads} thread(s)")
    print("| model | params | one validation (s, median) | training between validations (s) | validation / training |")
    print("| --- | --- | --- | --- | --- |")
    rows = []
    for kind, spec in specs.items():
        trainer = Trainer(spec, replace(exp.retrain, cuda_graph=exp.retrain.cuda_graph and device.type == "cuda"),
                          data.sampler, device, validate=data.validate)
        r = {"model": kind, "params": trainer.params, **measure(trainer, args.repeats, exp.retrain.val_every)}
        rows.append(r)
        print(f"| {kind} | {r['params']:,} | {r['val_s']:.3f} | {r['train_s']:.2f} ({r['interval']} iterations) | "
              f"{100 * r['val_s'] / r['train_s']:.1f} % |", flush=True)
    write_json(args.json, {"config": exp.name, "device": device_name(device), "threads": args.threads, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
