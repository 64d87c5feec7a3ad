"""The search stage: HiNAS searches as Ray Tune trials, one per (sigma, seed).

* :func:`search_trainable` is a function trainable: it builds the search loop of
  :mod:`hinas_core.search` from its config, resumes from ``tune.get_checkpoint()``, and
  after every epoch calls ``tune.report(metrics, checkpoint=...)``. A checkpoint holds the
  whole search state (weights, alpha/beta, optimisers, RNGs, the early-stop counters, the
  best supernet's alpha/beta and genotype) - enough to resume and to derive.
  Each trial owns its MLflow run (:mod:`.trial_run`) and logs every epoch into it:
  :func:`epoch_metrics` (losses, learning rates, validation PSNR/SSIM, alpha/beta entropy,
  patches/s, memory) and the width path of the moment as the tag ``hinas.width_path``.
* :func:`run_search` runs all trials concurrently on the available resources (fractional
  CPUs/GPUs share a device), stops each by :class:`PSNRDecreaseStopper`, writes one
  ``genotype.json`` per trial and a summary, and resumes an interrupted experiment with
  ``Tuner.restore``.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

from hinas_core.fsutil import atomic_file
from hinas_core.metrics import VAL_PSNR, VAL_SSIM
from hinas_core.models import ModelError, load_tensors
from hinas_core.search import Searcher, check_search_state, search_ended, without_supernet

from .experiment import ExperimentConfig, experiment_from_dict
from .faults import KillPoints, with_kill_point
from .mlflow_tracking import KIND, SIGMA, STAGE, flatten, run_name
from .retries import RetryBudget, failure_config
from .signals import GracefulStop, fit
from .state import config_identity, differing_keys, has_imported, resume_file, value_at
from .stopping import PSNRDecreaseStopper
from .trial_run import TrackingWatch, memory_metrics, open_trial_run, report_fields, reported_times

CHECKPOINT_FILE = "search.pt"
SEARCH_DIR = "search"
SUMMARY_FILE = "search_summary.json"
INPUTS_FILE = "search_inputs.json"  # the settings the run folder's search was started with
SPEED_ONLY = ("cuda_graph", "channels_last")  # search switches that compute the same, faster or not
HISTORY_FILE = "history.json"
WIDTH_PATH = "hinas.width_path"
OPTUNA_TRIAL = "optuna_trial"  # the trial config's key holding an Optuna trial's number in its study
ENDED_TRIAL = "ended_trial"  # in a replayed trial's config: its search ended in an earlier job
# What a search epoch logs (from Searcher.run_epoch's metrics, also kept in history.json).
EPOCH_KEYS = ("train_loss", "arch_loss", "w_lr", VAL_PSNR, VAL_SSIM, "n_skip", "none_dominant_edges",
              "train_seconds", "epoch_seconds", "es_best_psnr")


def _entropy(logits: np.ndarray) -> np.ndarray:
    """Entropy (nats) of softmax over the last axis."""
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    return -(p * np.log(np.clip(p, 1e-30, None))).sum(axis=-1)


def epoch_metrics(entry: Dict[str, Any], moves: List[tuple], patches: int = 0) -> Dict[str, Any]:
    """The numbers one search epoch logs, from its history entry (``Searcher.history[i]``).

    ``alpha_entropy``: mean over edges of the entropy of softmax(alpha) (ln K when undecided, 0
    when one op has won); ``beta_entropy``: the same over each source cell's valid lattice moves
    (``moves``: ``Lattice.moves()``, beta's order). ``patches``: weight-step patches this epoch.
    """
    out = {k: entry.get(k) for k in EPOCH_KEYS}
    out["peak_memory_mb"] = entry.get("peak_memory_bytes", 0) / 2**20
    out["alpha_entropy"] = float(_entropy(np.asarray(entry["alpha"], dtype=float)).mean())
    if entry.get("beta") is not None and moves:
        beta = np.asarray(entry["beta"], dtype=float)
        groups: Dict[tuple, List[int]] = {}
        for i, (layer, source, _) in enumerate(moves):
            groups.setdefault((layer, source), []).append(i)
        out["beta_entropy"] = float(np.mean([_entropy(beta[idx]) for idx in groups.values()]))
    if patches and entry.get("train_seconds"):
        out["patches_per_s"] = patches / entry["train_seconds"]
    return out


def lattice_moves(space) -> List[tuple]:
    """beta's moves for a search space (as the Supernet builds its lattice); [] for fixed widths."""
    from hinas_core.lattice import Lattice

    return [] if space.fixed_levels else Lattice.full(space.layers, len(space.widths)).moves()


def trial_label(sigma: float, seed: int) -> str:
    return f"sigma{sigma:g}-seed{seed}"


def study_trial(config: Dict[str, Any]) -> str:
    """``trial<n>``: an Optuna trial's number in its study (which names it in every job), or ""."""
    return f"trial{config[OPTUNA_TRIAL]}" if config.get(OPTUNA_TRIAL) is not None else ""


def trial_name(config: Dict[str, Any]) -> str:
    """A trial's label from its Tune config: ``sigma30-seed0``, or ``sigma30-seed0-trial3`` for
    Optuna's trial 3 - the name of its genotype folder, imported checkpoint and MLflow run."""
    number = study_trial(config)
    return trial_label(float(config["sigma"]), int(config["seed"])) + (f"-{number}" if number else "")


def _device(exp: ExperimentConfig) -> torch.device:
    return torch.device("cuda" if exp.resources.gpu > 0 and torch.cuda.is_available() else "cpu")


def search_trainable(config: Dict[str, Any]) -> None:
    """Ray Tune function trainable for one search (config: experiment dict, sigma, seed, hp)."""
    from ray import tune

    from .data import search_data

    exp = experiment_from_dict(config["experiment"])
    sigma, seed = float(config["sigma"]), int(config["seed"])
    search_cfg = replace(exp.search, seed=seed, **dict(config.get("hp") or {}))
    torch.set_num_threads(max(1, int(exp.resources.cpu)))
    hp = dict(config.get("hp") or {})
    trial = trial_name(config)
    # Tune's checkpoint when it restores the trial, else one imported from a state bundle.
    with resume_file(tune.get_checkpoint(), exp, "search", trial) as path:
        state = None if path is None else load_tensors(path, "search checkpoint")
    run = open_trial_run(config, f"search:{trial}", run_name("search", "hinas", sigma, seed, study_trial(config)),
                         {STAGE: "search", KIND: "hinas", SIGMA: sigma},
                         flatten({"sigma": sigma, "seed": seed, "hp": hp, "search": search_cfg.to_dict()}))
    ended = state is not None and bool(state.get("history")) and search_ended(state, search_cfg.max_epochs)
    if config.get(ENDED_TRIAL) and not ended:  # it was given no GPU: never search here
        run.finish("FAILED")
        raise RuntimeError(f"trial {trial} was replayed as an ended search, but its checkpoint "
                           f"({'none' if state is None else 'epoch %d' % state['epoch']}) is not of one")
    if ended:
        # Ended in an earlier job (a resumed study replays its ended trials): Tune needs only its
        # last result and checkpoint, so neither the data nor the supernet is built.
        try:
            check_search_state(state, exp.space)
        except ValueError:
            run.finish("FAILED")
            raise
        run.finish()
        _report(run, {k: v for k, v in state["history"][-1].items() if k not in ("alpha", "beta", "genotype")},
                without_supernet(state, search_cfg.max_epochs), sigma=sigma, seed=seed, max_epochs=search_cfg.max_epochs)
        return
    device = _device(exp)
    try:
        data = search_data(exp.data, sigma, search_cfg.batch_size)
        searcher = Searcher(exp.space, search_cfg, with_kill_point(data.train_w, "search-step"), data.train_a,
                            data.evaluate, data.steps_per_epoch, device=device)
        if state is not None:
            searcher.load_state_dict(state)
        moves = searcher.model.lattice.moves() if searcher.model.beta is not None else []
        while not searcher.done:
            metrics = searcher.run_epoch()
            run.log({**epoch_metrics(searcher.history[-1], moves, searcher.steps_per_epoch * search_cfg.batch_size),
                     "a_lr": searcher.a_opt.param_groups[0]["lr"], **memory_metrics(device)}, step=metrics["epoch"])
            run.set_tags({WIDTH_PATH: metrics["levels"]})
            if searcher.done:  # before the last report: Tune may stop the trial inside it
                run.finish()
            _report(run, metrics, searcher.state_dict(), sigma=sigma, seed=seed, max_epochs=search_cfg.max_epochs,
                    **{f"n_{k}": v for k, v in data.sizes.items()})
    except Exception:
        run.finish("FAILED")
        raise


class TrialResources:
    """A search trial's resources (a class: Tune pickles it): the config's, except that a replayed
    trial whose search has ended (``ENDED_TRIAL``: it only reports its last result) takes at most
    one CPU and no GPU, so it runs beside a searching trial instead of queueing for the GPU."""

    def __init__(self, cpu: float, gpu: float):
        self.cpu, self.gpu = cpu, gpu

    def __call__(self, config: Dict[str, Any]):
        from ray.tune import PlacementGroupFactory

        if config.get(ENDED_TRIAL):
            return PlacementGroupFactory([{"CPU": min(self.cpu, 1)}])
        return PlacementGroupFactory([{"CPU": self.cpu, **({"GPU": self.gpu} if self.gpu else {})}])


def _report(run, metrics: Dict[str, Any], state: Dict[str, Any], **fields) -> None:
    """One Tune report of a search trial: its metrics (with ``fields``) and its checkpoint."""
    from ray import tune

    with tempfile.TemporaryDirectory() as d:
        torch.save(state, Path(d) / CHECKPOINT_FILE)
        tune.report({**metrics, **fields, **report_fields(run)}, checkpoint=tune.Checkpoint.from_directory(d))


def init_ray(num_cpus: int | None = None) -> None:
    """Connect to the cluster in ``RAY_ADDRESS`` (e.g. under ``ray job submit``) or start a local one."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def trial_config(result) -> Dict[str, Any]:
    """A Tune result's trial config, also for a trial that failed before its first report.

    ``Result.config`` is read from the last reported metrics, so it is None for such a trial;
    Tune wrote the config to ``params.json`` in the trial's folder when the trial started.
    """
    if result.config is not None:
        return result.config
    return json.loads((Path(result.path) / "params.json").read_text())


class OptunaSpace:
    """The define-by-run space of the optuna config (a class: Tune pickles the searcher)."""

    def __init__(self, space):
        self.space = {k: dict(v) for k, v in space.items()}

    def __call__(self, trial) -> None:
        # "hp/<key>" lands in config["hp"][key] (Tune unflattens "/").
        for key, dim in self.space.items():
            name = "hp/" + key.split(".", 1)[1]
            if dim["type"] == "float":
                trial.suggest_float(name, dim["low"], dim["high"], log=bool(dim.get("log")))
            elif dim["type"] == "int":
                trial.suggest_int(name, dim["low"], dim["high"], log=bool(dim.get("log")))
            else:
                trial.suggest_categorical(name, list(dim["choices"]))


def _optuna_searcher(exp: ExperimentConfig, sigma: float):
    """Ray Tune's OptunaSearch over the declared search hyperparameters, seeded, its study
    persistent (in the run folder unless ``optuna.storage`` says otherwise) and resumable
    across machines (:mod:`.optuna_study`)."""
    from .optuna_study import SearchingLimit, optuna_searcher

    # The best validation PSNR a trial reached is what its genotype would be chosen by.
    searcher = optuna_searcher(exp, sigma, OptunaSpace(exp.optuna.space), "es_best_psnr")
    cfg = exp.optuna
    return SearchingLimit(searcher, max_concurrent=cfg.max_concurrent) if cfg.max_concurrent else searcher


def _run_config(exp: ExperimentConfig, name: str):
    from ray import tune

    return tune.RunConfig(
        name=name,
        storage_path=str(exp.experiment_dir),
        stop=PSNRDecreaseStopper(exp.search.max_epochs),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        failure_config=failure_config(),
        callbacks=[RetryBudget(), KillPoints("search"), GracefulStop(), TrackingWatch()],
        verbose=1,
    )


def search_dirs(exp: ExperimentConfig) -> List[str]:
    """Tune experiment names of the search stage: one, or one per sigma with Optuna."""
    if exp.optuna is None:
        return [SEARCH_DIR]
    return [f"{SEARCH_DIR}-sigma{s:g}" for s in exp.data.sigmas]


def restorable(path: Path) -> bool:
    """Whether Tune can continue the experiment in ``path``.

    ``Tuner()`` writes ``tuner.pkl`` at once but the trials' state only from the first step of
    ``fit()``: a driver killed in between leaves a folder that ``Tuner.restore`` fails on (it
    rebuilds trials without their config); such an experiment is started anew instead. So is
    one whose state files Tune left truncated (it writes them in place; a full disk cuts them).
    """
    from ray import tune

    from .retries import tune_state_whole

    return tune.Tuner.can_restore(str(path)) and any(Path(path).glob("experiment_state-*.json")) and \
        tune_state_whole(Path(path))


def _has_study(exp: ExperimentConfig) -> bool:
    """Whether the run folder holds an Optuna study (an imported study alone also resumes)."""
    if exp.optuna is None:
        return False
    from .optuna_study import study_path

    return study_path(exp).is_file()


def _tuners(exp: ExperimentConfig, resume: bool, tracking: Dict[str, Any] | None = None):
    from ray import tune

    trainable = tune.with_resources(search_trainable, TrialResources(exp.resources.cpu, exp.resources.gpu))
    names = search_dirs(exp)
    if resume and not any((exp.experiment_dir / n).exists() for n in names) and not has_imported(exp, "search") \
            and not _has_study(exp):
        raise FileNotFoundError(f"nothing to resume: no search experiment at {exp.experiment_dir / names[0]}")

    def dirname(t):
        return f"{trial_name(t.config)}-{t.trial_id}"

    tuners = []
    for sigma, name in zip(exp.data.sigmas, names):  # with Optuna, one experiment per sigma
        if resume and exp.optuna is not None and not exp.optuna.storage and (exp.experiment_dir / name).exists():
            from .optuna_study import take_over

            take_over(exp, exp.experiment_dir / name)  # the study in the run folder decides, not Tune's searcher
        if resume and restorable(exp.experiment_dir / name):
            tuners.append(tune.Tuner.restore(str(exp.experiment_dir / name), trainable=trainable,
                                             resume_unfinished=True, resume_errored=True))
            continue
        if exp.optuna is None:
            param_space = {"experiment": exp.to_dict(), "sigma": tune.grid_search(list(exp.data.sigmas)),
                           "seed": tune.grid_search(list(exp.seeds)), "tracking": tracking}
            tune_config = tune.TuneConfig(max_concurrent_trials=exp.resources.max_concurrent or None,
                                          trial_dirname_creator=dirname)
        else:
            tune_config = tune.TuneConfig(search_alg=_optuna_searcher(exp, sigma), num_samples=exp.optuna.num_samples,
                                          max_concurrent_trials=exp.resources.max_concurrent or None,
                                          trial_dirname_creator=dirname)
            param_space = {"experiment": exp.to_dict(), "sigma": sigma, "seed": exp.seeds[0], "tracking": tracking}
        tuners.append(tune.Tuner(trainable, param_space=param_space, tune_config=tune_config,
                                 run_config=_run_config(exp, name)))
    return tuners


class SearchSettingsChanged(RuntimeError):
    """A search would be continued or reused under other settings than it was started with."""


def search_inputs(exp: ExperimentConfig) -> Dict[str, Any]:
    """The settings that decide a search's trials: the space, the search section, the data (not
    its root: a run folder moved by a bundle keeps its search), the seeds and Optuna's."""
    d = config_identity(exp)
    return {"space": d["space"], "search": {k: v for k, v in d["search"].items() if k not in SPEED_ONLY},
            "data": d["data"], "seeds": d["seeds"], "optuna": d["optuna"]}


