"""Re-fit a trained HiNAS model's output bias on its training patches (issue #13, target 6).

    python scripts/calibrate_output_bias.py CONFIG --model MODEL.pt --out NEW.pt
        [--patches 2400] [--seed 0] [--device cuda|cpu] [--set KEY=VALUE ...]

CONFIG is the experiment the model was trained in (its data section: the training images, the
split that holds out Validation-V, the noise). The end convolution's bias is moved to its
MSE-optimal value on ``--patches`` fresh training patches (Train-W + Train-A only: no
validation or test image), every other weight unchanged (hinas_core/calibrate.py). Before and
after, the script scores Validation-V (whole images, the seeded noise) and prints the mean
brightness offset and PSNR/SSIM, so the change is judged on held-out images; it never reads the
test set. The new file records the fit in its metadata (``calibration``).

On a GPU the fit and both scorings take seconds (``--device``, default: the GPU when there is
one); on a 2-core CPU about 15 minutes for the sigma-50 campaign model.
"""
from __future__ import annotations

import argparse
import datetime
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("config", help="the experiment YAML the model was trained in")
    p.add_argument("--model", required=True, help="the model file to calibrate")
    p.add_argument("--out", required=True, help="where to write the calibrated model file (must not exist)")
    p.add_argument("--patches", type=int, default=2400, help="training patches to fit on (default 2400)")
    p.add_argument("--seed", type=int, default=0, help="seed of the patch sampling and its noise (default 0)")
    p.add_argument("--device", help="where the network runs (default: cuda when a GPU is visible, else cpu)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    args = p.parse_args(argv)

    from hinas.datasets import evaluate
    from hinas.pipeline.data import check_data, training_sampler, validation_pairs
    from hinas.pipeline.experiment import PAIR_DATASETS, load_experiment
    from hinas_core.calibrate import apply_output_bias, end_conv, fit_output_bias
    from hinas_core.models import load_model, save_model

    out = Path(args.out)
    try:
        if out.exists():
            raise ValueError(f"--out {out} exists: choose a new file")
        if args.patches < 1:
            raise ValueError(f"--patches must be at least 1, got {args.patches}")
        try:
            device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        except RuntimeError:
            raise ValueError(f"--device {args.device!r} is not a device PyTorch knows (e.g. cpu, cuda, cuda:1)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: no GPU is visible to PyTorch here")
        exp = load_experiment(args.config, args.set or [])
        model, spec, meta = load_model(args.model, device)
        end_conv(model)
        sigma = float(meta.get("sigma") or 0)
        if exp.data.dataset not in PAIR_DATASETS and sigma <= 0:
            raise ValueError(f"{args.model} does not record the noise level it was trained for")
        check_data(exp.data, ("train",))
    except ValueError as exc:  # ModelError, ConfigError, DatasetError
        print(f"calibrate: {exc}", file=sys.stderr)
        return 2

    sampler = training_sampler(exp.data, sigma)
    v = validation_pairs(exp.data, sigma)
    batch = exp.retrain.batch_size
    n_batches = math.ceil(args.patches / batch)
    rng = np.random.default_rng(args.seed)

    def batches():
        for i in range(n_batches):
            if i % 20 == 0:
                print(f"calibrate: fitting, batch {i}/{n_batches} of {batch} patches", file=sys.stderr, flush=True)
            yield sampler.sample(rng, batch)

    def score(label):
        r = evaluate(model, v, protocol="whole", sigma=sigma or None, device=device)
        print(f"calibrate: Validation-V ({len(v)} whole images) {label}: PSNR {r.psnr:.3f} dB, SSIM {r.ssim:.4f}, "
              f"offset {r.offset:+.2f} grey levels", flush=True)
        return {"psnr": r.psnr, "ssim": r.ssim, "offset": r.offset, "images": len(v)}

    torch.manual_seed(args.seed)
    before = score("before")
    fit = fit_output_bias(model, batches())
    print(f"calibrate: {fit.patches} training patches: offset {fit.offset_before:+.3f} -> {fit.offset_after:+.3f} grey "
          f"levels, MSE {fit.mse_before:.6f} -> {fit.mse_after:.6f}; bias shift {', '.join(f'{s:+.5f}' for s in fit.shift)}",
          flush=True)
    apply_output_bias(model, fit)
    after = score("after")
    meta = {**meta, "calibration": {"what": "end-conv bias re-fitted by least squares on training patches "
                                            "(hinas_core/calibrate.py)", **fit.to_dict(), "seed": args.seed,
                                    "config": str(args.config), "from_model": str(args.model), "device": str(device),
                                    "validation_before": before, "validation_after": after,
                                    "date": datetime.date.today().isoformat(), "commit": _commit()}}
    save_model(out, spec, model, meta)
    print(f"calibrate: written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
