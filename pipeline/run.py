"""`hinas run`: search -> derive -> retrain -> evaluate -> report, from one experiment config.

Each stage writes its products under ``OUTPUT_DIR/NAME/`` and a stage whose products exist for
the same inputs is not redone, so ``hinas run CONFIG --resume`` after a crash continues where
the pipeline stopped. MLflow holds one parent run per pipeline, under it one run per stage
(search, derive, retrain, evaluate), and under those a run per search trial, retraining job and
evaluation: the trials log into theirs while they train (:mod:`.trial_run`),
the driver completes them with the stages' products and logs the evaluations
(:mod:`.mlflow_tracking`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List

from hinas_core.genotype import Genotype, apply_edit
from hinas_core.metrics import VAL_PSNR
from hinas_core.models import hinas_spec

from .derive_stage import derive_given
from .evaluate_stage import kept_evaluation, progress_printer, run_evaluate
from .mlflow_tracking import (ABLATION, DATASET, EXPERIMENT, GENOTYPE, KIND, SIGMA, STAGE, Tracker, artifact_location,
                              genotype_hash, run_name, tracking_uri, ui_hint)
from .experiment import ExperimentConfig
from .faults import kill_point
from .report import write_report
from .retrain_curves import FIGURE as RETRAIN_CURVES, complete_run
from .retrain_stage import run_retrain, run_tags
from .search_stage import (WIDTH_PATH, check_search_inputs, epoch_metrics, finished_search, lattice_moves, read_history,
                           refuse_failed, run_search, search_dirs)


def search_or_reuse(exp: ExperimentConfig, resume: bool, tracking: Dict[str, Any] | None = None) -> List[Dict[str, Any]]:
    check_search_inputs(exp)  # neither reused nor continued under other settings
    rows = finished_search(exp)  # None unless the summary and every genotype.json read back whole
    if rows is not None:
        print(f"hinas run: search results exist in {exp.experiment_dir}, reusing them", flush=True)
        return rows
    return run_search(exp, resume=resume and any((exp.experiment_dir / n).exists() for n in search_dirs(exp)),
                      tracking=tracking)


def derive(exp: ExperimentConfig, search_rows: List[Dict[str, Any]]) -> Dict[float, Path]:
    """Per sigma, the genotype of the trial (seed) with the best validation PSNR."""
    chosen: Dict[float, Path] = {}
    for sigma in exp.data.sigmas:
        rows = [r for r in search_rows if r["sigma"] == sigma and r.get("genotype")]
        if not rows:
            raise RuntimeError(f"no search trial for sigma {sigma:g} produced a genotype")
        best = max(rows, key=lambda r: r.get(VAL_PSNR, -math.inf))
        g = Genotype.load(best["genotype"])
        chosen[sigma] = g.save(exp.experiment_dir / "derived" / f"sigma{sigma:g}" / "genotype.json")
    return chosen


def retrain_jobs(exp: ExperimentConfig, genotypes: Dict[float, Path]) -> List[Dict[str, Any]]:
    jobs = []
    for sigma, path in genotypes.items():
        found = Genotype.load(path)
        kw = dict(in_channels=exp.space.in_channels, activation=exp.space.activation, output=exp.space.output,
                  aspp=exp.model.aspp)
        # The width is calibrated on the found network; Table 3's edit then changes its cell at that
        # width, as the paper's R1/R2 modify the found network (R1 gains the offset convs' weights).
        width = hinas_spec(found, width=exp.model.width, target_params=None if exp.model.width else exp.model.target_params or None,
                           **kw)["width"]
        spec = hinas_spec(apply_edit(found, exp.derive.edit), width=width, **kw)
        for seed in exp.seeds:
            jobs.append({"label": f"hinas-sigma{sigma:g}-seed{seed}", "spec": spec, "sigma": sigma, "seed": seed})
            for name in exp.model.baselines:
                jobs.append({"label": f"{name}-sigma{sigma:g}-seed{seed}", "spec": baseline_spec(exp, name),
                             "sigma": sigma, "seed": seed})
    return jobs


def baseline_spec(exp: ExperimentConfig, name: str) -> Dict[str, Any]:
    if name == "dncnn":
        return {"kind": "dncnn", "depth": exp.model.dncnn_depth, "width": exp.model.dncnn_width,
                "in_channels": exp.space.in_channels}
    raise ValueError(f"unknown baseline {name!r}")


def _params(exp: ExperimentConfig) -> Dict[str, Any]:
    """The small, stable set of config values logged as the parent run's params."""
    d = exp.to_dict()
    pick = {"space": ("preset", "layers", "nodes", "base_width", "cell_sharing", "tied_cells", "width_mode", "ops"),
            "search": ("ssim_weight", "patience", "stop_rule", "max_epochs", "warmup_epochs", "batch_size"),
            "data": ("dataset", "sigmas", "patch_size", "val_protocol"),
            "retrain": ("iterations", "batch_size", "optimizer", "lr", "ssim_weight"),
            "model": ("width", "target_params", "baselines", "aspp"), "derive": ("from_genotype", "edit")}
    params = {sec: {k: d[sec][k] for k in keys} for sec, keys in pick.items()}
    params["data"].update(channels=exp.data.channels, augment=exp.data.augment, metric=exp.data.metric)
    return {**params, "ablation": exp.ablation or "none"}


