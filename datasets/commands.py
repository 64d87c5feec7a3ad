"""``hinas data ...`` subcommands, as hooks for the project's argparse CLI.

``register(subparsers)`` adds the ``data`` command; each leaf parser sets ``func`` to its
handler ``run_xxx(args) -> int`` (0 on success, 1 on a data error, printed to stderr).
Nothing here reads ``sys.argv``.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys

from .errors import DatasetError
from .fetch import BSDS500_URL, fetch_bsd500
from .manifest import verify_bsd500
from .paths import BSDS500_ENV


def _say(msg: str) -> None:
    print(msg, flush=True)


def _root(args: argparse.Namespace) -> str:
    root = args.root or os.environ.get(BSDS500_ENV)
    if not root:
        raise DatasetError(f"give --root DIR or set {BSDS500_ENV}")
    return root


def _guarded(handler):
    """A data error becomes one ``error: ...`` line on stderr and exit code 1, not a traceback."""
    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except DatasetError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return run


@_guarded
def run_fetch(args: argparse.Namespace) -> int:
    """Download BSDS500 into --root and check it."""
    root = fetch_bsd500(_root(args), url=args.url, sha256=args.sha256, overwrite=args.force, progress=_say)
    _say(f"done: use --root {root} or export {BSDS500_ENV}={root}")
    return 0


@_guarded
def run_check(args: argparse.Namespace) -> int:
    """Verify a BSDS500 root against the shipped manifest (and optionally decode every image)."""
    root = _root(args)
    n = verify_bsd500(root, progress=_say)
    _say(f"{n} files match the BSDS500 manifest")
    if args.decode:
        from .bsd500 import load_bsd500

        for split in ("train", "test"):
            _say(f"{split}: {len(load_bsd500(split, root))} images decode")
    return 0


@_guarded
def run_make_sim(args: argparse.Namespace) -> int:
    """Build the SIM-style camera-noise pairs."""
    from .sim_dataset import build_sim_dataset

    out = build_sim_dataset(args.out, args.bsds_root, seed=args.seed, n_train=args.train, n_test=args.test,
                            crop=args.crop, workers=args.workers, progress=_say, overwrite=args.force)
    _say(f"SIM-style pairs written to {out}")
    return 0


@_guarded
def run_make_rain_standin(args: argparse.Namespace) -> int:
    """Build the synthetic-rain stand-in (NOT Rain800)."""
    from .rain_standin import build_rain_standin

    out = build_rain_standin(args.out, args.bsds_root, seed=args.seed, n_train=args.train, n_test=args.test,
                             workers=args.workers, progress=_say, overwrite=args.force)
    _say(f"synthetic-rain stand-in (NOT Rain800) written to {out}")
    return 0


def _builder_args(p: argparse.ArgumentParser, n_train: int, n_test: int) -> None:
    p.add_argument("--out", required=True, help="output folder (must not exist unless --force)")
    p.add_argument("--bsds-root", help=f"BSDS500 root holding images/{{train,val,test}} (default: ${BSDS500_ENV})")
    p.add_argument("--seed", type=int, default=0, help="base seed; the same seed rebuilds identical pairs (default 0)")
    p.add_argument("--train", type=int, default=n_train, help=f"number of training pairs (default {n_train})")
    p.add_argument("--test", type=int, default=n_test, help=f"number of test pairs (default {n_test})")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes; results do not depend on it (default: all CPUs)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``data {fetch,check,make-sim,make-rain-standin}`` to a CLI's subparsers."""
    data = subparsers.add_parser("data", help="download, check and generate datasets",
                                 description="Download, check and generate the datasets of hinas.")
    sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    p = sub.add_parser("fetch", help="download BSDS500 (BSR_bsds500.tgz) and keep its images",
                       description="Download the official BSDS500 archive, check it, and extract only "
                                   "images/{train,val,test}/*.jpg into --root. Without --sha256 the "
                                   "archive's sha256 is printed and the 500 images are verified against "
                                   "the shipped manifest instead.")
    p.add_argument("dataset", choices=["bsd500"], help="dataset to fetch")
    p.add_argument("--root", help=f"target folder (default: ${BSDS500_ENV})")
    p.add_argument("--url", default=BSDS500_URL, help="archive URL (default: the Berkeley page)")
    p.add_argument("--sha256", help="expected sha256 of the archive (hex)")
    p.add_argument("--force", action="store_true", help="replace an existing ROOT/images")
    p.set_defaults(func=run_fetch)

    p = sub.add_parser("check", help="verify BSDS500 against its manifest (names bad files)",
                       description="Check that every BSDS500 image is present with the right size and "
                                   "sha256; missing, truncated or corrupt files are listed by name.")
    p.add_argument("dataset", choices=["bsd500"], help="dataset to check")
    p.add_argument("--root", help=f"BSDS500 root holding images/ (default: ${BSDS500_ENV})")
    p.add_argument("--decode", action="store_true", help="also decode every image (fills the cache)")
    p.set_defaults(func=run_check)

    p = sub.add_parser("make-sim", help="build SIM-style camera-noise pairs from BSDS500",
                       description="Build SIM1800-style (noisy, clean) RGB pairs with our camera-pipeline "
                                   "simulator from BSDS500 crops (train crops from train+val, test crops "
                                   "from test). Results on it are 'SIM-style', not the paper's SIM1800.")
    _builder_args(p, 1600, 212)
    p.add_argument("--crop", type=int, default=128, help="square crop size in px (default 128)")
    p.set_defaults(func=run_make_sim)

    p = sub.add_parser("make-rain-standin", help="build a synthetic-rain stand-in (NOT Rain800)",
                       description="Build 'synthetic-rain-bsds (NOT Rain800)': rain streaks (sparse noise, "
                                   "motion blur, screen blend) on whole BSDS500 images, written as "
                                   "<split>/{input,target}/. Not comparable to Rain800 results.")
    _builder_args(p, 700, 100)
    p.set_defaults(func=run_make_rain_standin)
    return data
