"""`hinas run`: search -> derive -> retrain -> evaluate -> report, from one experiment config.

Each stage writes its products under ``OUTPUT_DIR/NAME/`` and a stage whose products exist for
the same inputs is not redone, so ``hinas run CONFIG --resume`` after a crash continues where
the pipeline stopped. Everything is logged to MLflow by :mod:`.tracking` from the driver: one
parent run per pipeline, child runs per search trial, retraining job and evaluation.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List

from hinas_core.genotype import Genotype, replace_ops, rewire
from hinas_core.metrics import VAL_PSNR
from hinas_core.models import hinas_spec

from .evaluate_stage import run_evaluate
from .experiment import ExperimentConfig
from .report import write_report
from .retrain_stage import run_retrain
from .search_stage import run_search, search_dirs

SEARCH_SUMMARY = "search_summary.json"


def search_or_reuse(exp: ExperimentConfig, resume: bool) -> List[Dict[str, Any]]:
    summary = exp.experiment_dir / SEARCH_SUMMARY
    if summary.is_file():
        rows = json.loads(summary.read_text())["trials"]
        if rows and all(r.get("genotype") and Path(r["genotype"]).is_file() for r in rows) and \
                sorted({r["sigma"] for r in rows}) == sorted(exp.data.sigmas):
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


def run_pipeline(exp: ExperimentConfig, resume: bool = False) -> Dict[str, Any]:
    exp.experiment_dir.mkdir(parents=True, exist_ok=True)
    search_rows = search_or_reuse(exp, resume)
    genotypes = derive(exp, search_rows)
    jobs = retrain_jobs(exp, genotypes)
    trained = run_retrain(exp, jobs, resume=resume)
    failed = [t["label"] for t in trained if not t.get("model")]
    if failed:
        raise RuntimeError(f"retraining produced no model for {failed}")
    evaluation = run_evaluate(exp, [{**t, "sigma": t["sigma"]} for t in trained])
    report = write_report(exp, search_rows, evaluation)
    return {"search": search_rows, "genotypes": {str(k): str(v) for k, v in genotypes.items()},
            "retrain": trained, "evaluation": evaluation, "report": str(report)}
