"""The evaluate stage: trained models on the test set, both protocols, PSNR/SSIM, size, speed.

Every model is scored on the same noisy test images (noise fixed per image by the data
config's seed), so rows of one evaluation can be compared as ratios. Per-image results go to
``evaluation/<label>.parquet``; the summary rows are returned and written as JSON.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from hinas.datasets import evaluate, save_results
from hinas_core.fsutil import atomic_file
from hinas_core.models import load_model
from hinas_core.network import count_parameters

from .data import test_pairs
from .experiment import ExperimentConfig
from .faults import kill_point


def _device(exp: ExperimentConfig) -> torch.device:
    return torch.device("cuda" if exp.resources.gpu > 0 and torch.cuda.is_available() else "cpu")


def inference_seconds(model, pairs, device, repeats: int = 1) -> float:
    """Wall time to denoise every test image whole (after one warm-up image), synchronised."""
    xs = [torch.from_numpy(np.array(p.input, dtype=np.float32))[None, None] / 255 for p in pairs]
    with torch.inference_mode():
        model(xs[0].to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            for x in xs:
                model(x.to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def evaluate_model(exp: ExperimentConfig, model_file: Path, sigma: float, label: str,
                   out_dir: Optional[Path] = None) -> Dict[str, Any]:
    """Score one model file; returns a summary row (PSNR/SSIM per protocol, parameters, seconds)."""
    device = _device(exp)
    model, spec, meta = load_model(model_file, device)
    pairs = test_pairs(exp.data, sigma, exp.evaluate.max_images, exp.evaluate.crop)

    @torch.no_grad()
    def denoise(batch: torch.Tensor) -> torch.Tensor:
        return model(batch.to(device)).float().cpu()

    row: Dict[str, Any] = {"label": label, "kind": spec["kind"], "sigma": sigma, "params": count_parameters(model),
                           "images": len(pairs), "dataset": exp.data.dataset, "model": str(model_file)}
    results = []
    for protocol in exp.evaluate.protocols:
        r = evaluate(denoise, pairs, protocol=protocol, sigma=sigma, dataset=exp.data.dataset)
        results.append(r)
        row[f"psnr_{protocol}"], row[f"ssim_{protocol}"] = r.psnr, r.ssim
    row["inference_s"] = inference_seconds(model, pairs, device)
    row["iterations"] = meta.get("iterations")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_results(results, out_dir / f"{label}.parquet")
        if exp.evaluate.examples:
            row["examples"] = str(save_examples(denoise, pairs[: exp.evaluate.examples], out_dir / f"{label}-examples.png"))
    return row


def save_examples(denoise, pairs, path: Path) -> Path:
    """A noisy / denoised / clean picture of the first test images (whole-image protocol)."""
    from hinas.datasets import denoise_whole

    from .figures import examples_figure, save_png

    triples = []
    for pair in pairs:
        x = torch.from_numpy(np.array(pair.input, dtype=np.float32))[None] / 255
        y = denoise_whole(denoise, x)[0].numpy() * 255
        triples.append((np.asarray(pair.input), y, np.asarray(pair.target)))
    return save_png(examples_figure(triples, [p.name for p in pairs]), path)


def bm3d_denoiser(sigma: float):
    """BM3D (the PyPI ``bm3d`` package) as a denoiser callable, told the true noise level."""
    import bm3d

    def denoise(batch: torch.Tensor) -> torch.Tensor:
        out = [bm3d.bm3d(x[0].double().numpy(), sigma_psd=sigma / 255.0) for x in batch]
        return torch.from_numpy(np.stack(out)[:, None]).float()

    return denoise


def evaluate_bm3d(exp: ExperimentConfig, sigma: float, out_dir: Optional[Path] = None) -> Dict[str, Any]:
    """BM3D on the very same noisy test images, whole-image protocol (it is a whole-image method)."""
    pairs = test_pairs(exp.data, sigma, exp.evaluate.max_images, exp.evaluate.crop)
    label = f"bm3d-sigma{sigma:g}"
    r = evaluate(bm3d_denoiser(sigma), pairs, protocol="whole", sigma=sigma, dataset=exp.data.dataset)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_results([r], out_dir / f"{label}.parquet")
    return {"label": label, "kind": "bm3d", "sigma": sigma, "params": 0, "images": len(pairs),
            "dataset": exp.data.dataset, "model": None, "psnr_whole": r.psnr, "ssim_whole": r.ssim,
            "inference_s": r.seconds, "iterations": None}


def run_evaluate(exp: ExperimentConfig, models: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Evaluate ``[{label, model, sigma}, ...]`` (and BM3D per sigma); writes evaluation/summary.json."""
    out = exp.experiment_dir / "evaluation"
    rows = []
    for m in models:
        if m.get("model"):
            rows.append(evaluate_model(exp, Path(m["model"]), float(m["sigma"]), m["label"], out))
            kill_point("evaluate-model")
    if exp.evaluate.bm3d and not any(float(m["sigma"]) == 0 for m in models):  # BM3D needs the noise level
        rows += [evaluate_bm3d(exp, float(s), out) for s in sorted({float(m["sigma"]) for m in models})]
    with atomic_file(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(rows, indent=2, default=str))
    return rows
