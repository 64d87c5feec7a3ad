"""`hinas run`: search -> derive -> retrain -> evaluate -> report, from one experiment config.

Each stage writes its products under ``OUTPUT_DIR/NAME/`` and a stage whose products exist for
the same inputs is not redone, so ``hinas run CONFIG --resume`` after a crash continues where
the pipeline stopped. Everything is logged to MLflow by :mod:`.tracking` from the driver: one
parent run per pipeline, child runs per search trial, retraining job and evaluation.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List

from hinas_core.genotype import Genotype, replace_ops, rewire
from hinas_core.metrics import VAL_PSNR
from hinas_core.models import hinas_spec

from .evaluate_stage import run_evaluate
from .mlflow_tracking import ABLATION, DATASET, EXPERIMENT, SIGMA, STAGE, Tracker, tracking_uri
from .experiment import ExperimentConfig
from .faults import kill_point
from .report import write_report
from .retrain_stage import run_retrain
from .search_stage import finished_search, read_history, run_search, search_dirs


def search_or_reuse(exp: ExperimentConfig, resume: bool) -> List[Dict[str, Any]]:
    rows = finished_search(exp)  # None unless the summary and every genotype.json read back whole
    if rows is not None:
        print(f"hinas run: search results exist in {exp.experiment_dir}, reusing them", flush=True)
        return rows
    return run_search(exp, resume=resume and any((exp.experiment_dir / n).exists() for n in search_dirs(exp)))


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
        g = Genotype.load(path)
        if exp.model.cell_edit == "r1":  # Table 3: every conv becomes a deformable conv
            g = replace_ops(g, {"conv": "def"})
        elif exp.model.cell_edit == "r2":  # Table 3: the found cell, rewired
            g = rewire(g)
        spec = hinas_spec(g, width=exp.model.width, target_params=None if exp.model.width else exp.model.target_params or None,
                          in_channels=exp.space.in_channels, activation=exp.space.activation, output=exp.space.output)
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
            "model": ("width", "target_params", "baselines", "cell_edit")}
    return {**{sec: {k: d[sec][k] for k in keys} for sec, keys in pick.items()}, "ablation": exp.ablation or "none"}


def _log_search(tracker: Tracker, parent: str, exp: ExperimentConfig, rows: List[Dict[str, Any]], done: set) -> None:
    from .figures import arch_figure, genotype_figure, psnr_figure

    for r in rows:
        if f"search:{r['trial']}" in done:
            continue
        tags = {STAGE: "search", SIGMA: r["sigma"], DATASET: exp.data.dataset, ABLATION: exp.ablation or "none"}
        with tracker.run(f"search {r['trial']}", f"search:{r['trial']}", parent, tags,
                         {"sigma": r["sigma"], "seed": r["seed"], "hp": r.get("hp") or {}}) as run_id:
            if not r.get("genotype"):
                continue
            folder = Path(r["genotype"]).parent
            history = read_history(r["genotype"])
            for h in history:
                tracker.log_metrics(run_id, {k: h.get(k) for k in ("val_psnr", "val_ssim", "train_loss", "arch_loss",
                                                                   "n_skip", "none_dominant_edges", "epoch_seconds")}, step=h["epoch"])
            tracker.log_metrics(run_id, {"best_epoch": r["best_epoch"], "best_val_psnr": r.get(VAL_PSNR),
                                         "epochs": r["epochs"], "peak_memory_mb": r.get("peak_memory_mb")})
            tracker.log_artifact(run_id, r["genotype"])
            g = Genotype.load(r["genotype"])
            tracker.log_figure(run_id, genotype_figure(g), "genotype.png")
            if history:
                tracker.log_artifact(run_id, folder / "history.json")
                tracker.log_figure(run_id, psnr_figure(history), "val_psnr.png")
                tracker.log_figure(run_id, arch_figure(history, exp.space.ops), "alpha_beta.png")


def run_pipeline(exp: ExperimentConfig, resume: bool = False) -> Dict[str, Any]:
    exp.experiment_dir.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(tracking_uri(exp.output_dir), exp.mlflow_experiment or exp.name)
    tags = {STAGE: "pipeline", DATASET: exp.data.dataset, ABLATION: exp.ablation or "none", EXPERIMENT: exp.name}
    with tracker.run(exp.name, f"pipeline:{exp.experiment_dir}", tags=tags, params=_params(exp)) as parent:
        tracker.close_dangling(parent)
        done = tracker.finished(parent)  # child runs an earlier, interrupted attempt completed
        tracker.log_json(parent, exp.to_dict(), "config.json")
        search_rows = search_or_reuse(exp, resume)
        kill_point("searched")
        _log_search(tracker, parent, exp, search_rows, done)
        kill_point("search-logged")
        genotypes = derive(exp, search_rows)
        kill_point("derived")
        for sigma, path in genotypes.items():
            tracker.log_artifact(parent, path, f"derived/sigma{sigma:g}")
        jobs = retrain_jobs(exp, genotypes)
        trained = run_retrain(exp, jobs, resume=resume)
        kill_point("retrained")
        specs = {j["label"]: j["spec"] for j in jobs}
        for t in trained:
            if not t.get("model") or f"retrain:{t['label']}" in done:
                continue  # a job without a model gets its run once a resumed pipeline has trained it
            tags = {STAGE: "retrain", SIGMA: t["sigma"], DATASET: exp.data.dataset, ABLATION: exp.ablation or "none"}
            with tracker.run(f"retrain {t['label']}", f"retrain:{t['label']}", parent, tags,
                             {"kind": t["kind"], "width": specs[t["label"]].get("width"), **exp.retrain.to_dict()}) as run_id:
                tracker.log_metrics(run_id, {"patches_per_s": t.get("patches_per_s"), "train_seconds": t.get("train_seconds")})
                tracker.log_artifact(run_id, t["model"], "model")
        failed = [t["label"] for t in trained if not t.get("model")]
        if failed:
            raise RuntimeError(f"retraining produced no model for {failed}")
        kill_point("retrain-logged")
        evaluation = run_evaluate(exp, trained)
        kill_point("evaluated")
        for r in evaluation:
            if f"evaluate:{r['label']}" in done:
                continue
            tags = {STAGE: "evaluate", SIGMA: r["sigma"], DATASET: exp.data.dataset, ABLATION: exp.ablation or "none"}
            with tracker.run(f"evaluate {r['label']}", f"evaluate:{r['label']}", parent, tags, {"kind": r["kind"]}) as run_id:
                tracker.log_metrics(run_id, {k: v for k, v in r.items() if k.startswith(("psnr", "ssim")) or k in ("params", "inference_s")})
                parquet = exp.experiment_dir / "evaluation" / f"{r['label']}.parquet"
                if parquet.is_file():
                    tracker.log_artifact(run_id, parquet)
                if r.get("examples"):
                    tracker.log_artifact(run_id, r["examples"], "figures")
                # Inside the child's block: a FINISHED evaluation run implies these are logged too.
                tracker.log_metrics(parent, {f"{r['label']}.{k}": v for k, v in r.items() if k in ("psnr_patch", "psnr_whole", "ssim_whole")})
            kill_point("evaluate-logged")
        report = write_report(exp, search_rows, evaluation)
        kill_point("report")
        tracker.log_artifact(parent, report)
    return {"search": search_rows, "genotypes": {str(k): str(v) for k, v in genotypes.items()},
            "retrain": trained, "evaluation": evaluation, "report": str(report), "mlflow_run": parent}
