"""The `hinas` command. The only module that parses command-line arguments."""
from __future__ import annotations

import argparse
import errno
import math
import os
import sys
from pathlib import Path
from typing import List, Optional

from hinas import __version__


def _cmd_space(args: argparse.Namespace) -> int:
    from hinas_core import ConfigError, Genotype, GenotypeError, SpaceConfig, Supernet, build_network, count_parameters, num_edges, preset
    from hinas_core.genotype import check_ops

    from .overrides import OverrideError, apply_overrides

    g = None
    try:
        base = preset(args.preset).to_dict()
        cfg = SpaceConfig.from_dict(apply_overrides(base, args.set or []))
        if args.width is not None and args.width < 1:
            raise ConfigError(f"--width: expected a positive number of channels, got {args.width}")
        if args.genotype:
            g = Genotype.load(args.genotype)
            check_ops(g, cfg.ops, f"of preset {args.preset!r}")
    except (ConfigError, OverrideError, GenotypeError) as exc:
        print(f"hinas space: {exc}", file=sys.stderr)
        return 2
    net = Supernet(cfg)
    lattice = net.lattice
    print(f"space preset '{args.preset}'" + (f" with {' '.join(args.set)}" if args.set else ""))
    print(f"  layers x nodes       {cfg.layers} x {cfg.nodes}")
    print(f"  widths per node      {list(cfg.widths)} (width mode: {cfg.width_mode})")
    print(f"  ops                  {list(cfg.ops)}")
    print(f"  cells                {'shared (Eq. 5)' if cfg.cell_sharing else 'unshared (Eq. 6)'}, "
          f"{'one genotype for all layers' if cfg.tied_cells else 'one genotype per layer'}")
    print(f"  activation / output  {cfg.activation} / {cfg.output}")
    print(f"  lattice levels       {[list(p) for p in lattice.present]} ({len(net.net.cells)} cells)")
    print(f"  alpha entries        {net.alpha.numel()} ({num_edges(cfg.nodes)} edges x {len(cfg.ops)} ops"
          f"{'' if cfg.tied_cells else f' x {cfg.layers} layers'})")
    print(f"  beta entries         {0 if net.beta is None else net.beta.numel()} (valid lattice moves)")
    print(f"  supernet weights     {count_parameters(net) - sum(p.numel() for p in net.arch_parameters()):,d}")
    if g is not None:
        derived = build_network(g, width=args.width, in_channels=cfg.in_channels,
                                activation=cfg.activation, output=cfg.output)
        print(f"genotype {args.genotype}")
        print(f"  width path (levels)  {list(g.levels)}; widths {list(derived.widths)} per node")
        for layer in range(len(g.cells)):
            print(f"  cell{'' if len(g.cells) == 1 else f' {layer}'}                 "
                  + "; ".join(f"n{i}: {a[0]}({a[1]}) + {b[0]}({b[1]})" for i, (a, b) in enumerate(g.cells[layer])))
        print(f"  derived parameters   {count_parameters(derived):,d}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from .search_stage import SearchSettingsChanged, run_search, search_dirs

    exp = _load(args, "search", splits=("train",))
    if exp is None:
        return 2
    if exp.derive.from_genotype:
        print(f"hinas search: this config has no search: derive.from_genotype ({exp.derive.from_genotype}) gives its "
              "genotype; use `hinas run`, or --set derive.from_genotype=null to search", file=sys.stderr)
        return 2
    exists = any((exp.experiment_dir / n).exists() for n in (*search_dirs(exp), "imported"))  # imported: a state bundle
    code = _start_or_refuse(exp, args, "search", exists)
    if code:
        return code
    try:
        rows = run_search(exp, resume=args.resume)
    except (FileNotFoundError, SearchSettingsChanged) as exc:
        print(f"hinas search: {exc}", file=sys.stderr)
        return 2
    failed = [r["trial"] for r in rows if r["status"] != "OK" or not r["genotype"]]
    if failed:
        print(f"hinas search: no genotype for {failed}", file=sys.stderr)
        return 1
    return 0


EXIT_BUSY = 75  # EX_TEMPFAIL: the experiment is in use; try again later


def _hold(exp, command: str) -> bool:
    """Become the one writer of the experiment (pipeline/lock.py) and catch Ctrl-C / SIGTERM
    (pipeline/signals.py); False, with one line naming the holder, when another driver is it."""
    from .lock import hold
    from .signals import install

    install()
    return hold(exp.experiment_dir, command)


def _start_or_refuse(exp, args, command: str, exists: bool) -> int:
    """An existing experiment is continued (--resume), deleted (--overwrite), or left alone; one
    that another live driver writes is left alone too. 0 to go on, else the exit code."""
    from .lock import busy

    if busy(exp.experiment_dir, command):  # names the holder; nothing is written
        return EXIT_BUSY
    if exists and not args.resume and not args.overwrite:
        print(f"hinas {command}: an experiment already exists at {exp.experiment_dir}; use --resume to "
              "continue it (finished stages are reused) or --overwrite to start it again", file=sys.stderr)
        return 2
    if not _hold(exp, command):
        return EXIT_BUSY
    if exists and not args.resume:
        import shutil

        shutil.rmtree(exp.experiment_dir)
    print(f"hinas {command}: experiment '{exp.name}' -> {exp.experiment_dir}", flush=True)
    return 0


def _load(args, command: str, splits=("train", "test"), runs_trials: bool = True):
    """The experiment of ``args.config`` with its ``--set`` overrides, validated before any work:
    its keys and values, the data of ``splits``, and, for a command that ``runs_trials``, the
    output folder and the resources a trial asks for. Prints one error line and returns None
    when anything is wrong."""
    from hinas_core.config import ConfigError

    from .data import check_data
    from .experiment import load_experiment

    try:
        exp = load_experiment(args.config, args.set or [])
        if runs_trials:
            _check_output(exp)
            _check_resources(exp)
        check_data(exp.data, splits)
        return exp
    except (ConfigError, ValueError) as exc:
        print(f"hinas {command}: {exc}", file=sys.stderr)
        return None


def _check_output(exp) -> None:
    """The experiment folder must be a folder that can be created or written into."""
    from hinas_core.config import ConfigError

    folder = exp.experiment_dir
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if existing == folder and not folder.is_dir():
        raise ConfigError(f"output_dir: {folder} exists and is not a folder")
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"output_dir: cannot create {folder}: {existing} is not a writable folder")


