"""``hinas data bm3d``: compute BM3D's test scores once and keep them (pipeline/bm3d_kept.py).

Only argparse at import: the parser is built on every ``hinas`` call.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def run_bm3d_command(args) -> int:
    from hinas_core.config import ConfigError

    from .bm3d_kept import BM3DMissing, bm3d_version, compute_kept, kept_dir
    from .data import check_data
    from .experiment import PAIR_DATASETS, load_experiment

    def fail(msg: str) -> int:
        print(f"hinas data bm3d: {msg}", file=sys.stderr)
        return 2

    if args.processes < 1:
        return fail(f"--processes: expected a positive number, got {args.processes}")
    try:
        bm3d_version()
        exp = load_experiment(args.config, args.set or [])
        if exp.data.dataset in PAIR_DATASETS:
            return fail(f"the {exp.data.dataset} dataset is not Gaussian noise of a known sigma; BM3D needs one")
        sigmas = args.sigma or list(exp.data.sigmas)
        bad = [s for s in sigmas if not (math.isfinite(s) and s > 0)]
        if bad:
            return fail(f"--sigma: a noise level must be > 0 (0-255 scale), got {bad[0]:g}")
        check_data(exp.data, ("test",))
    except (BM3DMissing, ConfigError, ValueError) as exc:
        return fail(str(exc))
    folder = Path(args.out).resolve() if args.out else kept_dir()
    if folder.exists() and not folder.is_dir():
        return fail(f"--out: {folder} is not a folder")
    for s in sigmas:
        compute_kept(exp, float(s), args.processes, folder, say=lambda line: print(line, flush=True))
    return 0


def register(data_parser: argparse.ArgumentParser) -> None:
    """Add ``bm3d`` to the ``hinas data`` command's subcommands."""
    sub = next(a for a in data_parser._actions if isinstance(a, argparse._SubParsersAction))
    p = sub.add_parser("bm3d", help="compute BM3D's test scores once and keep them (baselines/bm3d)",
                       description="Score BM3D on the fixed, seeded noisy test images of an experiment config "
                                   "(whole-image protocol) and keep the per-image rows with a key of everything "
                                   "that decides them; the evaluate stage then reuses them instead of computing "
                                   "BM3D. A cut run resumes per image. Example: "
                                   "hinas data bm3d tune_configs/bsd500.yaml --processes 2")
    p.add_argument("config", help="experiment YAML (its data and evaluate sections decide the test images)")
    p.add_argument("--sigma", type=float, action="append", help="noise level(s); default: the config's data.sigmas")
    p.add_argument("--processes", type=int, default=1, help="parallel BM3D processes (default 1)")
    p.add_argument("--out", help="folder of the kept files (default: $HINAS_BM3D_KEPT or the checkout's baselines/bm3d)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    p.set_defaults(func=run_bm3d_command)