def _complete_search(tracker: Tracker, stage: str, exp: ExperimentConfig, rows: List[Dict[str, Any]], done: set) -> None:
    """Complete each search trial's run with its products, and any epoch it could not send."""
    from .figures import arch_figure, genotype_figure, psnr_figure

    moves = lattice_moves(exp.space)
    for r in rows:
        key = f"search:{r['trial']}"
        if key in done:
            continue
        tags = {STAGE: "search", KIND: "hinas", SIGMA: r["sigma"], DATASET: exp.data.dataset, ABLATION: exp.ablation or "none"}
        name = run_name("search", "hinas", r["sigma"], r["seed"], r["trial"].split("-")[-1] if r.get("hp") else "")
        with tracker.complete(name, key, stage, tags, {"sigma": r["sigma"], "seed": r["seed"], "hp": r.get("hp") or {}},
                              end_time=r.get("end"), failed=not r.get("genotype")) as run_id:
            if not r.get("genotype"):
                continue
            folder = Path(r["genotype"]).parent
            history = read_history(r["genotype"])
            for h in history:  # the trial logged these live; only what it could not send is added
                tracker.log_metrics(run_id, epoch_metrics(h, moves), step=h["epoch"])
            tracker.log_metrics(run_id, {"best_epoch": r["best_epoch"], "best_val_psnr": r.get(VAL_PSNR),
                                         "epochs": r["epochs"], "peak_memory_mb": r.get("peak_memory_mb")})
            g = Genotype.load(r["genotype"])
            tracker.client.set_tag(run_id, GENOTYPE, genotype_hash(g.to_dict()))
            tracker.client.set_tag(run_id, WIDTH_PATH, "-".join(map(str, g.levels)))
            tracker.log_artifact(run_id, r["genotype"])
            tracker.log_figure(run_id, genotype_figure(g), "genotype.png")
            if history:
                tracker.log_artifact(run_id, folder / "history.json")
                tracker.log_figure(run_id, psnr_figure(history), "val_psnr.png")
                tracker.log_figure(run_id, arch_figure(history, exp.space.ops, moves), "alpha_beta.png")


def _complete_retrain(tracker: Tracker, stage: str, exp: ExperimentConfig, jobs: List[Dict[str, Any]],
                      trained: List[Dict[str, Any]], done: set) -> None:
    """Complete each retraining job's run with its model; a job without one has its run ended FAILED."""
    by_label = {j["label"]: j for j in jobs}
    for t in trained:
        key, job = f"retrain:{t['label']}", by_label[t["label"]]
        if key in done:
            continue
        if not t.get("model"):  # its run is completed once a resumed pipeline has trained it
            tracker.end_if_running(key, stage, "FAILED")
            continue
        tags = {**run_tags(job["spec"], t["sigma"]), DATASET: exp.data.dataset, ABLATION: exp.ablation or "none"}
        with tracker.complete(run_name("retrain", t["kind"], t["sigma"], job["seed"]), key, stage, tags,
                              {"kind": t["kind"], "width": job["spec"].get("width"), **exp.retrain.to_dict()},
                              end_time=t.get("end")) as run_id:
            tracker.log_metrics(run_id, {"train_seconds": t.get("train_seconds")})
            complete_run(tracker, run_id, t["label"], t["model"])  # the validation curve, its figure, an early stop
            # An MLflow model around the weights-only file; HiNAS nets also as `hinas-sigma<σ>` versions.
            tracker.log_denoiser(run_id, t["model"], job["spec"].get("in_channels", 1),
                                 register=f"hinas-sigma{t['sigma']:g}" if t["kind"] == "hinas" else None)


