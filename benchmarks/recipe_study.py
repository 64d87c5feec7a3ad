"""Which retraining recipe converges fastest: validation PSNR against patches seen.

One genotype, one sigma (default: the shipped sigma = 50 model's genotype at 0.63 M
parameters), several recipes trained side by side on one GPU
(:func:`hinas_core.retrain.run_together`) for the same number of *patches*, each scored every
``--every`` patches on a validation split held out of BSD500's 300 training images (seeded
noise, whole-image protocol, central crops). The 200 test images are never read. Writes the
curves as JSON (after every point) and prints a table.

Recipes (``--recipes``; defaults after the name):
  paper          sigmoid output (CVPR), Adam 1e-3, poly, batch 12
  residual       residual output (the official code's later choice), otherwise as paper
  residual-fp32  residual, without bf16 autocast and torch.compile (the plain CUDA-graph step)
  residual-cos   residual, cosine schedule with a linear warm-up over the first 2 %
  residual-b48   residual, batch 48 (a quarter of the steps), Adam 2e-3
  paper-b48      sigmoid output, batch 48, Adam 2e-3

    python benchmarks/recipe_study.py --device cuda --bsds-root PATH --patches 144000 --out DIR
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from _common import device_name

from hinas_core.genotype import Genotype
from hinas_core.models import hinas_spec, load_model
from hinas_core.retrain import RetrainConfig, Trainer, run_together

FAST = dict(cuda_graph=True, precision="bf16", channels_last=True, compile=True)
RECIPES = {  # name -> (output, RetrainConfig fields)
    "paper": ("sigmoid", dict(FAST)),
    "residual": ("residual", dict(FAST)),
    "residual-fp32": ("residual", dict(cuda_graph=True)),
    "residual-cos": ("residual", dict(FAST, schedule="cosine", warmup=-2)),  # -2: 2 % of the steps
    "residual-b48": ("residual", dict(FAST, batch_size=48, lr=2e-3)),
    "paper-b48": ("sigmoid", dict(FAST, batch_size=48, lr=2e-3)),
}


def data(root, sigma: float, val_images: int, crop: int, seed: int):
    from hinas.datasets import PatchSampler, load_bsd500, noisy_pairs, search_split
    from hinas.pipeline.data import center_crop

    images = load_bsd500("train", root)
    split = search_split(images, seed=seed, val_fraction=val_images / len(images))
    train = [images.images[i] for i in split.train_w + split.train_a]
    val = center_crop(images.subset(split.val, "BSD500/recipe-val"), crop)
    return PatchSampler(train, sigma), noisy_pairs(val, sigma, seed=seed), len(train)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--model", default=None, help="take the genotype from this model file (default: the shipped sigma 50 model)")
    ap.add_argument("--sigma", type=float, default=50)
    ap.add_argument("--patches", type=int, default=144_000, help="patches per recipe")
    ap.add_argument("--every", type=int, default=24_000, help="validate every this many patches")
    ap.add_argument("--val-images", type=int, default=30)
    ap.add_argument("--val-crop", type=int, default=256)
    ap.add_argument("--bsds-root", default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default="recipe-study", help="folder for curves.json")
    args = ap.parse_args(argv)
    from hinas.datasets import evaluate
    from hinas.models import for_sigma

    device = torch.device(args.device)
    genotype = Genotype.from_dict(load_model(args.model or for_sigma(args.sigma)["path"], "cpu")[1]["genotype"])
    sampler, val, n_train = data(args.bsds_root, args.sigma, args.val_images, args.val_crop, seed=0)
    trainers, names = [], []
    for name in args.recipes:
        output, fields = RECIPES[name]
        fields = dict(fields)
        batch = fields.get("batch_size", 12)
        iterations = args.patches // batch
        if fields.get("warmup", 0) < 0:
            fields["warmup"] = iterations * -fields["warmup"] // 100
        cfg = RetrainConfig(**{**fields, "iterations": iterations, "report_every": iterations})
        spec = hinas_spec(genotype, target_params=630_000, output=output)
        trainers.append(Trainer(spec, cfg, sampler, device))
        names.append(name)
    curves = {n: [] for n in names}

    def validate(seen: int) -> None:
        for n, t in zip(names, trainers):
            r = evaluate(t.denoiser(), val, protocol="whole", sigma=args.sigma, device=device)
            curves[n].append({"patches": seen, "psnr": r.psnr, "ssim": r.ssim})
        print(f"{seen:9d} patches: " + "  ".join(f"{n} {curves[n][-1]['psnr']:.2f}" for n in names), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    seen = 0
    while True:
        validate(seen)
        result = {"device": device_name(device), "torch": torch.__version__, "sigma": args.sigma,
                  "genotype": genotype.to_dict(), "params": {n: t.params for n, t in zip(names, trainers)},
                  "train_images": n_train, "val_images": len(val), "val_crop": args.val_crop,
                  "patches": seen, "seconds": time.perf_counter() - t0,
                  "recipes": {n: {"output": RECIPES[n][0], "config": t.config.to_dict()} for n, t in zip(names, trainers)},
                  "curves": curves}
        (out / "curves.json").write_text(json.dumps(result, indent=1))  # after every point: a cut run keeps its curve
        if seen >= args.patches:
            break
        chunk = min(args.every, args.patches - seen)
        run_together(trainers, [chunk // t.config.batch_size for t in trainers])
        seen += chunk
    print(f"{'recipe':14s} " + " ".join(f"{p['patches'] // 1000:>6d}k" for p in curves[names[0]]))
    for n in names:
        print(f"{n:14s} " + " ".join(f"{p['psnr']:7.2f}" for p in curves[n]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