def _check_resources(exp) -> None:
    """A trial that asks a local Ray for more than this machine has would wait forever: refuse it.
    With RAY_ADDRESS set (e.g. under ``ray job submit``) the cluster's resources decide."""
    from hinas_core.config import ConfigError

    if os.environ.get("RAY_ADDRESS"):
        return
    import torch

    gpus = torch.cuda.device_count()
    if exp.resources.gpu > gpus:
        raise ConfigError(f"resources.gpu: each trial asks for {exp.resources.gpu:g} GPU(s) but this machine has {gpus}; "
                          "set resources.gpu: 0 to run on the CPU, or connect to a cluster with RAY_ADDRESS")
    cpus = os.cpu_count() or 1
    if exp.resources.cpu > cpus:
        raise ConfigError(f"resources.cpu: each trial asks for {exp.resources.cpu:g} CPUs but this machine has {cpus}")


def _noise_levels(exp, given: Optional[List[float]]) -> List[float]:
    """The noise levels a command runs at: ``--sigma`` values (each > 0) or the config's."""
    from hinas_core.config import ConfigError

    from .experiment import PAIR_DATASETS

    if exp.data.dataset in PAIR_DATASETS:
        if given:
            raise ConfigError(f"--sigma: the {exp.data.dataset} dataset carries its own degradation; drop --sigma")
        return list(exp.data.sigmas)
    bad = [s for s in given or [] if not (math.isfinite(s) and s > 0)]
    if bad:
        raise ConfigError(f"--sigma: a noise level must be > 0 (0-255 scale), got {bad[0]:g}")
    return list(given or exp.data.sigmas)


