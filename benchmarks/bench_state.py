"""What a run's exported state weighs, and what resuming a search from a compact state costs.

1. Sizes: the search checkpoint of a supernet (weights, alpha/beta, both optimisers with their
   buffers), lossless and compact (``hinas state export --compact``: bf16 weights, no SGD
   momentum), for the paper preset and the tiny one. The paper-preset supernet is built and its
   SGD momentum filled by one step on zero gradients (no search is run: the sizes are those of
   the tensors, the history of a real search adds a few KB per epoch).
2. Cost: a search of CONFIG (default: the quickstart, tiny preset, CPU) for one sigma is run to
   ``--cut`` epochs, its state saved, then continued to the end four ways: from the lossless
   state (the reference: bit-exact with an uninterrupted search), from bf16 weights, from no
   momentum, from both (compact), and - the yardstick - lossless with the data order reseeded at
   the cut. Printed: the last and best validation PSNR and whether
   the derived genotype is the reference's.

    python benchmarks/bench_state.py [--config tune_configs/quickstart.yaml] [--sigma 30] [--cut 4]
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402

from hinas.pipeline.data import search_data  # noqa: E402
from hinas.pipeline.experiment import load_experiment  # noqa: E402
from hinas.pipeline.state import compact_search_state, expand_state  # noqa: E402
from hinas_core import Supernet, preset  # noqa: E402
from hinas_core.search import Searcher  # noqa: E402


def nbytes(obj) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.tell()


def supernet_state(space) -> dict:
    """A search checkpoint's tensors for a supernet of ``space``, SGD momentum filled."""
    net = Supernet(space)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.025, momentum=0.9)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=1e-3)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    w_opt.step()
    a_opt.step()
    return {"format": 1, "model": net.state_dict(), "w_opt": w_opt.state_dict(), "a_opt": a_opt.state_dict()}


def sizes(name: str) -> dict:
    space = preset(name)
    state = supernet_state(space)
    weights = sum(p.numel() for p in Supernet(space).weight_parameters())
    full, compact = nbytes(state), nbytes(compact_search_state(state))
    print(f"{name:8s} supernet weights {weights:>10,d}  lossless {full / 2**20:7.2f} MiB  compact {compact / 2**20:7.2f} MiB")
    return {"preset": name, "weights": weights, "lossless_bytes": full, "compact_bytes": compact}


def continue_from(state, exp, sigma, data) -> dict:
    s = Searcher(exp.space, exp.search, data.train_w, data.train_a, data.evaluate, data.steps_per_epoch)
    s.load_state_dict(state)
    while not s.done:
        last = s.run_epoch()
    return {"epochs": s.epoch, "last_val_psnr": last["val_psnr"], "best_val_psnr": s.best["val_psnr"],
            "best_epoch": s.best["epoch"], "genotype": s.best["genotype"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="tune_configs/quickstart.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--sigma", type=float, default=30)
    ap.add_argument("--cut", type=int, default=4, help="epochs before the state is saved")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = {"sizes": [sizes("denoise"), sizes("tiny")]}

    exp = load_experiment(args.config, args.set)
    data = search_data(exp.data, args.sigma, exp.search.batch_size)
    s = Searcher(exp.space, exp.search, data.train_w, data.train_a, data.evaluate, data.steps_per_epoch)
    while s.epoch < args.cut and not s.done:
        s.run_epoch()
    saved = s.state_dict()
    compact = compact_search_state(saved)
    ways = {"lossless": saved,
            "bf16 weights": expand_state({**compact, "w_opt": saved["w_opt"]}),
            "no momentum": {**saved, "w_opt": compact["w_opt"]},
            "compact (both)": expand_state(compact),
            # The yardstick: the lossless state with another data order from the cut on (the
            # sampler's RNG reseeded), i.e. how far a harmless change moves this search.
            "lossless, reseeded": {**saved, "rng": np.random.default_rng(1).bit_generator.state}}
    print(f"\n{exp.name}: sigma {args.sigma:g}, state saved after epoch {args.cut} of at most {exp.search.max_epochs}; "
          f"checkpoint {nbytes(saved) / 2**10:.0f} KiB lossless, {nbytes(compact) / 2**10:.0f} KiB compact")
    rows = {}
    for name, state in ways.items():
        r = continue_from(state, exp, args.sigma, data)
        r["same_genotype"] = r["genotype"] == rows["lossless"]["genotype"] if rows else True
        rows[name] = r
        print(f"{name:18s} epochs {r['epochs']:3d}  last val PSNR {r['last_val_psnr']:.3f}  best {r['best_val_psnr']:.3f} "
              f"(epoch {r['best_epoch']})  genotype as lossless: {r['same_genotype']}")
    out["resume"] = {"config": args.config, "set": args.set, "sigma": args.sigma, "cut": args.cut,
                     "rows": {k: {kk: vv for kk, vv in v.items() if kk != "genotype"} for k, v in rows.items()}}
    write_json(args.json, out)


if __name__ == "__main__":
    main()