def check_search_inputs(exp: ExperimentConfig) -> None:
    """Refuse to continue or reuse the run folder's search under other settings than it was
    started with: Tune restores a cut experiment with its own, and a finished search would be
    taken as it is. A run folder without the record (made before it existed) is not checked."""
    try:
        started = json.loads((exp.experiment_dir / INPUTS_FILE).read_text())
    except (OSError, ValueError):
        return
    now = search_inputs(exp)
    changed = differing_keys(now, started) if isinstance(started, dict) else ["(unreadable record)"]
    if changed:
        said = "; ".join(f"{k}: {json.dumps(value_at(started, k, None))} -> {json.dumps(value_at(now, k, None))}"
                         for k in changed[:5])
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        raise SearchSettingsChanged(
            f"the search in {exp.experiment_dir} was started with other settings ({said}{more}); --resume "
            "continues or reuses a search only with its own: run these settings under another name "
            "(--set name=...) or output_dir, or start this one again with --overwrite")


def record_search_inputs(exp: ExperimentConfig) -> None:
    with atomic_file(exp.experiment_dir / INPUTS_FILE) as tmp:
        tmp.write_text(json.dumps(search_inputs(exp), indent=2, sort_keys=True))


def run_search(exp: ExperimentConfig, resume: bool = False, tracking: Dict[str, Any] | None = None) -> List[Dict[str, Any]]:
    """Run (or resume) the search trials; write genotypes and the summary; return summary rows.

    ``tracking``: :meth:`.mlflow_tracking.Tracker.trial_spec`, for each trial to log into its
    own run (None: no MLflow)."""
    exp.experiment_dir.mkdir(parents=True, exist_ok=True)
    check_search_inputs(exp)
    record_search_inputs(exp)
    init_ray()
    rows = []
    for tuner in _tuners(exp, resume, tracking):
        for result in fit(tuner, exp.experiment_dir):  # Ctrl-C / SIGTERM: trials checkpoint, then Interrupted
            rows.append(_finish_trial(exp, result))
    if exp.optuna is not None:
        from .optuna_study import write_study_products

        write_study_products(exp)  # importances, their plot, the trials table
    rows.sort(key=lambda r: (r["sigma"], r["seed"], r.get("study_trial", -1), r["trial"]))
    write_summary(exp, rows)
    return rows