def _log_evaluations(tracker: Tracker, parent: str, stage: str, exp: ExperimentConfig, jobs: List[Dict[str, Any]],
                     evaluation: List[Dict[str, Any]], common: Dict[str, Any]) -> None:
    """One run per evaluated model under the evaluate stage's run (those an earlier, interrupted
    attempt completed are kept), and its headline numbers on the pipeline run ``parent``."""
    done = tracker.finished(stage)
    for r in evaluation:
        if f"evaluate:{r['label']}" in done:
            continue
        job = next((j for j in jobs if j["label"] == r["label"]), None)  # None: BM3D
        tags = {STAGE: "evaluate", KIND: r["kind"], SIGMA: r["sigma"], **common}
        if job and job["spec"].get("genotype"):
            tags[GENOTYPE] = genotype_hash(job["spec"]["genotype"])
        name = run_name("eval", r["kind"], r["sigma"], job["seed"] if job else None)
        params = {"kind": r["kind"], **({"bm3d_source": r["bm3d_source"]} if "bm3d_source" in r else {})}
        with tracker.run(name, f"evaluate:{r['label']}", stage, tags, params) as run_id:
            tracker.log_metrics(run_id, {k: v for k, v in r.items() if k.startswith(("psnr", "ssim")) or k in ("params", "inference_s")})
            parquet = exp.experiment_dir / "evaluation" / f"{r['label']}.parquet"
            if parquet.is_file():
                tracker.log_artifact(run_id, parquet)
            if r.get("examples"):
                tracker.log_artifact(run_id, r["examples"], "figures")
            # Inside the child's block: a FINISHED evaluation run implies these are logged too.
            tracker.log_metrics(parent, {f"{r['label']}.{k}": v for k, v in r.items() if k in ("psnr_patch", "psnr_whole", "ssim_whole")})
        kill_point("evaluate-logged")


def run_pipeline(exp: ExperimentConfig, resume: bool = False) -> Dict[str, Any]:
    exp.experiment_dir.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(exp.output_dir)
    tracker = Tracker(uri, exp.mlflow_experiment or exp.name, artifact_location(uri, exp.output_dir))
    print(f"MLflow, live: {ui_hint(uri, tracker.experiment_id)}", flush=True)
    common = {DATASET: exp.data.dataset, ABLATION: exp.ablation or "none"}
    # No hinas.ablation tag on the parent nor on the stage runs (its params hold it): MLflow's UI
    # shows a matching child's parent beside it, and grouping by that tag would average it in.
    tags = {STAGE: "pipeline", DATASET: exp.data.dataset, EXPERIMENT: exp.name}
    stage_tags = {DATASET: exp.data.dataset, EXPERIMENT: exp.name}
    with tracker.run(exp.name, f"pipeline:{exp.experiment_dir}", tags=tags, params=_params(exp)) as parent:
        tracker.close_dangling(parent)
        tracker.log_json(parent, exp.to_dict(), "config.json")
        search_rows: List[Dict[str, Any]] = []
        if not exp.derive.from_genotype:  # Table 3's edits, SIM with the BSD500 networks: no search
            with tracker.stage(parent, "search", stage_tags) as stage:
                search_rows = search_or_reuse(exp, resume, tracker.trial_spec(stage, common))
                kill_point("searched")
                _complete_search(tracker, stage, exp, search_rows, tracker.finished(stage))
                if exp.optuna is not None:  # the study's importances, their plot, its trials
                    from .optuna_study import log_study

                    log_study(tracker, stage, exp)
                kill_point("search-logged")
                refuse_failed(search_rows)
        with tracker.stage(parent, "derive", stage_tags) as stage:
            genotypes = derive_given(exp) if exp.derive.from_genotype else derive(exp, search_rows)
            kill_point("derived")
            for sigma, path in genotypes.items():
                tracker.log_artifact(stage, path, f"derived/sigma{sigma:g}")
        with tracker.stage(parent, "retrain", stage_tags) as stage:
            jobs = retrain_jobs(exp, genotypes)
            trained = run_retrain(exp, jobs, resume=resume, tracking=tracker.trial_spec(stage, common))
            kill_point("retrained")
            _complete_retrain(tracker, stage, exp, jobs, trained, tracker.finished(stage))
            if (exp.experiment_dir / RETRAIN_CURVES).is_file():
                tracker.log_artifact(stage, exp.experiment_dir / RETRAIN_CURVES, "figures")
            failed = [t["label"] for t in trained if not t.get("model")]
            if failed:
                raise RuntimeError(f"retraining produced no model for {failed}")
            kill_point("retrain-logged")
        with tracker.stage(parent, "evaluate", stage_tags) as stage:
            evaluation = kept_evaluation(exp, trained) if resume else None
            if evaluation is None:
                evaluation = run_evaluate(exp, trained, progress=lambda label: progress_printer(label, prefix="hinas run"))
            else:
                print(f"hinas run: the evaluation in {exp.experiment_dir / 'evaluation'} is of these very models "
                      "and settings, reusing it", flush=True)
            kill_point("evaluated")
            _log_evaluations(tracker, parent, stage, exp, jobs, evaluation, common)
        report = write_report(exp, search_rows, evaluation)
        kill_point("report")
        tracker.log_artifact(parent, report)
    return {"search": search_rows, "genotypes": {str(k): str(v) for k, v in genotypes.items()},
            "retrain": trained, "evaluation": evaluation, "report": str(report), "mlflow_run": parent}
