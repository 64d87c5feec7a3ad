"""Why the quickstart's HiNAS networks learned so little (issue #13): its retraining, one variant
of the output layer / initialisation / budget at a time, on CPU.

Trains the network the quickstart's search derived at sigma 30 (skip-dominated: 2 layers x
2 nodes, width 8) with the retrain settings of tune_configs/quickstart.yaml on the sample
set, and scores it like the quickstart does (the 5 test photographs, central 128 x 128,
whole-image protocol): PSNR, the noisy input's PSNR, and the brightness offset (output mean
minus clean mean, grey levels). A DnCNN of the quickstart's size on the same budget is the
reference. One thread per run, so the figures do not depend on the other load much.

    python benchmarks/bench_quickstart_recipe.py [--sigma 30] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from _common import write_json

from hinas.datasets import evaluate
from hinas.pipeline.data import test_pairs, training_sampler
from hinas.pipeline.experiment import load_experiment
from hinas_core.genotype import Genotype
from hinas_core.models import hinas_spec
from hinas_core.retrain import Trainer

SEARCHED = {"format": 1, "cells": [[[["skip", 0], ["def", 1]], [["skip", 0], ["skip", 2]]]],
            "levels": [0, 1], "widths": [4, 8, 16]}
# (name, output layer, end conv init, iterations factor)
VARIANTS = [("sigmoid, default init (paper; the old quickstart)", "sigmoid", "default", 1),
            ("sigmoid, end conv zero-init", "sigmoid", "zero", 1),
            ("sigmoid, default init, 4x the iterations", "sigmoid", "default", 4),
            ("residual, default init", "residual", "default", 1),
            ("residual, end conv zero-init (the new quickstart)", "residual", "zero", 1),
            ("dncnn 6 x 16 (same budget)", None, None, 1)]


def run(exp, variant, sigma: float, seed: int) -> dict:
    name, output, init, factor = variant
    spec = ({"kind": "dncnn", "depth": exp.model.dncnn_depth, "width": exp.model.dncnn_width} if output is None else
            hinas_spec(Genotype.from_dict(SEARCHED), width=exp.model.width, output=output))
    cfg = replace(exp.retrain, iterations=exp.retrain.iterations * factor, seed=seed, cuda_graph=False)
    trainer = Trainer(spec, cfg, training_sampler(exp.data, sigma))
    end = trainer.model.end if output is not None else None
    if output == "residual" and init == "default":  # a residual network is built zero-initialised
        end.reset_parameters()
    elif output == "sigmoid" and init == "zero":
        torch.nn.init.zeros_(end.weight)
        torch.nn.init.zeros_(end.bias)
    t0 = time.perf_counter()
    while not trainer.done:
        trainer.run()
    seconds = time.perf_counter() - t0
    pairs = test_pairs(exp.data, sigma, exp.evaluate.max_images, exp.evaluate.crop)
    r = evaluate(trainer.denoiser(), pairs, protocol="whole", sigma=sigma)
    noisy = evaluate(lambda x: x, pairs, protocol="whole", sigma=sigma)
    return {"variant": name, "sigma": sigma, "seed": seed, "iterations": cfg.iterations, "psnr": r.psnr,
            "noisy_psnr": noisy.psnr, "offset": r.offset, "train_s": seconds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "tune_configs/quickstart.yaml"))
    ap.add_argument("--sigma", type=float, default=30.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    exp = load_experiment(args.config)
    rows = []
    print(f"| variant | sigma | seed | iterations | PSNR whole (dB) | noisy input (dB) | offset (grey levels) | train s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for variant in VARIANTS:
        for seed in args.seeds:
            r = run(exp, variant, args.sigma, seed)
            rows.append(r)
            print(f"| {r['variant']} | {r['sigma']:g} | {seed} | {r['iterations']} | {r['psnr']:.2f} | {r['noisy_psnr']:.2f} | "
                  f"{r['offset']:+.2f} | {r['train_s']:.1f} |", flush=True)
    write_json(args.json, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