def _cmd_run(args: argparse.Namespace) -> int:
    from .run import run_pipeline

    exp = _load(args, "run")
    if exp is None:
        return 2
    if exp.derive.from_genotype:  # checked before the experiment folder is made
        from .derive_stage import given_genotypes

        try:
            given_genotypes(exp)
        except ValueError as exc:  # GenotypeError
            print(f"hinas run: {exc}", file=sys.stderr)
            return 2
    if args.dry_run:  # everything above is what a run checks before it starts any work
        print(f"hinas run: {args.config} is valid: experiment {exp.name}, sigma {list(exp.data.sigmas)}, "
              f"search {'none' if exp.derive.from_genotype else f'<= {exp.search.max_epochs} epochs'}, "
              f"retraining {exp.retrain.iterations} iterations x {exp.retrain.batch_size}; nothing was run")
        return 0
    code = _start_or_refuse(exp, args, "run", exp.experiment_dir.exists())
    if code:
        return code
    try:
        out = run_pipeline(exp, resume=args.resume)
    except (RuntimeError, FileNotFoundError) as exc:  # TrackingError is a RuntimeError
        print(f"hinas run: {exc}", file=sys.stderr)
        return 1
    print(Path(out["report"]).read_text())
    print(f"hinas run: report written to {out['report']}")
    return 0


def _cmd_retrain(args: argparse.Namespace) -> int:
    from hinas_core.config import ConfigError
    from hinas_core.genotype import Genotype, GenotypeError, check_ops

    from .retrain_stage import run_retrain
    from .run import retrain_jobs

    exp = _load(args, "retrain", splits=("train",))
    if exp is None:
        return 2
    try:
        sigmas = _noise_levels(exp, args.sigma)
        check_ops(Genotype.load(args.genotype), exp.space.ops, f"of this config (preset {exp.space_preset!r})")
    except (ConfigError, GenotypeError) as exc:
        print(f"hinas retrain: {exc}", file=sys.stderr)
        return 2
    if not _hold(exp, "retrain"):
        return EXIT_BUSY
    jobs = retrain_jobs(exp, {float(s): Path(args.genotype) for s in sigmas})
    rows = run_retrain(exp, jobs)
    for r in rows:
        print(f"{r['label']:32s} {r['status']:8s} {r.get('model') or '-'}"
              + (f"  (stopped early: {r['stop_reason']})" if r.get("stop_reason") else ""))
    return 0 if all(r.get("model") for r in rows) else 1


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from hinas_core.config import ConfigError
    from hinas_core.inference import keep_freed_memory
    from hinas_core.models import ModelError, load_model

    from .evaluate_stage import evaluate_model, progress_printer, run_evaluate
    from .experiment import PAIR_DATASETS
    from .report import timed_images

    exp = _load(args, "evaluate", splits=("test",), runs_trials=False)
    if exp is None:
        return 2
    keep_freed_memory()  # a one-shot process: on the CPU, half its time went to page faults (RESULTS.md)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"hinas evaluate: --out {args.out} is not a folder", file=sys.stderr)
        return 2
    todo = []
    for path in args.model:  # every file is checked before the first is scored
        try:
            _, spec, meta = load_model(path)
            if spec.get("in_channels", 1) != exp.space.in_channels:
                raise ModelError(f"model file {path!r} takes {spec.get('in_channels')}-channel images; "
                                 f"the test images of this config have {exp.space.in_channels}")
            given = None if args.sigma is None else [args.sigma]
            if given or exp.data.dataset in PAIR_DATASETS:
                sigma = _noise_levels(exp, given)[0]
            elif isinstance(meta.get("sigma"), (int, float)) and meta["sigma"] > 0:
                sigma = float(meta["sigma"])  # the Gaussian noise level it was trained for
            else:
                raise ConfigError(f"{path} does not record the Gaussian noise level it was trained for; give --sigma")
        except ValueError as exc:  # ModelError, ConfigError
            print(f"hinas evaluate: {exc}", file=sys.stderr)
            return 2
        todo.append((path, sigma, meta.get("label") or Path(path).stem))
    bm3d = {}
    if args.out:  # the evaluate stage's rows: BM3D per evaluate.bm3d, the noisy input's scores in each row
        models = [{"label": label, "model": path, "sigma": sigma} for path, sigma, label in todo]
        scored = run_evaluate(exp, models, Path(args.out), progress_printer)
        rows = [r for r in scored if r["kind"] != "bm3d"]
        bm3d = {float(r["sigma"]): r for r in scored if r["kind"] == "bm3d"}
    else:
        rows = [evaluate_model(exp, Path(path), float(sigma), label, progress=progress_printer(label))
                for path, sigma, label in todo]
    for r in rows:
        scores = "  ".join(f"{p}: {r[f'psnr_{p}']:.2f} dB / {r[f'ssim_{p}']:.4f}" for p in exp.evaluate.protocols)
        timed = timed_images(r)
        estimate = f" (estimated from {timed} of {r['images']} images)" if timed is not None else ""
        print(f"{r['label']:32s} sigma {r['sigma']:g}  {scores}  params {r['params']:,d}  {r['inference_s']:.3f} s{estimate}")
    for sigma in sorted({float(s) for _, s, _ in todo}):
        for line in _same_images_lines(exp, sigma, [r for r in rows if r["sigma"] == sigma], bm3d.get(sigma)):
            print(line)
    return 0