def _finish_trial(exp: ExperimentConfig, result) -> Dict[str, Any]:
    from hinas_core.genotype import Genotype

    config = trial_config(result)
    sigma, seed = float(config["sigma"]), int(config["seed"])
    hp = dict(config.get("hp") or {})
    last = result.metrics or {}
    label = trial_name(config)
    row: Dict[str, Any] = {"trial": label, "sigma": sigma, "seed": seed, "hp": hp,
                           "status": "ERROR" if result.error else "OK", "epochs": last.get("epoch", 0),
                           "stop": PSNRDecreaseStopper.reason(last, exp.search.max_epochs),
                           "best_epoch": last.get("es_best_epoch", -1), VAL_PSNR: last.get("es_best_psnr", math.nan),
                           "peak_memory_mb": last.get("peak_memory_bytes", 0) / 2**20, "genotype": None}
    if config.get(OPTUNA_TRIAL) is not None:
        row["study_trial"] = int(config[OPTUNA_TRIAL])
    if result.error:  # the last failure, after Tune's retries
        row["error"] = (str(result.error).strip().splitlines() or [type(result.error).__name__])[-1][:300]
    frame = result.metrics_dataframe
    if frame is not None and len(frame):
        times = reported_times(frame)
        row["start"] = float(times.iloc[0] - frame.iloc[0].get("epoch_seconds", 0.0))
        row["end"] = float(times.iloc[-1])
        row["epoch_seconds"] = float(frame["epoch_seconds"].mean())
    if result.checkpoint is None:
        return row
    try:
        with result.checkpoint.as_directory() as d:
            state = load_tensors(Path(d) / CHECKPOINT_FILE, "search checkpoint")
    except ModelError as exc:  # damaged or foreign: no genotype from it, and the summary says why
        row.update(status="ERROR", stop=f"checkpoint refused: {exc}")
        return row
    best = state.get("best") or {}
    if not best:
        row["stop"] += " (no architecture epoch yet)"
        return row
    provenance = {"experiment": exp.name, "sigma": sigma, "seed": seed, "epoch": best["epoch"],
                  VAL_PSNR: best[VAL_PSNR], VAL_SSIM: best[VAL_SSIM], "epochs_run": state["epoch"],
                  "stop": row["stop"], "hp": hp, "config": state["config"], "space": state["space"],
                  "data": exp.to_dict()["data"]}
    g = Genotype.from_dict(best["genotype"])
    g = Genotype(g.cells, g.levels, g.widths, provenance=provenance)
    path = g.save(genotype_file(exp, row["trial"]))
    # The per-epoch history (metrics, alpha/beta, genotype of the moment) for curves and heatmaps.
    with atomic_file(path.parent / HISTORY_FILE) as tmp:
        tmp.write_text(json.dumps(state["history"], default=str))
    row.update(genotype=str(path), best_epoch=best["epoch"], **{VAL_PSNR: best[VAL_PSNR], VAL_SSIM: best[VAL_SSIM]},
               levels="-".join(map(str, g.levels)))
    return row


