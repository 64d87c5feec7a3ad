"""Retraining validates on held-out data and may stop on a plateau (issue #12): the plateau
rule on synthetic curves (a pure function), and a tiny CPU retrain that validates on a real
image, cut and resumed, stopping early."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hinas.datasets import Pair, evaluate
from hinas_core.config import ConfigError
from hinas_core.plateau import PlateauConfig, patches_text, plateau_reason, window_gain
from hinas_core.retrain import RetrainConfig, Trainer

M = 1_000_000
RULE = PlateauConfig(min_gain_db=0.05, window_patches=M)


def curve(points):
    return [(int(p), float(v)) for p, v in points]


# ---- the rule, on synthetic curves ---------------------------------------------------------
def test_no_decision_before_the_curve_covers_a_whole_window():
    flat = curve((p, 30.0) for p in range(60_000, M, 60_000))  # flat, but only 0.94 M patches covered
    assert window_gain(flat, M) is None and plateau_reason(flat, RULE) is None
    assert window_gain([], M) is None


def test_a_flat_curve_stops_once_a_window_is_covered_and_says_why():
    points = curve((p, 30.0 + 1e-4 * i) for i, p in enumerate(range(60_000, 2 * M, 60_000)))
    decisions = [plateau_reason(points[:k + 1], RULE) for k in range(len(points))]
    first = next(k for k, d in enumerate(decisions) if d)
    assert points[first][0] >= M + 60_000 and all(d is None for d in decisions[:first])  # the earliest point that can judge
    assert decisions[first] == "plateau: +0.002 dB over the last 1.0 M patches"


def test_a_curve_still_gaining_enough_per_window_never_stops():
    # 0.06 dB per million patches, validated every 60k patches for 7.2 M patches (the paper's budget)
    points = curve((p, 25 + 0.06 * p / M) for p in range(60_000, 7_200_001, 60_000))
    assert all(plateau_reason(points[:k + 1], RULE) is None for k in range(len(points)))


def test_the_threshold_is_strict_and_uses_the_best_so_far():
    assert plateau_reason(curve([(0, 30.0), (M, 30.05)]), RULE) is None  # exactly min_gain: keeps going
    assert plateau_reason(curve([(0, 30.0), (M, 30.0499)]), RULE) is not None
    # A peak before the window then a decline: no gain over the window -> stop, reported as +0.
    assert plateau_reason(curve([(0, 29.0), (M // 2, 30.0), (M, 29.5), (2 * M, 29.8)]), RULE) == \
        "plateau: +0.000 dB over the last 1.0 M patches"
    # One low outlier at the window's start does not make the gain look large.
    noisy = curve([(0, 30.0), (M // 2, 10.0), (M + M // 2, 30.02)])
    assert window_gain(noisy, M) == pytest.approx(0.02) and plateau_reason(noisy, RULE)
    # A new high inside the window keeps the job going, whatever the last point is.
    assert plateau_reason(curve([(0, 30.0), (M // 2, 30.2), (M, 30.0)]), RULE) is None


def test_nan_validations_are_never_a_reason_to_stop():
    assert plateau_reason(curve([(0, math.nan), (M, math.nan)]), RULE) is None
    assert plateau_reason(curve([(0, math.nan), (M, 20.0)]), RULE) is None  # +inf gain


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=0.2), min_size=2, max_size=40),
       st.integers(min_value=1, max_value=5))
def test_the_rule_matches_its_definition(steps, every):
    """Brute force of the docstring's definition on random curves (random gains per validation)."""
    w = 3 * every
    psnr = np.cumsum(steps) * np.where(np.arange(len(steps)) % 3 == 2, -1, 1)  # ups and downs
    points = [((i + 1) * every, float(v)) for i, v in enumerate(psnr)]
    now = points[-1][0]
    before = [v for p, v in points if p <= now - w]
    expected = None if not before else max(v for _, v in points) - max(before)
    assert window_gain(points, w) == expected
    rule = PlateauConfig(min_gain_db=0.05, window_patches=w)
    assert (plateau_reason(points, rule) is not None) == (expected is not None and expected < 0.05)


