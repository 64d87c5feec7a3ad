"""What resuming a retraining job from a compact state costs (``hinas state export --compact``).

A compact retraining checkpoint drops the optimiser's moments (and, since 2026-12-01, stores
the weights in bf16: the figures in docs/RESULTS.md before that date are for fp32 weights); the
trainer rebuilds the moments from up to 200 steps at learning rate 0 when it resumes
(:meth:`hinas_core.retrain.Trainer.reestimate_moments`). Here one job of CONFIG's data (default:
the quickstart's embedded images, sigma 30) trains a HiNAS network of the example genotype to
``--cut`` iterations; its state is saved and the job continued to ``--iterations`` four ways:

* lossless (bit-exact with an uninterrupted job: the reference);
* compact (moments rebuilt at lr 0);
* bare (moments dropped, nothing rebuilt: what Adam's first steps after a cut do unaided);
* yardstick: lossless with the data order reseeded at the cut, i.e. how far a change that
  costs nothing moves this job.

Printed: validation PSNR on the held-out Validation-V right after the cut (``--probe``
iterations later) and at the end, and each one's difference from the reference.

    python benchmarks/bench_retrain_compact.py [--config tune_configs/quickstart.yaml] [--cut 300] [--iterations 600]
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402

from hinas.pipeline.data import retrain_data  # noqa: E402
from hinas.pipeline.experiment import load_experiment  # noqa: E402
from hinas.pipeline.state import compact_retrain_state  # noqa: E402
from hinas_core.genotype import Genotype  # noqa: E402
from hinas_core.models import hinas_spec  # noqa: E402
from hinas_core.retrain import RetrainConfig, Trainer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="tune_configs/quickstart.yaml")
    ap.add_argument("--sigma", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--cut", type=int, default=300)
    ap.add_argument("--iterations", type=int, default=600)
    ap.add_argument("--probe", type=int, default=20, help="iterations after the cut of the first validation")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    torch.set_num_threads(1)

    exp = load_experiment(args.config)
    data = retrain_data(exp.data, args.sigma)
    spec = hinas_spec(Genotype.load("example_denoise"), width=args.width)
    cfg = RetrainConfig(iterations=args.iterations, batch_size=args.batch, report_every=args.cut, lr=1e-3,
                        validate_every=0, cuda_graph=False)

    def trainer():
        return Trainer(spec, cfg, data.sampler)

    def score(t):
        return float(data.validate(t.denoiser())["psnr"])

    first = trainer()
    first.run(args.cut)
    state = first.state_dict()
    at_cut = score(first)

    def bare_load(t, s):
        t.model.load_state_dict(s["model"])
        t.opt.load_state_dict(s["opt"])
        t.rng.bit_generator.state = s["rng"]
        t.iteration = int(s["iteration"])

    variants = {
        "lossless (reference)": lambda t: t.load_state_dict(copy.deepcopy(state)),
        "compact: moments rebuilt at lr 0": lambda t: t.load_state_dict(copy.deepcopy(compact_retrain_state(state))),
        "bare: moments dropped": lambda t: bare_load(t, compact_retrain_state(state)),
        "yardstick: lossless, data reseeded": lambda t: (t.load_state_dict(copy.deepcopy(state)),
                                                         setattr(t, "rng", np.random.Generator(np.random.PCG64(12345)))),
    }
    rows = {}
    for name, load in variants.items():
        t = trainer()
        load(t)
        t.run(args.probe)
        probe = score(t)
        t.run(args.iterations - args.cut - args.probe)
        rows[name] = {"probe": probe, "end": score(t)}
    ref = rows["lossless (reference)"]
    print(f"val PSNR at the cut (iteration {args.cut}): {at_cut:.3f} dB")
    print(f"| resumed from | val PSNR at {args.cut + args.probe} | vs reference | val PSNR at {args.iterations} | vs reference |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        print(f"| {name} | {r['probe']:.3f} | {r['probe'] - ref['probe']:+.3f} | {r['end']:.3f} | {r['end'] - ref['end']:+.3f} |")
    if args.json:
        write_json(args.json, {"args": vars(args), "at_cut": at_cut, "rows": rows})


if __name__ == "__main__":
    main()
