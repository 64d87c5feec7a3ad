"""Retraining trains on Train-W + Train-A and validates on the search's Validation-V (issue #12):
the same held-out images with the same seeded noise and protocol, never among the training
patches; ``retrain.hold_out_val: false`` trains on every image. Image and stored-pair datasets."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from hinas.datasets import search_split
from hinas.pipeline.data import _retrain_split, retrain_data, search_data, training_images, training_sampler
from hinas.pipeline.experiment import DataConfig


def identity(x):
    return x


def _ids(arrays):
    """The images by content (each load decodes new arrays)."""
    return {hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest() for a in arrays}


def test_retraining_holds_out_the_searchs_validation_images_and_scores_them_as_the_search_does():
    cfg = DataConfig(dataset="sample", val_fraction=0.2, val_crop=96)
    images = training_images(cfg)
    split = search_split(images, seed=cfg.split_seed, val_fraction=cfg.val_fraction)
    val_names = {images.names[i] for i in split.val}
    train, v = _retrain_split(cfg, hold_out_val=True)
    assert set(v.names) == val_names and len(val_names) == 2
    assert not set(train.names) & val_names and len(train) + len(v) == len(images) == 11
    data = retrain_data(cfg, 30.0)
    assert dict(data.sizes) == {"train": 9, "val": 2, "val_held_out": True}
    assert _ids(data.sampler.images) == _ids(train.images)  # the sampler crops only Train-W + Train-A
    # The same V, the same seeded noise, the same protocol as the search's validation.
    assert data.validate(identity) == search_data(cfg, 30.0, batch_size=4).evaluate(identity)
    assert retrain_data(cfg, 50.0).validate(identity)["psnr"] < data.validate(identity)["psnr"]  # the sigma's noise

    every = retrain_data(cfg, 30.0, hold_out_val=False)
    assert dict(every.sizes) == {"train": 11, "val": 2, "val_held_out": False}
    assert _ids(every.sampler.images) == _ids(images.images)
    assert _ids(training_sampler(cfg, 30.0).images) == _ids(train.images)


def test_stored_pairs_split_their_pairs(bsds_root, session_cache, tmp_path):
    from hinas.datasets import build_rain_standin

    root = build_rain_standin(tmp_path / "rain", bsds_root=bsds_root, n_train=6, n_test=1, cache_dir=session_cache)
    cfg = DataConfig(dataset="rain800", root=str(root), sigmas=(0.0,), val_fraction=0.3, patch_size=32, val_crop=64)
    train, v = _retrain_split(cfg, hold_out_val=True)
    assert len(v) >= 1 and not set(train.names) & set(v.names) and len(train) + len(v) == 6
    data = retrain_data(cfg, 0.0)
    assert dict(data.sizes) == {"train": len(train), "val": len(v), "val_held_out": True}
    assert data.validate(identity) == search_data(cfg, 0.0, batch_size=4).evaluate(identity)
    noisy, clean = data.sampler.sample(np.random.default_rng(0), 2)
    assert noisy.shape == clean.shape == (2, 1, 32, 32)
    assert retrain_data(cfg, 0.0, hold_out_val=False).sizes["train"] == 6


@pytest.mark.slow
@pytest.mark.parametrize("anneal", [0, 16])
def test_the_retrain_stage_stops_on_a_plateau_and_says_so(repo_root, tmp_path, anneal):
    """`hinas retrain` (a real Ray Tune trial) with a plateau rule no job can pass: validations
    at 32, 64 and 96 patches; at 96 the curve covers the 40-patch window, so the job stops there,
    at iteration 12 of 40, and the model file, the curves figure and the report say why. With
    ``anneal_patches: 16`` it first trains 2 more iterations with the learning rate falling to
    lr_min, validates at their end (112 patches) and stops there."""
    import os
    import subprocess
    import sys

    from hinas.pipeline.experiment import load_experiment
    from hinas.pipeline.report import report_markdown
    from hinas.pipeline.retrain_curves import model_meta

    overrides = [f"output_dir={tmp_path}", "retrain.iterations=40", "retrain.report_every=8", "retrain.validate_every=4",
                 f"retrain.plateau={{min_gain_db: 100, window_patches: 40, anneal_patches: {anneal}}}", "model.baselines=[]", "resources.cpu=1"]
    cfg = repo_root / "tune_configs/quickstart.yaml"
    out = subprocess.run([sys.executable, "-m", "hinas.pipeline.cli", "retrain", str(cfg), "--genotype", "example_denoise",
                          "--sigma", "25", *[a for o in overrides for a in ("--set", o)]], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "hinas-sigma25-seed0" in out.stdout and "(stopped early: plateau: +" in out.stdout
    exp = load_experiment(cfg, overrides)
    meta = model_meta(exp.experiment_dir / "models" / "hinas-sigma25-seed0" / "model.pt")
    end, patches = (12, 96) if not anneal else (14, 112)
    assert meta["iterations"] == end and meta["patches"] == patches and meta["retrain"]["iterations"] == 40
    assert [p["patches"] for p in meta["validation"]] == [32, 64, 96] + ([112] if anneal else [])
    assert meta["stop_reason"].startswith("plateau: +") and meta["anneal_from"] == (12 if anneal else None)
    assert meta["stop_reason"].endswith(" dB over the last 40 patches at 96 patches, then the learning rate annealed "
                                        "from 0.0015 to 1e-06 over 16 patches" if anneal else " dB over the last 40 patches")
    assert (exp.experiment_dir / "retrain_curves.png").is_file()
    report = report_markdown(exp, [])
    assert f"| hinas-sigma25-seed0 | {end} | {patches} | 9 / 2 |" in report and f"early, {meta['stop_reason']}" in report
    assert f"Stopped early by the plateau rule (retrain.plateau): hinas-sigma25-seed0 ({meta['stop_reason']})." in report