def test_plateau_config_errors_name_the_key():
    assert patches_text(1_000_000) == "1.0 M" and patches_text(96) == "96"
    with pytest.raises(ConfigError, match="retrain.plateau: unknown key"):
        RetrainConfig.from_dict({"plateau": {"min_gain": 0.05}})
    with pytest.raises(ConfigError, match="retrain.plateau.window_patches"):
        RetrainConfig.from_dict({"plateau": {"window_patches": 0}})
    with pytest.raises(ConfigError, match="validate_every is 0"):
        RetrainConfig.from_dict({"plateau": {}, "validate_every": 0})
    with pytest.raises(ConfigError, match="retrain.validate_every"):
        RetrainConfig.from_dict({"validate_every": -2})
    cfg = RetrainConfig.from_dict({"plateau": {"window_patches": 500}})
    assert cfg.plateau == PlateauConfig(0.05, 500) and RetrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["plateau"] == {"min_gain_db": 0.05, "window_patches": 500}  # no anneal: hashed as before it existed
    annealing = RetrainConfig.from_dict({"plateau": {"anneal_patches": 480_000}})
    assert annealing.to_dict()["plateau"]["anneal_patches"] == 480_000 and RetrainConfig.from_dict(annealing.to_dict()) == annealing
    with pytest.raises(ConfigError, match="retrain.plateau.anneal_patches: expected an integer >= 0"):
        RetrainConfig.from_dict({"plateau": {"anneal_patches": -1}})
    assert cfg.val_every == cfg.report_every and RetrainConfig(validate_every=0).val_every == 0


# ---- a tiny CPU retrain ---------------------------------------------------------------------
class Crops:
    """Noisy/clean 24x24 crops of scikit-image's camera (the training patches)."""

    def __init__(self):
        from skimage import data
        self.img = data.camera()[:256].astype(np.float32) / 255

    def sample(self, rng, batch):
        ys, xs = rng.integers(0, 232, batch), rng.integers(0, 488, batch)
        clean = np.stack([self.img[y:y + 24, x:x + 24] for y, x in zip(ys, xs)])[:, None]
        return torch.from_numpy(clean + 0.12 * rng.standard_normal(clean.shape).astype(np.float32)), torch.from_numpy(clean)


def held_out():
    """A validator on a part of the image never cropped for training, with fixed noise."""
    from skimage import data
    clean = data.camera()[300:364, 100:164]
    noisy = clean + 30 * np.random.default_rng(0).standard_normal(clean.shape)
    pairs = [Pair("camera-bottom", noisy.astype(np.float32), clean)]

    def validate(denoise):
        r = evaluate(denoise, pairs, protocol="patch", patch=32)
        return {"psnr": r.psnr, "ssim": r.ssim}

    return validate


SPEC = {"kind": "dncnn", "depth": 3, "width": 8}
CFG = RetrainConfig(iterations=12, batch_size=4, report_every=5, validate_every=3, lr=2e-3, cuda_graph=False)


def train(trainer, cut_at=None):
    """Run to the end; with ``cut_at``, checkpoint after that many reports and continue in a
    new trainer from the checkpoint (a new process on another machine)."""
    reports = 0
    while not trainer.done:
        trainer.run()
        reports += 1
        if reports == cut_at:
            buf = io.BytesIO()
            torch.save(trainer.state_dict(), buf)
            trainer = Trainer(SPEC, trainer.config, Crops(), validate=trainer.validate)
            trainer.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    return trainer


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_validation_every_k_iterations_and_at_the_end_without_changing_the_training():
    validated = Trainer(SPEC, CFG, Crops(), validate=held_out())
    first = validated.run()
    assert [p["iteration"] for p in first["validations"]] == [3] and first["val_psnr"] == validated.curve[0]["val_psnr"]
    assert first["patches_seen"] == 20 and first["val_seconds"] > 0
    train(validated)
    assert [(p["iteration"], p["patches"]) for p in validated.curve] == [(3, 12), (6, 24), (9, 36), (12, 48)]
    assert all(15 < p["val_psnr"] < 40 and 0 < p["val_ssim"] < 1 for p in validated.curve)
    plain = train(Trainer(SPEC, CFG, Crops()))  # no validator: no curve
    assert plain.curve == [] and validated.stop_reason is None
    for (k, v), w in zip(validated.model.state_dict().items(), plain.model.state_dict().values()):
        torch.testing.assert_close(v, w, msg=k)  # validating draws no randomness and updates no BatchNorm statistic


