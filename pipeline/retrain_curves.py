"""Retraining validation curves after the fact: read from the model files, drawn, reported.

A retraining job's curve (``validation``: iteration, patches, val_psnr, val_ssim per
validation) and its early stop (``stop_reason``) live in its model file's metadata
(:mod:`.retrain_stage`), so everything here is rebuilt from ``OUTPUT_DIR/NAME/models/`` alone,
also after a run moved between machines.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from hinas_core.models import ModelError, load_tensors
from hinas_core.plateau import best_point

from .experiment import PAIR_DATASETS, DataConfig, ExperimentConfig

STOP_TAG = "hinas.stop_reason"  # MLflow tag of a retraining run the plateau rule stopped early
FIGURE = "retrain_curves.png"


def model_meta(path) -> Optional[Dict[str, Any]]:
    """A model file's metadata without building its network; None when it cannot be read."""
    try:
        payload = load_tensors(path, "model file")
        meta = json.loads(payload["meta"])
    except (ModelError, KeyError, TypeError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def trained_meta(exp: ExperimentConfig) -> Dict[str, Dict[str, Any]]:
    """label -> metadata of every model of the run folder, by label."""
    out = {}
    for path in sorted((exp.experiment_dir / "models").glob("*/model.pt")):
        meta = model_meta(path)
        if meta is not None:
            out[path.parent.name] = meta
    return out


def write_curves_figure(exp: ExperimentConfig, rows: List[Dict[str, Any]]) -> Optional[Path]:
    """Draw the curves of ``rows``' models (``{label, model}``, as :func:`.retrain_stage.run_retrain`
    returns) into ``OUTPUT_DIR/NAME/retrain_curves.png``; None when no model has a curve."""
    from .figures import retrain_curve_figure, save_png

    metas = {r["label"]: model_meta(r["model"]) for r in rows if r.get("model")}
    curves = {k: m["validation"] for k, m in metas.items() if m and m.get("validation")}
    if not curves:
        return None
    return save_png(retrain_curve_figure(curves, {k: metas[k].get("stop_reason") for k in curves}),
                    exp.experiment_dir / FIGURE)


def _db(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.2f}"  # no validation (retrain.validate_every: 0)


def validation_set(data: DataConfig) -> str:
    """What the retraining validated on, in the report's words: a stored-pair dataset's V is
    pairs held out of its training split (their own degradation); an image dataset's V is the
    search's images with seeded noise."""
    if data.dataset in PAIR_DATASETS:
        return "Validation-V, the search's pairs held out of the training split, and its protocol"
    return "Validation-V with seeded noise, the search's images and protocol"


def retraining_lines(exp: ExperimentConfig) -> List[str]:
    """The report's retraining section: per model, patches trained, images trained on and
    validated on, best and last validation PSNR, and whether (and why) it stopped early."""
    metas = {k: m for k, m in trained_meta(exp).items() if "validation" in m}
    if not metas:
        return []
    lines = ["", f"Retraining (validation PSNR on {validation_set(exp.data)}; curves in {FIGURE}):", "",
             "| model | iterations | patches | images trained / validated | best val PSNR | last val PSNR | stop |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, m in sorted(metas.items()):
        curve = m["validation"]
        best = (best_point(curve) or {"val_psnr": math.nan})["val_psnr"]
        last = curve[-1]["val_psnr"] if curve else math.nan
        held = "" if m.get("val_held_out", True) else " (V also trained on)"
        planned = m.get("retrain", {}).get("iterations")
        stop = f"early, {m['stop_reason']}" if m.get("stop_reason") else "full budget" if m.get("iterations") == planned else "-"
        lines.append(f"| {label} | {m.get('iterations'):,} | {m.get('patches', 0):,} | {m.get('train_images')} / "
                     f"{m.get('val_images')}{held} | {_db(best)} | {_db(last)} | {stop} |")
    stopped = [f"{label} ({m['stop_reason']})" for label, m in sorted(metas.items()) if m.get("stop_reason")]
    if stopped:
        lines += ["", "Stopped early by the plateau rule (retrain.plateau): " + "; ".join(stopped) + "."]
    return lines


def complete_run(tracker, run_id: str, label: str, model_path) -> None:
    """Log a retraining job's curve from its model file into its MLflow run: every validation
    the trial could not send (e.g. those from before the run moved to this machine's store),
    the figure ``figures/val_curve.png``, and the stop reason as the tag ``hinas.stop_reason``."""
    from .figures import retrain_curve_figure

    meta = model_meta(model_path) or {}
    curve = meta.get("validation") or []
    for p in curve:  # the tracker skips the steps the run already holds
        tracker.log_metrics(run_id, {"val_psnr": p["val_psnr"], "val_ssim": p["val_ssim"], "patches_seen": p["patches"]},
                            step=p["iteration"])
    if meta.get("stop_reason"):
        tracker.client.set_tag(run_id, STOP_TAG, meta["stop_reason"])
    if curve:
        tracker.log_figure(run_id, retrain_curve_figure({label: curve}, {label: meta.get("stop_reason")}), "val_curve.png")
