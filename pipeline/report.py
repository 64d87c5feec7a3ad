"""`hinas report`: a Markdown table of the evaluation beside the paper's numbers (SPEC.md)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from hinas_core.fsutil import atomic_file

from .experiment import ExperimentConfig
from .retrain_curves import retraining_lines

# HiNAS Table 5, BSD500 gray test-200, PSNR / SSIM (paper protocol).
PAPER_BSD500 = {
    "HiNAS (paper)": {30: (29.14, 0.8403), 50: (26.77, 0.7635), 70: (25.48, 0.7129)},
    "N3Net (paper)": {30: (28.66, 0.8220), 50: (26.50, 0.7490), 70: (25.18, 0.6960)},
    "BM3D (paper)": {30: (27.31, 0.7755), 50: (25.06, 0.6831), 70: (23.82, 0.6240)},
}


def _fmt(v, digits):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _score(r: Dict[str, Any]) -> float:
    """The PSNR a verdict compares: whole-image (every method has it), else the patch protocol."""
    v = r.get("psnr_whole", r.get("psnr_patch"))
    return math.nan if v is None else float(v)


def verdict(rows: List[Dict[str, Any]]) -> str:
    """One line for one sigma's rows: the best method, its margin over the next and over the noisy input."""
    ranked = sorted((r for r in rows if not math.isnan(_score(r))), key=_score, reverse=True)
    if not ranked:
        return "no scores"
    best = ranked[0]
    text = f"best is **{best['label']}** ({_score(best):.2f} dB)"
    if len(ranked) > 1:
        text += f", {_score(best) - _score(ranked[1]):+.2f} dB over {ranked[1]['label']} ({_score(ranked[1]):.2f} dB)"
    if best.get("noisy_psnr") is not None:
        text += f"; {_score(best) - best['noisy_psnr']:+.2f} dB over the noisy input"
    hinas = [r for r in ranked if r.get("kind") == "hinas"]
    if hinas and hinas[0] is not best and hinas[0].get("noisy_psnr") is not None:
        h = hinas[0]
        text += f"; HiNAS {_score(h) - h['noisy_psnr']:+.2f} dB over the noisy input"
    return text


def timed_images(row: Dict[str, Any]) -> Optional[int]:
    """How many images an evaluation row's inference time was measured on, when fewer than the
    set (evaluate_stage.inference_seconds scales them to it on a slow device); else None."""
    timed, images = row.get("inference_timed_images"), row.get("images") or 0
    return timed if timed is not None and timed < images else None