def test_a_cut_and_resumed_retrain_keeps_the_validation_history_of_an_uninterrupted_one():
    whole = train(Trainer(SPEC, CFG, Crops(), validate=held_out()))
    cut = train(Trainer(SPEC, CFG, Crops(), validate=held_out()), cut_at=1)  # cut at iteration 5, between validations
    assert cut.curve == whole.curve and len(cut.curve) == 4
    off = train(Trainer(SPEC, RetrainConfig(**{**CFG.to_dict(), "validate_every": 0}), Crops(), validate=held_out()))
    assert off.curve == []


def test_a_validation_that_raises_is_a_nan_point_with_its_error_and_training_goes_on():
    calls = []

    def flaky(denoise):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA error: an illegal memory access")
        return held_out()(denoise)

    with pytest.warns(RuntimeWarning, match="validation at iteration 6 failed .*illegal memory access.*training goes on"):
        flaky_job = train(Trainer(SPEC, CFG, Crops(), validate=flaky))
    points = flaky_job.curve
    assert [p["iteration"] for p in points] == [3, 6, 9, 12] and math.isnan(points[1]["val_psnr"])
    assert points[1]["error"] == "RuntimeError: CUDA error: an illegal memory access" and "error" not in points[0]
    assert flaky_job.run()["best_val_psnr"] == max(p["val_psnr"] for p in points if "error" not in p)
    plain = train(Trainer(SPEC, CFG, Crops()))  # the failed validation changed nothing in the training
    for (k, v), w in zip(flaky_job.model.state_dict().items(), plain.model.state_dict().values()):
        torch.testing.assert_close(v, w, msg=k)


def test_the_plateau_rule_stops_a_tiny_retrain_early_and_the_stop_survives_a_resume():
    # A window of 24 patches (6 iterations) and a gain no 6 iterations can make: stop at the
    # first validation that has a point 24 patches before it (iteration 9: patches 36 - 24 = 12).
    cfg = RetrainConfig(**{**CFG.to_dict(), "iterations": 30, "plateau": {"min_gain_db": 50.0, "window_patches": 24}})
    whole = train(Trainer(SPEC, cfg, Crops(), validate=held_out()))
    assert whole.done and whole.iteration == 9 and whole.stop_reason.startswith("plateau: +")
    assert whole.stop_reason.endswith(" dB over the last 24 patches")
    cut = train(Trainer(SPEC, cfg, Crops(), validate=held_out()), cut_at=1)
    assert (cut.iteration, cut.stop_reason, cut.curve) == (whole.iteration, whole.stop_reason, whole.curve)
    again = Trainer(SPEC, cfg, Crops(), validate=held_out())  # a checkpoint written after the stop stays stopped
    again.load_state_dict(whole.state_dict())
    assert again.done and again.run()["iteration"] == 9 and again.iteration == 9
    budget = train(Trainer(SPEC, RetrainConfig(**{**cfg.to_dict(), "iterations": 9}), Crops(), validate=held_out()))
    assert budget.iteration == 9 and budget.stop_reason is None  # reaching the budget is no early stop
    with pytest.raises(ValueError, match="plateau needs validation"):
        Trainer(SPEC, cfg, Crops())


