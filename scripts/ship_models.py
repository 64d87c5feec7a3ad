"""Copy the HiNAS models of a finished BSD500 run into models/ and write their cards.

    python scripts/ship_models.py RUN_DIR --card-note "..." [--device-name "NVIDIA H100"]
        [--evaluation SUMMARY_JSON] [--gpu-time "..."]

RUN_DIR is an experiment folder of ``hinas run`` (``models/``, ``evaluation/summary.json``,
``search_summary.json``); ``--evaluation`` takes the summary.json of ``hinas evaluate --out``
instead (a campaign that ships its models one at a time; a model file evaluated on another
machine is taken from RUN_DIR/models/<label>/). For each HiNAS model there this writes
``models/hinas_sigma<S>.pt`` and a card ``models/hinas_sigma<S>.md`` with the run's test-200
figures (and BM3D's on the same noisy images, when the summary holds them), and records in
``models/index.json`` a *check* figure: PSNR/SSIM on the central 96x96 crops of the first 5
BSD500 test images with the test noise, computed here on the CPU. Shipped models of other noise
levels stay in the index.
tests/models/test_shipped_models.py recomputes the check figure and compares it to the card.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent


def card(entry: dict, row: dict, search: dict, meta: dict, genotype: dict, note: str,
         bm3d: Optional[dict] = None, gpu_time: str = "") -> str:
    levels = "-".join(map(str, genotype["levels"]))
    cells = "; ".join(", ".join(f"{op}({inp})" for op, inp in node) for node in genotype["cells"][0]) \
        if len(genotype["cells"]) == 1 else f"{len(genotype['cells'])} cells"
    rt = meta["retrain"]
    trained = (f"{meta['train_images']} of the {meta['train_images'] + meta['val_images']} images trained on, "
               f"{meta['val_images']} held out as Validation-V" if meta.get("val_held_out")
               else f"all {meta['train_images']} images trained on (Validation-V among them)") \
        if "train_images" in meta else "all 300 images"
    gpu = f"| GPU time | {gpu_time} |\n" if gpu_time else ""
    return f"""# HiNAS denoiser, BSD500 gray, sigma {entry['sigma']:g}

`{entry['file']}` - a network found by the HiNAS search and trained by `hinas run`
(config `{entry['config']}`), shipped with hinas. Use it with
`hinas denoise --sigma {entry['sigma']:g} noisy.png out.png`.

| | |
| --- | --- |
| data | BSD500 train+val: {trained}; {'grayscale (BT.601 luma)' if entry.get('in_channels', 1) == 1 else 'RGB'}; additive white Gaussian noise sigma = {entry['sigma']:g} (0-255 scale) |
| architecture | width path (levels per layer) {levels}; cell: {cells}; level-0 width {entry['width']}; {entry['params']:,} parameters |
| search | {search.get('epochs')} epochs ({'cut short by the time limit: the stop rule had not fired' if search.get('stop') == 'running' else search.get('stop')}), best validation epoch {search.get('best_epoch')} (val PSNR {search.get('val_psnr', float('nan')):.2f} dB) |
| training budget | {meta['iterations']:,} of {rt['iterations']:,} planned iterations x {rt['batch_size']} patches of 64x64 ({rt['optimizer']}, lr {rt['lr']:g} {rt['schedule']}); the paper trains 600,000 iterations |
| retraining validation | {validation_summary(meta)} |
| trained on | {entry['device']} ({entry['date']}), code at commit {entry['commit']} |
{gpu}{calibration_row(meta)}| test-200, paper protocol (64x64 patches) | PSNR {row['psnr_patch']:.2f} dB, SSIM {row['ssim_patch']:.4f} |
| test-200, whole images | PSNR {row['psnr_whole']:.2f} dB, SSIM {row['ssim_whole']:.4f} |
{bm3d_row(row, bm3d)}| paper (Table 5, patch protocol) | {entry['paper']} (this model: {entry['below_paper_db']} dB below) |
| check set (CPU, first 5 test images, central 96x96, whole-image protocol) | PSNR {entry['check']['psnr']:.4f} dB, SSIM {entry['check']['ssim']:.5f} |

{note}
{curve_table(meta)}"""


def calibration_row(meta: dict) -> str:
    """The card's line on an output bias re-fitted after training (scripts/calibrate_output_bias.py), or nothing."""
    cal = meta.get("calibration")
    if not cal:
        return ""
    v0, v1 = cal["validation_before"], cal["validation_after"]
    return (f"| output bias | re-fitted after training by least squares on {cal['patches']:,} training patches "
            f"(scripts/calibrate_output_bias.py, {cal['date']}, commit {cal['commit']}; every other weight as trained): "
            f"offset on those patches {cal['offset_before']:+.2f} -> {cal['offset_after']:+.2f} grey levels; "
            f"Validation-V ({v0['images']} whole images) offset {v0['offset']:+.2f} -> {v1['offset']:+.2f}, "
            f"PSNR {v0['psnr']:.2f} -> {v1['psnr']:.2f} dB |\n")