def _same_images_lines(exp, sigma: float, rows: List[dict], bm3d: Optional[dict] = None) -> List[str]:
    """What the models of ``sigma`` are compared with on the very same noisy test images: the
    noisy images themselves and BM3D (whole-image protocol). Taken from the evaluate stage's rows
    where ``--out`` ran it (``bm3d``: its BM3D row; the model rows carry the noisy scores);
    otherwise computed for the noisy input and looked up among BM3D's kept scores (BM3D itself is
    not computed here, it takes about half an hour on 2 cores: `hinas data bm3d`)."""
    from .bm3d_kept import find_kept
    from .data import test_pairs
    from .evaluate_stage import noisy_scores

    noisy = rows[0] if rows and "noisy_psnr" in rows[0] else noisy_scores(exp, sigma)
    lines = [f"{'noisy input':32s} sigma {sigma:g}  whole: {noisy['noisy_psnr']:.2f} dB / {noisy['noisy_ssim']:.4f}"]
    source = "computed" if bm3d and bm3d.get("bm3d_source") == "computed" else "kept"
    if bm3d is None:
        kept, _, why = find_kept(exp, sigma, test_pairs(exp.data, sigma, exp.evaluate.max_images, exp.evaluate.crop))
        if kept is None:
            lines.append(f"{'BM3D':32s} sigma {sigma:g}  not kept for these test images ({why}); "
                         f"compute it with `hinas data bm3d CONFIG`")
            return lines
        bm3d = {"psnr_whole": kept.psnr, "ssim_whole": kept.ssim}
    lines.append(f"{f'BM3D ({source}, same noisy images)':32s} sigma {sigma:g}  "
                 f"whole: {bm3d['psnr_whole']:.2f} dB / {bm3d['ssim_whole']:.4f}")
    for r in rows:
        if "psnr_whole" in r:
            lines.append(f"{r['label']:32s} sigma {sigma:g}  whole-image PSNR {r['psnr_whole'] - bm3d['psnr_whole']:+.2f} dB "
                         f"against BM3D, SSIM {r['ssim_whole'] - bm3d['ssim_whole']:+.4f}")
    return lines


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import load_evaluation, report_markdown

    exp = _load(args, "report", splits=(), runs_trials=False)
    if exp is None:
        return 2
    try:
        text = report_markdown(exp, load_evaluation(exp))
        if args.out:
            from hinas_core.fsutil import atomic_file

            with atomic_file(args.out) as tmp:
                tmp.write_text(text)
    except (FileNotFoundError, ValueError) as exc:
        print(f"hinas report: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # --out is a folder, or under a file, or not writable
        print(f"hinas report: cannot write --out {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    print(text)
    return 0


def _check_output_file(path: str) -> None:
    """Refuse an output path that cannot become a file, before any work."""
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"output {path!r} is a folder; give a file name such as {str(out / 'denoised.png')!r}")
    parent = next((p for p in (out.parent, *out.parent.parents) if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ValueError(f"output {path!r}: {parent} is a file, not a folder")


def _cmd_denoise(args: argparse.Namespace) -> int:
    from hinas.datasets import DatasetError
    from hinas_core.inference import keep_freed_memory
    from hinas_core.models import ModelError

    from .denoise import denoise_file

    def say(line: str) -> None:
        print(f"hinas denoise: {line}", file=sys.stderr)

    keep_freed_memory()  # this process exits after one photo: reuse freed feature maps, no page faults

    try:
        _check_output_file(args.output)
        summary = denoise_file(args.input, args.output, sigma=args.sigma, model=args.model, say=say)
    except (ModelError, DatasetError, ValueError) as exc:
        print(f"hinas denoise: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"hinas denoise: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"hinas denoise: {summary}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hinas",
        description="HiNAS: hierarchical neural architecture search for image denoising "
                    "(search -> derive -> retrain -> evaluate, on Ray Tune and MLflow).")
    parser.add_argument("--version", action="version", version=f"hinas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("space", help="summarise a search space and, optionally, a genotype's network",
                       description="Print a search space's layers, nodes, widths, alpha/beta counts and "
                                   "supernet parameters; with --genotype, the derived network's parameters.")
    p.add_argument("--preset", default="denoise", help="space preset: denoise (paper), derain, journal, tiny")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a space key, e.g. --set nodes=4")
    p.add_argument("--genotype", metavar="FILE|NAME", help="a genotype.json, or a known genotype's name")
    p.add_argument("--width", type=int, help="retraining width (channels per node at level 0) for --genotype")
    p.set_defaults(func=_cmd_space)

    p = sub.add_parser("search", help="run HiNAS searches (one Ray Tune trial per sigma and seed)",
                       description="Run the search stage of an experiment config: concurrent Ray Tune trials, "
                                   "each stopped by the paper's PSNR-decrease rule; writes one genotype.json per "
                                   "trial and a summary under OUTPUT_DIR/NAME/.")
    p.add_argument("config", help="experiment YAML, e.g. tune_configs/tiny_search.yaml")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set search.patience=3 --set data.sigmas=[30]")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an interrupted experiment (Tuner.restore)")
    mode.add_argument("--overwrite", action="store_true", help="delete an existing experiment of the same name first")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("run", help="run the whole pipeline: search, derive, retrain, evaluate, report",
                       description="Run an experiment end to end. Finished stages are reused on --resume.")
    p.add_argument("config", help="experiment YAML, e.g. tune_configs/quickstart.yaml")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an interrupted pipeline")
    mode.add_argument("--overwrite", action="store_true", help="delete an existing experiment of the same name first")
    p.add_argument("--dry-run", action="store_true",
                   help="check the config, its data, resources and given genotype as a run would, then stop")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("retrain", help="retrain the network of a genotype (and the baselines) alone",
                       description="Run the retrain stage alone for one genotype.json, with the data, retraining "
                                   "and model settings of an experiment config; models land in OUTPUT_DIR/NAME/models/.")
    p.add_argument("config", help="experiment YAML (data, retrain, model and resources sections are used)")
    p.add_argument("--genotype", required=True, metavar="FILE|NAME", help="a genotype.json or a known genotype's name")
    p.add_argument("--sigma", type=float, action="append", help="noise level(s); default: the config's data.sigmas")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    p.set_defaults(func=_cmd_retrain)

    p = sub.add_parser("evaluate", help="evaluate trained model files on an experiment's test set",
                       description="Score model files (both protocols, PSNR/SSIM, parameters, inference time) on the "
                                   "test set of an experiment config, with its fixed test noise.")
    p.add_argument("config", help="experiment YAML (data and evaluate sections are used)")
    p.add_argument("--model", required=True, action="append", help="a model file (repeatable)")
    p.add_argument("--sigma", type=float, help="noise level (default: the one the model was trained for)")
    p.add_argument("--out", metavar="DIR", help="also write what the pipeline's evaluate stage writes there: "
                   "summary.json (with the noisy input's and, per evaluate.bm3d, BM3D's scores), per-image "
                   "Parquet tables and example pictures")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("report", help="print the results table of a finished experiment beside the paper's numbers")
    p.add_argument("config", help="the experiment YAML the results came from")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="the same overrides as the run")
    p.add_argument("--out", help="also write the Markdown table to this file")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("denoise", help="denoise a photo with a shipped or trained model",
                       description="Apply a hinas denoiser to a photo: grey or colour (denoised in colour, through "
                                   "an orthonormal opponent transform), 8-bit or 16-bit grey, alpha kept. Pick a "
                                   "shipped model by noise level (--sigma, or --sigma auto to estimate it), or give "
                                   "a model file written by the retrain stage (--model). Large photos are denoised "
                                   "in overlapping tiles. Example: hinas denoise --sigma auto noisy.jpg out.png")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--sigma", help="Gaussian noise level of the photo (0-255 scale), or 'auto' to estimate it; "
                                       "the shipped model for the nearest level is used (shipped: 30, 50, 70)")
    which.add_argument("--model", help="a model file written by the retrain stage (runs/<name>/models/<label>/model.pt)")
    p.add_argument("input", help="noisy image (PNG, JPEG, ...)")
    p.add_argument("output", help="where to write the denoised PNG (same channels and bit depth as the input)")
    p.set_defaults(func=_cmd_denoise)

    from hinas.datasets import commands as data_commands
    from .bm3d_command import register as register_bm3d
    register_bm3d(data_commands.register(sub))  # `hinas data bm3d`: BM3D's kept test scores
    from . import state_commands
    state_commands.register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM (pipeline/signals.py's Interrupted)
        print(f"hinas {args.command}: {_stopped(args, exc)}", file=sys.stderr, flush=True)
        return getattr(exc, "exit_code", 130)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        again = (f"`hinas {args.command} {args.config} --resume`" if args.command in ("run", "search")
                 else "the same command again")
        from .lock import held

        where = exc.filename or next(iter(held()), "a file")
        if os.path.isdir(where):
            where = f"under {where}"
        print(f"hinas {args.command}: no space left on device writing {where}; the previous "
              f"complete files are kept: free some space, then run {again}", file=sys.stderr, flush=True)
        return 1
    finally:
        from . import lock

        lock.release_all()
        signals = sys.modules.get(f"{__package__}.signals")
        if signals is not None:
            signals.restore()


def _stopped(args: argparse.Namespace, exc: KeyboardInterrupt) -> str:
    what = f"stopped by {exc.args[0] if exc.args else 'SIGINT'}"
    if args.command == "run":
        return (f"{what}; the trials keep their last checkpoint and the MLflow runs are marked KILLED: continue with "
                f"`hinas run {args.config} --resume`")
    if args.command == "search":
        return f"{what}; the trials keep their last checkpoint: continue with `hinas search {args.config} --resume`"
    if args.command == "retrain":
        return f"{what}; the jobs keep their last checkpoint: run the same command again (finished models are reused)"
    return what


if __name__ == "__main__":
    sys.exit(main())
