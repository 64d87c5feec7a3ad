"""The retrain stage: one Ray Tune trial per (model, sigma, seed), checkpointed and resumable.

A *job* is a dict ``{"label", "spec", "sigma", "seed"}``: ``spec`` is a model spec (the
network derived from a genotype, or a baseline) that :func:`hinas_core.models.build_model`
rebuilds. Each trial trains with :class:`hinas_core.retrain.Trainer`, reports every
``retrain.report_every`` iterations with a checkpoint, and finally writes a self-describing
model file ``OUTPUT_DIR/NAME/models/<label>/model.pt``. A job whose model file exists for the
same inputs (spec, retrain config, data, sigma, seed) is not redone. Each trial owns its MLflow
run (:mod:`.trial_run`) and logs every report into it (loss, learning rate, patches/s, memory)
and every validation (``val_psnr``, ``val_ssim``, ``patches_seen``, step = iteration).

Validation: on the search's Validation-V, held out of the training patches
(``retrain.hold_out_val``), every ``retrain.validate_every`` iterations; the curve travels in
the checkpoint (so a cut, exported and resumed job keeps all of it) and ends in the model
file's metadata (``validation``), with ``stop_reason`` when ``retrain.plateau`` stopped the
job early. :func:`run_retrain` draws the curves into ``OUTPUT_DIR/NAME/retrain_curves.png``.
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List

import torch

from hinas_core.models import ModelError, load_model, load_tensors, save_model
from hinas_core.retrain import Trainer

from .experiment import ExperimentConfig, experiment_from_dict
from .faults import KillPoints, with_kill_point
from .mlflow_tracking import GENOTYPE, KIND, SIGMA, STAGE, flatten, genotype_hash, run_name
from .retrain_curves import STOP_TAG, model_meta, write_curves_figure
from .retries import RetryBudget, failure_config
from .signals import GracefulStop, fit
from .state import resume_file
from .trial_run import TrackingWatch, memory_metrics, open_trial_run, report_fields, reported_times

VALIDATION_ERROR_TAG = "hinas.validation_error"  # the last validation that failed (the job trained on)

CHECKPOINT_FILE = "retrain.pt"
RETRAIN_DIR = "retrain"


def job_inputs_hash(exp: ExperimentConfig, job: Dict[str, Any], legacy: bool = False) -> str:
    """What decides a trained model: equal hashes mean the stage need not run again.

    The network's genotype counts by its architecture, not its provenance: that names files on
    the machine that derived it (``derived_from``), so the same job imported on another machine,
    under another path, keeps its model. ``legacy``: the hash models trained before
    that change carry (provenance included), still accepted by :func:`existing_model`."""
    d = exp.to_dict()
    spec = job["spec"]
    if not legacy and isinstance(spec.get("genotype"), dict):
        spec = {**spec, "genotype": {k: v for k, v in spec["genotype"].items() if k != "provenance"}}
    key = {"spec": spec, "sigma": job["sigma"], "seed": job["seed"], "retrain": d["retrain"],
           "data": {k: v for k, v in d["data"].items() if k not in ("sigmas",)}}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_path(exp: ExperimentConfig, label: str) -> Path:
    return exp.experiment_dir / "models" / label / "model.pt"


def existing_model(exp: ExperimentConfig, job: Dict[str, Any]) -> Path | None:
    """The job's model file if it was trained from exactly these inputs, else None."""
    path = model_path(exp, job["label"])
    if not path.is_file():
        return None
    try:
        _, _, meta = load_model(path)
    except ModelError:
        return None
    return path if meta.get("inputs_hash") in (job_inputs_hash(exp, job), job_inputs_hash(exp, job, legacy=True)) else None