def refuse_failed(rows: List[Dict[str, Any]]) -> None:
    """Raise when a search trial failed (after Tune's retries): its genotype is that of an
    unfinished search, which the pipeline must not go on to retrain. Its checkpoint is kept, so
    ``--resume`` continues it once the cause is fixed."""
    failed = [r for r in rows if r["status"] == "ERROR"]
    if failed:
        what = "; ".join(f"{r['trial']} at epoch {r['epochs']}: {r.get('error') or r['stop']}" for r in failed)
        raise RuntimeError(f"search trial(s) failed, so nothing is derived or retrained: {what}. "
                           "Their checkpoints are kept: fix the cause, then run the same command with --resume")


def max_overlap(rows: List[Dict[str, Any]]) -> int:
    """The largest number of trials whose running intervals overlap at one moment."""
    events = []
    for r in rows:
        if "start" in r and "end" in r:
            events += [(r["start"], 1), (r["end"], -1)]
    best = cur = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        cur += delta
        best = max(best, cur)
    return best


def write_summary(exp: ExperimentConfig, rows: List[Dict[str, Any]]) -> Path:
    overlap = max_overlap(rows)
    lines = [f"# Search summary: {exp.name}", "",
             f"{len(rows)} trial(s); at most {overlap} ran at the same time"
             + (" (their running intervals overlap)." if overlap > 1 else "."), "",
             "| trial | status | epochs | stop | best epoch | val PSNR | val SSIM | levels | s/epoch | peak MiB | genotype |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['trial']} | {r['status']} | {r['epochs']} | {r['stop']} | {r['best_epoch']} | "
                     f"{r.get(VAL_PSNR, math.nan):.3f} | {r.get(VAL_SSIM, math.nan):.4f} | {r.get('levels', '')} | "
                     f"{r.get('epoch_seconds', math.nan):.1f} | {r['peak_memory_mb']:.0f} | {r['genotype'] or '-'} |")
    path = exp.experiment_dir / "search_summary.md"
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    with atomic_file(exp.experiment_dir / SUMMARY_FILE) as tmp:
        tmp.write_text(json.dumps({"max_concurrent": overlap, "trials": rows}, indent=2, default=str))
    print("\n".join(lines))
    return path


