"""``hinas state export|import``: the CLI side of :mod:`hinas.pipeline.state`.

``register(subparsers)`` adds the ``state`` command; nothing here reads ``sys.argv``.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

EPILOG = """\
A run that spans machines (10-minute GPU jobs, SLURM time limits, spot instances):

  hinas run CONFIG                                  # cut by the time limit
  hinas state export CONFIG --out state/NAME        # small files: keep them (e.g. in git)
  ... on the next, fresh machine ...
  hinas state import CONFIG --from state/NAME       # rebuilds OUTPUT_DIR/NAME
  hinas run CONFIG --resume                         # continues where the cut left it

Give export and import the same CONFIG and --set overrides as the run (output_dir and
resources may differ between machines). Exporting again into the same --out replaces the
bundle. Ray Tune's own experiment folders are never exported (they hold pickles); each
unfinished trial restarts from its exported checkpoint in a new Tune experiment.
"""


def _fill(text: str) -> str:
    return textwrap.fill(text, 88)


def _experiment(args: argparse.Namespace, command: str):
    from .cli import _load

    return _load(args, command, splits=(), runs_trials=False)


def run_export(args: argparse.Namespace) -> int:
    from .state import StateError, bundle_bytes, describe, export_state

    exp = _experiment(args, "state export")
    if exp is None:
        return 2
    try:
        manifest = export_state(exp, args.out, max_part_bytes=int(args.max_file_mib * 2**20), compact=args.compact)
    except StateError as exc:
        print(f"hinas state export: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"hinas state export: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    files = len(list(Path(args.out).iterdir()))
    print(f"hinas state export: {exp.experiment_dir} -> {args.out}" + (" (compact: bf16 weights, no optimiser moments)" if args.compact else ""))
    print(describe(manifest))
    for note in manifest["notes"]:
        print(f"  {note}")
    print(f"bundle: {bundle_bytes(args.out) / 2**20:.2f} MiB in {files} file(s), none over {args.max_file_mib:g} MiB")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from .state import StateError, describe, import_state

    exp = _experiment(args, "state import")
    if exp is None:
        return 2
    try:
        manifest = import_state(exp, args.source, overwrite=args.overwrite)
    except StateError as exc:
        print(f"hinas state import: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"hinas state import: cannot write {exp.experiment_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"hinas state import: {args.source} -> {exp.experiment_dir}")
    print(describe(manifest))
    if manifest.get("config_changes"):
        print(f"  the config changed since the export in: {', '.join(manifest['config_changes'])} "
              "(new keys at their defaults, or settings that act only on what is still to run)")
    sets = "".join(f" --set {s}" for s in args.set or [])
    print(f"continue with: hinas run {args.config}{sets} --resume")
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``state {export,import}`` to a CLI's subparsers."""
    state = subparsers.add_parser("state", help="move a cut run to another machine (export / import its state)",
                                  description=_fill("Pack the state of a run (finished products and the latest checkpoint "
                                              "of every unfinished trial) into small, verified files, and unpack it "
                                              "on another machine so that `hinas run CONFIG --resume` continues."),
                                  epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = state.add_subparsers(dest="state_command", metavar="COMMAND", required=True)

    p = sub.add_parser("export", help="write a run's state as a bundle of small files",
                       description=_fill("Write OUTPUT_DIR/NAME's state into --out: manifest.json (format version, "
                                   "experiment, config hash, per-file size and sha256) and parts of at most "
                                   "--max-file-mib each. An existing bundle in --out is replaced."),
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="the experiment YAML of the run")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="the same overrides as the run")
    p.add_argument("--out", required=True, metavar="DIR", help="bundle folder (created, or a bundle replaced)")
    p.add_argument("--max-file-mib", type=float, default=16, metavar="MIB",
                   help="largest part file, in MiB (default 16); bigger files are split")
    p.add_argument("--compact", action="store_true",
                   help="search checkpoints with bf16 supernet weights and no SGD momentum (about 4x smaller), "
                        "retraining checkpoints with bf16 weights (fp32 in the final anneal) and no optimiser "
                        "moments (about 6x smaller; moments rebuilt at lr 0 on resume); resuming from them is "
                        "not bit-exact: see docs/RESULTS.md")
    p.set_defaults(func=run_export)

    p = sub.add_parser("import", help="rebuild a run folder from a bundle, then resume with `hinas run --resume`",
                       description=_fill("Verify a bundle (format version, experiment, config, every part's size and "
                                   "sha256, checkpoints loadable without unpickling code) and rebuild "
                                   "OUTPUT_DIR/NAME from it. Nothing is written unless everything checks out."),
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="the experiment YAML of the run (with the same --set overrides)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="the same overrides as the run")
    p.add_argument("--from", dest="source", required=True, metavar="DIR", help="the bundle folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder of the experiment")
    p.set_defaults(func=run_import)
    return state
