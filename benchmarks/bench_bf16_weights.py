"""What rounding a retraining checkpoint's weights to bf16 costs on Validation-V.

Issue #12 keeps the campaign's state in the repository, and each session's bundle adds its
retraining checkpoints (about 2.5 MB a network in fp32) to the history. A compact bundle
(``hinas state export --compact``) stores them in bf16 before a job's final anneal, at the price
of resuming from rounded weights. This measures the price at the point of resuming: each job's
validation PSNR/SSIM with its checkpoint's fp32 weights and with the weights that an import of
its compact export gives back (:func:`hinas.pipeline.state.compact_retrain_state`, then
:func:`~hinas.pipeline.state.expand_state`; as if the job were not yet annealing). It is the loss
before any training after the resume, how much of it that training makes up is not measured.

Reads an imported run folder (``hinas state import CONFIG --from campaign/state --set
output_dir=DIR``) or a live one: the latest checkpoint of each retraining job.

    python benchmarks/bench_bf16_weights.py tune_configs/bsd500_campaign.yaml --set output_dir=/tmp/camp \\
        [--labels hinas-sigma70-seed0 dncnn-sigma70-seed0] [--device cuda] [--json out.json]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import device_name, write_json  # noqa: E402

from hinas.pipeline.data import retrain_data  # noqa: E402
from hinas.pipeline.experiment import load_experiment  # noqa: E402
from hinas.pipeline.run import retrain_jobs  # noqa: E402
from hinas.pipeline.state import compact_retrain_state, expand_state, latest_checkpoints  # noqa: E402
from hinas_core.models import build_model, load_tensors  # noqa: E402


def rounded(state):
    """The weights a compact bundle's import gives back for this checkpoint, before the anneal."""
    return expand_state(compact_retrain_state({**state, "anneal_from": None}))["model"]


def score(model, weights, validate, device):
    model.load_state_dict(weights)
    model.eval()

    @torch.no_grad()
    def denoise(batch):
        return model(batch.to(device)).float().cpu()

    return validate(denoise)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--labels", nargs="*", help="jobs to score (default: every job with a checkpoint)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)

    exp = load_experiment(args.config, args.overrides)
    device = torch.device(args.device)
    derived = {float(p.parent.name.removeprefix("sigma")): p
               for p in sorted((exp.experiment_dir / "derived").glob("sigma*/genotype.json"))}
    jobs = {j["label"]: j for j in retrain_jobs(exp, derived)}
    found = latest_checkpoints(exp, "retrain")
    labels = args.labels or sorted(found)
    missing = [label for label in labels if label not in found or label not in jobs]
    if missing:
        ap.error(f"no retraining checkpoint (or no job) for {', '.join(missing)}; have {', '.join(sorted(found)) or 'none'}")
    print(f"{device_name(device)}; Validation-V of {exp.name}", flush=True)
    rows = []
    for label in labels:
        job, (iteration, path) = jobs[label], found[label]
        validate = retrain_data(exp.data, float(job["sigma"]), exp.retrain.hold_out_val).validate
        state = load_tensors(path, "retrain checkpoint")
        model = build_model(job["spec"]).to(device)
        t0 = time.perf_counter()
        fp32 = score(model, state["model"], validate, device)
        bf16 = score(model, rounded(state), validate, device)
        row = {"label": label, "iteration": iteration, "psnr_fp32": fp32["psnr"], "psnr_bf16": bf16["psnr"],
               "ssim_fp32": fp32["ssim"], "ssim_bf16": bf16["ssim"], "seconds": time.perf_counter() - t0}
        rows.append(row)
        print(f"{label:22s} it {iteration:>7,}  PSNR fp32 {fp32['psnr']:.4f}  bf16 {bf16['psnr']:.4f}  "
              f"({bf16['psnr'] - fp32['psnr']:+.4f} dB)  SSIM {fp32['ssim']:.5f} -> {bf16['ssim']:.5f}  "
              f"[{row['seconds']:.0f} s]", flush=True)
    write_json(args.json, {"device": device_name(device), "config": args.config, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