def test_with_anneal_patches_a_plateau_brings_the_learning_rate_down_to_lr_min_before_the_stop():
    # The rule of the test above fires at iteration 9; then 24 patches (6 iterations) of anneal.
    rule = {"min_gain_db": 50.0, "window_patches": 24, "anneal_patches": 24}
    cfg = RetrainConfig(**{**CFG.to_dict(), "iterations": 30, "lr_min": 1e-5, "plateau": rule})
    whole = train(Trainer(SPEC, cfg, Crops(), validate=held_out()))
    assert whole.done and (whole.anneal_from, whole.iteration) == (9, 15)
    assert [p["iteration"] for p in whole.curve] == [3, 6, 9, 12, 15]  # validated through the anneal and at its end
    assert whole.stop_reason.startswith("plateau: +") and whole.stop_reason.endswith(
        " dB over the last 24 patches at 36 patches, then the learning rate annealed from 0.0015 to 1e-05 over 24 patches")
    start = whole._scheduled_lr(9)  # the poly schedule's value where the rule fired
    assert start == pytest.approx(cfg.lr_min + (cfg.lr - cfg.lr_min) * (1 - 9 / 30) ** 0.9)
    assert [whole.lr_at(i) for i in (8, 9, 12, 15)] == pytest.approx(
        [whole._scheduled_lr(8), start, (start + cfg.lr_min) / 2, cfg.lr_min])
    for cut_at in (1, 2, 3):  # cut before the rule fires, and twice inside the anneal
        cut = train(Trainer(SPEC, cfg, Crops(), validate=held_out()), cut_at=cut_at)
        assert (cut.iteration, cut.anneal_from, cut.stop_reason, cut.curve) == \
            (whole.iteration, whole.anneal_from, whole.stop_reason, whole.curve)
        for (k, v), w in zip(cut.model.state_dict().items(), whole.model.state_dict().values()):
            torch.testing.assert_close(v, w, msg=k)
    # An anneal that ends between two validations (20 patches: iteration 14) and inside one call
    # of run(): the job stops at the anneal's end, validated there, not at the call's end.
    odd = RetrainConfig(**{**cfg.to_dict(), "plateau": {**rule, "anneal_patches": 20}})
    stepwise = train(Trainer(SPEC, odd, Crops(), validate=held_out()))
    one_call = Trainer(SPEC, RetrainConfig(**{**odd.to_dict(), "report_every": 30}), Crops(), validate=held_out())
    one_call.run()
    assert one_call.done and one_call.iteration == stepwise.iteration == 14 and one_call.curve == stepwise.curve
    assert [p["iteration"] for p in one_call.curve] == [3, 6, 9, 12, 14]
    short = train(Trainer(SPEC, RetrainConfig(**{**cfg.to_dict(), "iterations": 12}), Crops(), validate=held_out()))
    assert short.iteration == 12 and short.lr_at(12) == pytest.approx(cfg.lr_min)  # an anneal past the budget ends with it
    assert short.stop_reason.endswith("annealed from 0.00058 to 1e-05 over 12 patches")  # poly at 9 of 12


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_validation_between_cuda_graph_replays_of_the_compiled_bf16_nhwc_step():
    """The fast GPU step (compiled model, bf16, NHWC, CUDA graph) validates with the eager fp32
    model between graph replays: validating changes no weight and no BatchNorm statistic, the
    replays after it go on training the same tensors, and each point scores the trained weights
    exactly as a fresh fp32 copy of them scores.

    Two separately compiled bf16 trainers are not compared loss for loss: their kernels need not
    be bitwise deterministic, and 12 Adam steps amplify any difference (the first version of this
    test did so and failed on an H200, 2026-11-30, traceback not kept)."""
    from hinas_core.genotype import Genotype
    from hinas_core.models import build_model, hinas_spec

    spec = hinas_spec(Genotype.load("example_denoise"), width=8)
    cfg = RetrainConfig(iterations=12, batch_size=4, report_every=6, validate_every=3, lr=1e-3,
                        precision="bf16", channels_last=True, compile=True)
    fast = Trainer(spec, cfg, Crops(), "cuda", validate=held_out())
    first = fast.run()
    assert [p["iteration"] for p in first["validations"]] == [3, 6] and math.isfinite(first["train_loss"])

    def snapshot():
        return {k: v.detach().clone() for k, v in fast.model.state_dict().items()}

    before = snapshot()
    again = fast.validate(fast.denoiser())  # what validate_now runs, once more at iteration 6
    assert again["psnr"] == pytest.approx(fast.curve[-1]["val_psnr"], abs=1e-6)
    for k, v in snapshot().items():
        assert torch.equal(v, before[k]), k  # no weight, no BatchNorm statistic moved

    second = fast.run()
    assert [p["iteration"] for p in fast.curve] == [3, 6, 9, 12] and fast.done and math.isfinite(second["train_loss"])
    after = snapshot()
    moved = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert any(k.endswith("weight") for k in moved) and any(k.endswith("running_mean") for k in moved), moved

    copy = build_model(spec).cuda().eval()
    copy.load_state_dict(fast.model.state_dict())
    with torch.no_grad():
        fresh = held_out()(lambda batch: copy(batch.cuda()).float().cpu())
    assert fresh["psnr"] == pytest.approx(fast.curve[-1]["val_psnr"], abs=0.02)  # other DCNv2 kernel, TF32