def report_markdown(exp: ExperimentConfig, evaluation: List[Dict[str, Any]]) -> str:
    protocols = list(exp.evaluate.protocols)
    head = (["model", "sigma", "params"] + [f"{m} ({p})" for p in protocols for m in ("PSNR", "SSIM")]
            + ["offset", "inference s", "images"])
    by_sigma: Dict[float, List[Dict[str, Any]]] = {}
    for r in evaluation:
        by_sigma.setdefault(r["sigma"], []).append(r)
    test_sets = sorted({r["test_set"] for r in evaluation if r.get("test_set")})  # e.g. a stand-in's "NOT Rain800" label
    dataset = exp.data.dataset + (f" (test set: {', '.join(test_sets)})" if test_sets else "")
    lines = [f"# hinas report: {exp.name}", "",
             f"Dataset: {dataset}; test noise seed {exp.data.noise_seed}; every row scored on the same noisy images"
             + (" (RGB)" if exp.data.channels == 3 else "")
             + ("; PSNR/SSIM on the Y channel of YCbCr." if exp.data.metric == "y" else "."),
             "", "Verdict (whole-image PSNR):", ""]
    lines += [f"- sigma {s:g}: {verdict(rows)}" for s, rows in sorted(by_sigma.items())]
    lines += ["", "\"noisy input\" scores the noisy test images themselves: a denoiser must beat it. \"offset\" is the "
              "mean of the output minus the mean of the clean image (grey levels, whole-image protocol where scored): "
              "a brightness bias. Inference: seconds to denoise every test image whole, warm-up excluded.", "",
              "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for s, rows in sorted(by_sigma.items()):
        noisy = next((r for r in rows if r.get("noisy_psnr") is not None), None)
        if noisy is not None:
            cells = ["noisy input", f"{s:g}", "-"] + [c for _ in protocols for c in (_fmt(noisy["noisy_psnr"], 2),
                                                                                     _fmt(noisy.get("noisy_ssim"), 4))]
            lines.append("| " + " | ".join(cells + ["-", "-", str(noisy.get("images"))]) + " |")
        for r in sorted(rows, key=lambda r: r["label"]):
            cells = [r["label"], f"{r['sigma']:g}", f"{r['params'] / 1e6:.3f} M" if r["params"] else "-"]
            for p in protocols:
                cells += [_fmt(r.get(f"psnr_{p}"), 2), _fmt(r.get(f"ssim_{p}"), 4)]
            offset = r.get("offset_whole", r.get(f"offset_{protocols[0]}") if protocols else None)
            cells += [_fmt(offset, 2) if offset is None or math.isnan(offset) else f"{offset:+.2f}", _fmt(r.get("inference_s"), 3), str(r.get("images"))]
            lines.append("| " + " | ".join(cells) + " |")
    partly = [r for r in evaluation if timed_images(r) is not None]
    if partly:
        lines += ["", "Inference seconds estimated from the first images (the time per image scaled to the set): "
                  + ", ".join(f"{r['label']} from {timed_images(r)} of {r['images']}" for r in partly) + "."]
    kept = [r for r in evaluation if str(r.get("bm3d_source", "")).startswith("kept ")]
    if kept:  # pipeline/bm3d_kept.py: the same scores, computed once on another run or machine
        lines += ["", "BM3D scores kept by `hinas data bm3d` for these very noisy images (its inference seconds were "
                  "measured where they were computed): " + ", ".join(f"{r['label']} from {Path(r['bm3d_source'][5:]).name}"
                                                                     for r in kept) + "."]
    kinds = {s: {r["kind"]: r for r in rows} for s, rows in by_sigma.items()}
    ratios = [(s, d["hinas"], d["dncnn"], d.get("bm3d")) for s, d in sorted(kinds.items()) if "hinas" in d and "dncnn" in d]
    if ratios:
        lines += ["", "Same-run comparison with the baselines (same data and noisy images; DnCNN on the same "
                  "training budget; whole-image protocol):", "",
                  "| sigma | PSNR gain vs DnCNN (dB) | params ratio | inference time ratio | PSNR gain vs BM3D (dB) |",
                  "| --- | --- | --- | --- | --- |"]
        for s, h, d, b in ratios:
            vs_bm3d = f"{h['psnr_whole'] - b['psnr_whole']:+.2f}" if b and "psnr_whole" in h else "-"
            lines.append(f"| {s:g} | {h.get('psnr_whole', math.nan) - d.get('psnr_whole', math.nan):+.2f} | "
                         f"{h['params'] / d['params']:.2f} | {h['inference_s'] / max(d['inference_s'], 1e-12):.2f} | {vs_bm3d} |")
    lines += retraining_lines(exp)  # each model's validation curve, and early stops with their reason
    if exp.data.dataset == "bsd500":
        lines += ["", "The paper's numbers (Table 5, BSD500 gray test-200, patch protocol; not re-measured here):", "",
                  "| method | sigma 30 | sigma 50 | sigma 70 |", "| --- | --- | --- | --- |"]
        for name, vals in PAPER_BSD500.items():
            lines.append(f"| {name} | " + " | ".join(f"{vals[s][0]:.2f} / {vals[s][1]:.4f}" for s in (30, 50, 70)) + " |")
    else:
        lines += ["", f"Not comparable to the paper's numbers: the dataset is '{exp.data.dataset}', not BSD500."]
    return "\n".join(lines) + "\n"


def write_report(exp: ExperimentConfig, search_rows, evaluation: List[Dict[str, Any]]) -> Path:
    path = exp.experiment_dir / "report.md"
    with atomic_file(path) as tmp:
        tmp.write_text(report_markdown(exp, evaluation))
    return path


def load_evaluation(exp: ExperimentConfig) -> List[Dict[str, Any]]:
    path = exp.experiment_dir / "evaluation" / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"no evaluation at {path}: run `hinas run` (or its evaluate stage) first")
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        raise ValueError(f"{path} cannot be read ({exc}); run the evaluate stage again (hinas run --resume)") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path} is not an evaluation summary (a list of rows)")
    return rows