def genotype_file(exp: ExperimentConfig, trial: str) -> Path:
    """Where a search trial's genotype (and its history beside it) lives in the run folder."""
    return exp.experiment_dir / "genotypes" / trial / "genotype.json"


def finished_search(exp: ExperimentConfig) -> List[Dict[str, Any]] | None:
    """The summary rows of a finished search of ``exp`` that can be reused as they are: every
    sigma has a trial, no trial was still running when the summary was written (an interrupted
    search), and every trial's genotype.json loads. None when anything is missing, damaged or
    unfinished (the search is then resumed from its checkpoints, which rewrites them).

    A row's genotype is read from this run folder (``genotypes/<trial>/genotype.json``), not
    from the absolute path the summary was written with: a run folder moved by a state bundle
    to another machine or ``output_dir`` keeps its finished search."""
    from hinas_core.genotype import Genotype

    try:
        rows = json.loads((exp.experiment_dir / SUMMARY_FILE).read_text())["trials"]
        for r in rows:
            here = genotype_file(exp, str(r["trial"]))
            if here.is_file():
                r["genotype"] = str(here)
            Genotype.load(r["genotype"])
        if rows and sorted({r["sigma"] for r in rows}) == sorted(exp.data.sigmas) and \
                not any(str(r.get("stop", "")).startswith("running") for r in rows):
            return rows
    except (OSError, ValueError, KeyError, TypeError):  # ValueError: bad JSON or a GenotypeError
        pass
    return None


def read_history(genotype_path) -> List[Dict[str, Any]]:
    """The per-epoch history saved beside a trial's genotype.json ([] when absent or damaged)."""
    path = Path(genotype_path).parent / HISTORY_FILE
    if not path.is_file():
        return []
    try:
        history = json.loads(path.read_text())
    except ValueError as exc:
        warnings.warn(f"{path} is damaged ({exc}); its curves are left out", stacklevel=2)
        return []
    return history if isinstance(history, list) else []