def bm3d_row(row: dict, bm3d: Optional[dict]) -> str:
    """The card's BM3D line (whole images, the very same noisy images), or nothing."""
    if not bm3d or "psnr_whole" not in bm3d:
        return ""
    return (f"| BM3D, the same noisy test-200 images (whole images) | PSNR {bm3d['psnr_whole']:.2f} dB, SSIM "
            f"{bm3d['ssim_whole']:.4f} (this model: {row['psnr_whole'] - bm3d['psnr_whole']:+.2f} dB, "
            f"{row['ssim_whole'] - bm3d['ssim_whole']:+.4f}) |\n")


def validation_summary(meta: dict) -> str:
    """One card cell: best validation PSNR, and whether (why) the job stopped early."""
    from hinas_core.plateau import best_point

    curve = meta.get("validation") or []
    if not curve:
        return "none recorded (trained before retraining validated)"
    best = best_point(curve) or curve[-1]  # failed validations (NaN points) are left out
    stop = f"stopped early: {meta['stop_reason']}" if meta.get("stop_reason") else "trained its whole budget"
    return (f"{len(curve)} validations on Validation-V; best {best['val_psnr']:.2f} dB / {best['val_ssim']:.4f} after "
            f"{best['patches']:,} patches, last {curve[-1]['val_psnr']:.2f} dB; {stop}")


def curve_table(meta: dict) -> str:
    """The retraining validation curve as a collapsed Markdown table (empty without one)."""
    curve = meta.get("validation") or []
    if not curve:
        return ""
    rows = "\n".join(f"| {p['iteration']:,} | {p['patches']:,} | {p['val_psnr']:.3f} | {p['val_ssim']:.4f} |" for p in curve)
    return ("\n<details><summary>Retraining validation curve</summary>\n\n"
            "| iteration | patches | val PSNR (dB) | val SSIM |\n| --- | --- | --- | --- |\n" + rows + "\n\n</details>\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--config", default="tune_configs/bsd500_gpu.yaml")
    ap.add_argument("--device-name", default="NVIDIA H100 80GB HBM3")
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    ap.add_argument("--commit", default=None, help="the commit whose code trained the models (default: HEAD)")
    ap.add_argument("--card-note", default="", help="a paragraph added to every card (limits, deviations)")
    ap.add_argument("--evaluation", type=Path, help="summary.json of `hinas evaluate --out` "
                    "(default: RUN_DIR/evaluation/summary.json)")
    ap.add_argument("--gpu-time", default="", help="a card row: the GPU time that went into the model")
    ap.add_argument("--bsds-root", default=os.environ.get("HINAS_BSDS500_ROOT") or str(ROOT.parent / "shared" / "datasets" / "BSDS500"))
    args = ap.parse_args(argv)
    from hinas.models import CHECK, check_figures
    from hinas.pipeline.report import PAPER_BSD500
    from hinas_core.models import load_model

    commit = args.commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                           text=True, check=True).stdout.strip()
    rows = json.loads((args.evaluation or args.run_dir / "evaluation" / "summary.json").read_text())
    summary = {r["label"]: r for r in rows}
    bm3d = {float(r["sigma"]): r for r in rows if r["kind"] == "bm3d"}
    searches = {r["sigma"]: r for r in json.loads((args.run_dir / "search_summary.json").read_text())["trials"]}
    out_dir = ROOT / "models"
    entries = []
    for label, row in sorted(summary.items(), key=lambda kv: kv[1]["sigma"]):
        if row["kind"] != "hinas":
            continue
        sigma = float(row["sigma"])
        src = Path(row.get("model") or "")  # where it was evaluated, maybe on another machine
        if not src.is_file():
            src = args.run_dir / "models" / label / "model.pt"
        _, spec, meta = load_model(src, "cpu")
        name = f"hinas_sigma{sigma:g}"
        shutil.copyfile(src, out_dir / f"{name}.pt")
        entry = {"sigma": sigma, "file": f"{name}.pt", "card": f"{name}.md", "config": args.config,
                 "width": spec["width"], "in_channels": spec.get("in_channels", 1), "params": row["params"], "iterations": meta["iterations"],
                 "device": args.device_name, "date": args.date, "commit": commit,
                 "paper": "%.2f / %.4f" % PAPER_BSD500["HiNAS (paper)"][int(sigma)]
                 if int(sigma) in PAPER_BSD500["HiNAS (paper)"] else "-",
                 "test200": {k: row[k] for k in ("psnr_patch", "ssim_patch", "psnr_whole", "ssim_whole")},
                 "check": check_figures(out_dir / f"{name}.pt", sigma, args.bsds_root)}
        entry["below_paper_db"] = round(float(entry["paper"].split(" / ")[0]) - row["psnr_patch"], 2) \
            if entry["paper"] != "-" else None
        (out_dir / entry["card"]).write_text(card(entry, row, searches.get(sigma, {}), meta, spec["genotype"],
                                                  args.card_note, bm3d.get(sigma), args.gpu_time))
        entries.append(entry)
        print(f"{name}: from {src}{' (calibrated)' if meta.get('calibration') else ''}; test-200 "
              f"{row['psnr_patch']:.2f} / {row['psnr_whole']:.2f} dB, check {entry['check']}")
    index = out_dir / "index.json"
    shipped = {e["sigma"] for e in entries}
    kept = [e for e in json.loads(index.read_text())["models"] if e["sigma"] not in shipped] if index.is_file() else []
    entries = sorted(kept + entries, key=lambda e: e["sigma"])
    index.write_text(json.dumps({"check_set": CHECK, "models": entries}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
