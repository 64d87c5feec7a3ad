"""The evaluate stage: trained models on the test set, both protocols, PSNR/SSIM, size, speed.

Every model is scored on the same noisy test images (noise fixed per image by the data
config's seed), so rows of one evaluation can be compared as ratios. Every row also carries
the score of those noisy images themselves (``noisy_psnr`` / ``noisy_ssim``: the identity
"denoiser", the floor a model must clear) and the brightness offset of its outputs
(``offset_<protocol>``: output mean minus clean mean, grey levels). Per-image results go to
``evaluation/<label>.parquet``; the summary rows are returned and written as JSON.

Each model's row is also kept beside its tables (``<label>.row.json``, written last, with the
key of what decided it): a run cut during the evaluation, or resumed on another machine from
its bundle, scores again only the models that had not finished, not every model of the set.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from hinas.datasets import evaluate, save_results, to_chw
from hinas_core.fsutil import atomic_file
from hinas_core.models import load_model
from hinas_core.network import count_parameters
from hinas_core.steps import synchronize

from .bm3d_kept import bm3d_denoiser, find_kept
from .data import test_pairs
from .experiment import PAIR_DATASETS, ExperimentConfig
from .faults import kill_point

INPUTS = "inputs.json"  # what summary.json was computed from: see kept_evaluation
ROW = ".row.json"  # <label>.row.json: one model's row and what it was computed from (kept_model_row)


def _device(exp: ExperimentConfig) -> torch.device:
    return torch.device("cuda" if exp.resources.gpu > 0 and torch.cuda.is_available() else "cpu")


def inference_seconds(model, pairs, device, repeats: int = 3, enough_s: float = 2.0,
                      budget_s: float = 30.0) -> Tuple[float, int]:
    """Wall time to denoise every test image whole, synchronised, and how many images were timed:
    the median of up to ``repeats`` timed passes (fewer once ``enough_s`` seconds are spent, so a
    long test set is timed once), after a warm-up call on one image of each distinct size: a first
    call of a shape pays for allocations and kernel selection, which is not inference.

    A pass that is still running after ``budget_s`` seconds (a CPU: 200 BSD500 images take ~50
    minutes on 2 cores) stops there, and the time per image it measured is scaled to the whole set:
    the scores are already computed, so the timing should not cost a second pass over the set."""
    xs = [to_chw(p.input)[None] / 255 for p in pairs]
    times = []
    with torch.inference_mode():
        for x in {tuple(x.shape): x for x in xs}.values():
            model(x.to(device))
        while len(times) < repeats and sum(times) < enough_s:
            synchronize(device)
            t0 = time.perf_counter()
            for k, x in enumerate(xs, 1):
                model(x.to(device))
                if k < len(xs) and time.perf_counter() - t0 > budget_s:
                    synchronize(device)
                    return (time.perf_counter() - t0) / k * len(xs), k
            synchronize(device)
            times.append(time.perf_counter() - t0)
    return float(np.median(times)), len(xs)


def noisy_scores(exp: ExperimentConfig, sigma: float) -> Dict[str, float]:
    """PSNR / SSIM of the noisy test images themselves (what every model of ``sigma`` is given)."""
    pairs = test_pairs(exp.data, sigma, exp.evaluate.max_images, exp.evaluate.crop)
    r = evaluate(lambda x: x, pairs, protocol="whole", sigma=sigma, dataset=exp.data.dataset, metric=exp.data.metric)
    return {"noisy_psnr": r.psnr, "noisy_ssim": r.ssim}


def progress_printer(label: str, every_s: float = 15.0, prefix: str = "hinas evaluate"):
    """``progress(protocol, done, total)`` for evaluate_model: a line on stderr at most every
    ``every_s`` seconds, and one when a protocol's last image is scored."""
    start, last = time.monotonic(), [0.0]

    def progress(protocol: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= every_s:
            last[0] = now
            print(f"{prefix}: {label}, {protocol} protocol: {done}/{total} images, {now - start:.0f} s",
                  file=sys.stderr, flush=True)
    return progress


def evaluate_model(exp: ExperimentConfig, model_file: Path, sigma: float, label: str,
                   out_dir: Optional[Path] = None,
                   progress: Optional[Callable[[str, int, int], None]] = None) -> Dict[str, Any]:
    """Score one model file; returns a summary row (PSNR/SSIM per protocol, parameters, seconds).
    ``progress(protocol, done, total)`` is called after each test image."""
    key = model_evaluation_key(exp, model_file, sigma) if out_dir is not None else None
    device = _device(exp)
    model, spec, meta = load_model(model_file, device)
    pairs = test_pairs(exp.data, sigma, exp.evaluate.max_images, exp.evaluate.crop)

    @torch.no_grad()
    def denoise(batch: torch.Tensor) -> torch.Tensor:
        return model(batch.to(device)).float().cpu()

    row: Dict[str, Any] = {"label": label, "kind": spec["kind"], "sigma": sigma, "params": count_parameters(model),
                           "images": len(pairs), "dataset": exp.data.dataset, "test_set": pairs.name, "model": str(model_file)}
    results = []
    for protocol in exp.evaluate.protocols:
        step = None if progress is None else (lambda done, total, p=protocol: progress(p, done, total))
        r = evaluate(denoise, pairs, protocol=protocol, sigma=sigma, dataset=exp.data.dataset, metric=exp.data.metric,
                     progress=step)
        results.append(r)
        row[f"psnr_{protocol}"], row[f"ssim_{protocol}"], row[f"offset_{protocol}"] = r.psnr, r.ssim, r.offset
    row["inference_s"], row["inference_timed_images"] = inference_seconds(model, pairs, device)
    row["iterations"] = meta.get("iterations")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_results(results, out_dir / f"{label}.parquet")
        if exp.evaluate.examples:
            noise = None if exp.data.dataset in PAIR_DATASETS else sigma  # stored pairs: no sigma to show
            row["examples"] = str(save_examples(denoise, pairs[: exp.evaluate.examples], out_dir / f"{label}-examples.png",
                                                label, noise, exp.data.metric))
        with atomic_file(out_dir / f"{label}{ROW}") as tmp:  # last: a kept row's tables are all written
            tmp.write_text(json.dumps({"key": key, "row": row}, indent=2, default=str))
    return row


def kept_model_row(exp: ExperimentConfig, model_file: Path, sigma: float, label: str,
                   out_dir: Path) -> Optional[Dict[str, Any]]:
    """The row :func:`evaluate_model` wrote into ``out_dir`` for this very model file (its bytes),
    sigma, test data and evaluate settings, its paths pointing here; None when there is none."""
    try:
        kept = json.loads((out_dir / f"{label}{ROW}").read_text())
        row = kept["row"]
        if kept["key"] != model_evaluation_key(exp, model_file, sigma) or not isinstance(row, dict):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (out_dir / f"{label}.parquet").is_file():
        return None
    row["model"] = str(model_file)
    if row.get("examples"):
        row["examples"] = str(out_dir / Path(row["examples"]).name)
    return row


def save_examples(denoise, pairs, path: Path, label: str = "", sigma: Optional[float] = None,
                  metric: str = "image") -> Path:
    """A noisy / denoised / clean picture of the first test images (whole-image protocol, grey or
    RGB), each panel titled with its PSNR (on ``metric``), the denoised one also with the model and sigma."""
    from hinas.datasets import denoise_whole
    from hinas.datasets.evaluation import score

    from .figures import examples_figure, save_png

    triples, titles = [], []
    for pair in pairs:
        x = to_chw(pair.input) / 255
        y = denoise_whole(denoise, x) * 255  # (C, H, W)
        ref = to_chw(pair.target)
        db = [score(a, ref, metric)[0] for a in (to_chw(pair.input), y)]
        y = y[0].numpy() if y.shape[0] == 1 else y.permute(1, 2, 0).numpy()  # back to (H, W[, C])
        triples.append((np.asarray(pair.input), y, np.asarray(pair.target)))
        titles.append({"name": pair.name, "model": label, "sigma": sigma, "psnr_noisy": db[0], "psnr": db[1]})
    return save_png(examples_figure(triples, titles), path)


def evaluate_bm3d(exp: ExperimentConfig, sigma: float, out_dir: Optional[Path] = None) -> Optional[Dict[str, Any]]:
    """BM3D on the very same noisy test images, whole-image protocol (it is a whole-image method).

    Its scores kept by ``hinas data bm3d`` are reused when their key matches these test pairs
    (pipeline/bm3d_kept.py); otherwise BM3D is computed - or, with ``evaluate.bm3d: kept``, left
    out (None) with one line saying why. The row's ``bm3d_source`` says which.
    """
    pairs = test_pairs(exp.data, sigma, exp.evaluate.max_images, exp.evaluate.crop)
    label = f"bm3d-sigma{sigma:g}"
    r, kept, why = find_kept(exp, sigma, pairs)
    if r is None and exp.evaluate.bm3d == "kept":
        print(f"hinas: BM3D at sigma {sigma:g} left out (evaluate.bm3d: kept): {why}; "
              "compute it with `hinas data bm3d CONFIG`", file=sys.stderr, flush=True)
        return None
    if r is None:
        r = evaluate(bm3d_denoiser(sigma), pairs, protocol="whole", sigma=sigma, dataset=exp.data.dataset,
                     metric=exp.data.metric)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_results([r], out_dir / f"{label}.parquet")
    return {"label": label, "kind": "bm3d", "sigma": sigma, "params": 0, "images": len(pairs),
            "dataset": exp.data.dataset, "test_set": pairs.name, "model": None, "psnr_whole": r.psnr, "ssim_whole": r.ssim, "offset_whole": r.offset,
            "inference_s": r.seconds, "iterations": None, "bm3d_source": f"kept {kept}" if kept else "computed"}


def run_evaluate(exp: ExperimentConfig, models: List[Dict[str, Any]], out: Optional[Path] = None,
                 progress: Optional[Callable[[str], Callable[[str, int, int], None]]] = None) -> List[Dict[str, Any]]:
    """Evaluate ``[{label, model, sigma}, ...]`` (and BM3D per sigma); writes ``summary.json`` and
    the per-image tables to ``out`` (default: the experiment's evaluation/). ``progress(label)``
    gives a model's ``progress`` callback for :func:`evaluate_model`."""
    out = out or exp.experiment_dir / "evaluation"
    rows = []
    for m in models:
        if m.get("model"):
            row = kept_model_row(exp, Path(m["model"]), float(m["sigma"]), m["label"], out)
            if row is None:
                row = evaluate_model(exp, Path(m["model"]), float(m["sigma"]), m["label"], out,
                                     progress and progress(m["label"]))
            else:
                print(f"hinas: {m['label']} was scored earlier from this very model file and settings "
                      f"({out / (m['label'] + '.parquet')}), reusing it", file=sys.stderr, flush=True)
            rows.append(row)
            kill_point("evaluate-model")
    if exp.evaluate.bm3d and not any(float(m["sigma"]) == 0 for m in models):  # BM3D needs the noise level
        bm3d = [evaluate_bm3d(exp, float(s), out) for s in sorted({float(m["sigma"]) for m in models})]
        rows += [r for r in bm3d if r is not None]
    noisy = {s: noisy_scores(exp, s) for s in sorted({float(r["sigma"]) for r in rows})}
    for r in rows:
        r.update(noisy[float(r["sigma"])])
    with atomic_file(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(rows, indent=2, default=str))
    with atomic_file(out / INPUTS) as tmp:  # after the summary: a key without its summary is never left
        tmp.write_text(json.dumps({"key": evaluation_key(exp, models)}, indent=2))
    return rows


def _digest(key: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _file_digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _test_data(exp: ExperimentConfig) -> Dict[str, Any]:
    return {k: v for k, v in asdict(exp.data).items() if k != "root"}


def evaluation_key(exp: ExperimentConfig, models: List[Dict[str, Any]]) -> str:
    """What decides an evaluation's figures: the test data and evaluate settings and each model
    file's bytes (not its path: the same run on another machine has the same key)."""
    files = {m["label"]: _file_digest(m["model"]) for m in models if m.get("model")}
    return _digest({"data": _test_data(exp), "evaluate": asdict(exp.evaluate), "models": files})


def model_evaluation_key(exp: ExperimentConfig, model_file: Path, sigma: float) -> str:
    """What decides one model's row: the test data, the evaluate settings but BM3D's (a model's
    scores do not depend on whether BM3D is scored beside it), its sigma and the model file's bytes."""
    evaluate_settings = {k: v for k, v in asdict(exp.evaluate).items() if k != "bm3d"}
    return _digest({"data": _test_data(exp), "evaluate": evaluate_settings, "sigma": float(sigma),
                    "model": _file_digest(model_file)})


def kept_evaluation(exp: ExperimentConfig, models: List[Dict[str, Any]]) -> Optional[List[Dict[str, Any]]]:
    """The experiment's evaluation when it was computed from exactly these models and settings
    (a resumed run cut after its evaluation, or imported on another machine), else None. Paths
    in the rows point into this machine's run folder."""
    out = exp.experiment_dir / "evaluation"
    try:
        kept = json.loads((out / INPUTS).read_text())["key"]
        rows = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if kept != evaluation_key(exp, models) or not isinstance(rows, list):
        return None
    files = {m["label"]: str(m["model"]) for m in models if m.get("model")}
    for r in rows:
        if r.get("label") in files:
            r["model"] = files[r["label"]]
        if r.get("examples"):
            r["examples"] = str(out / Path(r["examples"]).name)
    return rows
