"""The trained denoisers that ship with hinas (installed as ``hinas.models``).

``index.json`` lists them: one HiNAS network per noise level, each a self-describing model
file (spec + weights, see :mod:`hinas_core.models`) with a Markdown card beside it saying
what it was trained on, how long, and what it scores. ``hinas denoise --sigma S`` picks the
model trained for the nearest noise level.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent


def shipped() -> List[Dict[str, Any]]:
    """The index entries, each with ``path`` and ``card`` resolved to absolute paths."""
    entries = json.loads((HERE / "index.json").read_text())["models"]
    return [{**e, "path": str(HERE / e["file"]), "card": str(HERE / e["card"])} for e in entries]


CHECK = {"images": 5, "crop": 96, "protocol": "whole", "noise_seed": 0}


def check_figures(model_file, sigma: float, bsds_root=None) -> Dict[str, float]:
    """PSNR/SSIM of a model file on the *check set*, on the CPU: the central 96x96 crops of the
    first 5 BSD500 test images with the test noise (seeded per image), whole-image protocol.
    Each card records this figure; the tests recompute it."""
    import torch

    from hinas.datasets import evaluate, load_bsd500, noisy_pairs
    from hinas.pipeline.data import center_crop
    from hinas_core.models import load_model

    images = load_bsd500("test", bsds_root)
    images = center_crop(images.subset(range(CHECK["images"]), images.name), CHECK["crop"])
    pairs = noisy_pairs(images, sigma, seed=CHECK["noise_seed"])
    model, _, _ = load_model(model_file, "cpu")
    with torch.no_grad():
        r = evaluate(lambda batch: model(batch), pairs, protocol=CHECK["protocol"], sigma=sigma)
    return {"psnr": round(float(r.psnr), 4), "ssim": round(float(r.ssim), 5)}


def for_sigma(sigma: float) -> Dict[str, Any]:
    """The shipped model trained for the noise level nearest to ``sigma`` (0-255 scale)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 (0-255 scale), got {sigma}")
    return min(shipped(), key=lambda e: (abs(e["sigma"] - sigma), e["sigma"]))