def retrained_because(exp: ExperimentConfig, job: Dict[str, Any]) -> str | None:
    """Why the model file at the job's path is not reused (None: there is none, or it is reused).
    A model trained on the same files at another ``data.root`` (a SIM or Rain set made again,
    elsewhere) is the common surprise: the root is one of the inputs, so say so and how to keep it."""
    path = model_path(exp, job["label"])
    if not path.is_file() or existing_model(exp, job) is not None:
        return None
    try:
        _, _, meta = load_model(path)
    except ModelError as exc:
        return f"{exc}: trained again"
    old_root = meta.get("data_root")
    if old_root and old_root != exp.data.root:
        there = replace(exp, data=replace(exp.data, root=old_root))
        if meta.get("inputs_hash") == job_inputs_hash(there, job):
            here = exp.data.root or "the dataset's default location"
            return (f"{path} was trained on the data in {old_root}; this run reads {here}, so it is "
                    f"trained again (to keep it, stop and continue with --set data.root={old_root})")
    return (f"{path} was trained from other inputs (its network, the retrain or data section - data.root "
            "included - or the seed): trained again")


def jobs_to_train(exp: ExperimentConfig, jobs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The jobs without a model from these inputs, the searched networks first and the baselines
    after (each in the given order): where the GPUs hold fewer jobs than there are (2 GPUs at
    0.5 each, 6 jobs), the long HiNAS jobs start at once and the short baselines fill the slots
    they leave."""
    todo = [j for j in jobs if existing_model(exp, j) is None]
    return sorted(todo, key=lambda j: j["spec"]["kind"] != "hinas")


def run_tags(spec: Dict[str, Any], sigma: float) -> Dict[str, Any]:
    """The tags of a retraining job's run: stage, model kind, sigma and the genotype's hash."""
    tags = {STAGE: "retrain", KIND: spec["kind"], SIGMA: sigma}
    if spec.get("genotype"):
        tags[GENOTYPE] = genotype_hash(spec["genotype"])
    return tags


def retrain_trainable(config: Dict[str, Any]) -> None:
    """Ray Tune function trainable for one retraining job (config: experiment dict, job)."""
    from ray import tune

    from .data import retrain_data

    exp = experiment_from_dict(config["experiment"])
    job = config["job"]
    cfg = replace(exp.retrain, seed=int(job["seed"]))
    torch.set_num_threads(max(1, int(exp.resources.cpu)))
    device = torch.device("cuda" if exp.resources.gpu > 0 and torch.cuda.is_available() else "cpu")
    if device.type == "cuda":  # a reused worker (reuse_actors): this job's peak, not an earlier job's
        torch.cuda.reset_peak_memory_stats(device)
    data = retrain_data(exp.data, float(job["sigma"]), cfg.hold_out_val)
    sampler = with_kill_point(data.sampler, "retrain-step")
    trainer = Trainer(job["spec"], cfg, sampler, device, validate=data.validate)
    # Tune's checkpoint when it restores the trial, else one imported from a state bundle.
    with resume_file(tune.get_checkpoint(), exp, "retrain", job["label"]) as path:
        if path is not None:
            trainer.load_state_dict(load_tensors(path, "retrain checkpoint", device))
    spec = job["spec"]
    run = open_trial_run(config, f"retrain:{job['label']}", run_name("retrain", spec["kind"], float(job["sigma"]), cfg.seed),
                         run_tags(spec, float(job["sigma"])),
                         flatten({"kind": spec["kind"], "width": spec.get("width"), "seed": cfg.seed, "retrain": cfg.to_dict()}))
    try:
        while not trainer.done:
            metrics = trainer.run()
            for point in metrics.pop("validations"):
                run.log({"val_psnr": point["val_psnr"], "val_ssim": point["val_ssim"], "patches_seen": point["patches"]},
                        step=point["iteration"])
                if "error" in point:  # the trainer warned and trained on; the run says so too
                    run.set_tags({VALIDATION_ERROR_TAG: f"iteration {point['iteration']}: {point['error']}"[:5000]})
            run.log({**metrics, **memory_metrics(device)}, step=metrics["iteration"])
            if trainer.stop_reason is not None:
                run.set_tags({STOP_TAG: trainer.stop_reason})
            if trainer.done:
                meta = {"label": job["label"], "sigma": job["sigma"], "seed": job["seed"], "iterations": trainer.iteration,
                        "batch_size": cfg.batch_size, "dataset": exp.data.dataset, "params": trainer.params,
                        "inputs_hash": job_inputs_hash(exp, job), "data_root": exp.data.root,
                        "retrain": cfg.to_dict(), "experiment": exp.name,
                        **validation_meta(trainer, data.sizes)}
                save_model(model_path(exp, job["label"]), spec, trainer.model, meta)
                run.finish()  # before the last report: Tune may stop the trial inside it
            with tempfile.TemporaryDirectory() as d:
                torch.save(trainer.state_dict(), Path(d) / CHECKPOINT_FILE)
                tune.report({**metrics, "label": job["label"], "sigma": job["sigma"], **report_fields(run)},
                            checkpoint=tune.Checkpoint.from_directory(d))
    except Exception:
        run.finish("FAILED")
        raise


def validation_meta(trainer: Trainer, sizes: Dict[str, Any]) -> Dict[str, Any]:
    """What a model file records about its data and validation: images (pairs) trained on and
    validated on, whether V was held out, patches seen, the validation curve, and why the job
    stopped early (None: it trained its whole budget) and, where the plateau rule began an anneal,
    the iteration it began at (``anneal_from``)."""
    return {"train_images": sizes["train"], "val_images": sizes["val"], "val_held_out": sizes["val_held_out"],
            "patches": trainer.patches, "validate_every": trainer.config.val_every if trainer.validate else 0,
            "validation": [dict(p) for p in trainer.curve], "stop_reason": trainer.stop_reason,
            "anneal_from": trainer.anneal_from}


def run_retrain(exp: ExperimentConfig, jobs: List[Dict[str, Any]], resume: bool = False,
                tracking: Dict[str, Any] | None = None) -> List[Dict[str, Any]]:
    """Train every job not already trained; return ``{label, model, status, stop_reason, ...}`` per job
    (``stop_reason``: why the plateau rule stopped it early, else None).

    ``tracking``: :meth:`.mlflow_tracking.Tracker.trial_spec`, for each trial to log into its
    own run (None: no MLflow)."""
    from ray import tune

    from .search_stage import init_ray, restorable, trial_config

    todo = jobs_to_train(exp, jobs)
    for j in todo:
        because = retrained_because(exp, j)
        if because:
            print(f"hinas run: {j['label']}: {because}", file=sys.stderr, flush=True)
    rows = {j["label"]: {"label": j["label"], "sigma": j["sigma"], "kind": j["spec"]["kind"], "status": "reused"} for j in jobs}
    if todo:
        init_ray()
        path = exp.experiment_dir / RETRAIN_DIR
        trainable = tune.with_resources(retrain_trainable, {"cpu": exp.resources.cpu, "gpu": exp.resources.gpu})
        if resume and restorable(path):
            tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space={"experiment": exp.to_dict(), "job": tune.grid_search(todo), "tracking": tracking},
                # A finished job's worker takes the next job: each new one would import torch, Ray
                # and MLflow and open the SQLite store again (seconds of CPU each; docs/RESULTS.md).
                tune_config=tune.TuneConfig(max_concurrent_trials=exp.resources.max_concurrent or None, reuse_actors=True,
                                            trial_dirname_creator=lambda t: f"{t.config['job']['label']}-{t.trial_id}"),
                run_config=tune.RunConfig(name=RETRAIN_DIR, storage_path=str(exp.experiment_dir),
                                          checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                          failure_config=failure_config(),
                                          callbacks=[RetryBudget(), KillPoints("retrain"), GracefulStop(), TrackingWatch()], verbose=1),
            )
        for result in fit(tuner, exp.experiment_dir):  # Ctrl-C / SIGTERM: trials checkpoint, then Interrupted
            label = trial_config(result)["job"]["label"]
            frame = result.metrics_dataframe
            rows[label].update(status="ERROR" if result.error else "trained",
                               patches_per_s=(result.metrics or {}).get("patches_per_s"),
                               train_seconds=(result.metrics or {}).get("time_total_s"),
                               end=float(reported_times(frame).iloc[-1]) if frame is not None and len(frame) else None)
    for job in jobs:
        path = existing_model(exp, job)
        rows[job["label"]]["model"] = str(path) if path else None
        rows[job["label"]]["stop_reason"] = (model_meta(path) or {}).get("stop_reason") if path else None
        if path is None and rows[job["label"]]["status"] != "ERROR":
            rows[job["label"]]["status"] = "missing"
    write_curves_figure(exp, [rows[j["label"]] for j in jobs])
    return [rows[j["label"]] for j in jobs]
