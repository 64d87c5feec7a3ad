"""A retraining job's validation curve and early-stop state travel in a state bundle (issue #12):
a job cut mid-way, exported (also ``--compact``), imported on another "machine" and resumed
from the imported checkpoint ends with the curve of an uninterrupted job. Real parts: a tiny
DnCNN trained on real image crops, validated on a held-out part of the image, the CLI's
export and import."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.timeout(300)

LABEL = "dncnn-sigma30-seed0"


@pytest.mark.parametrize("compact", [False, True])
def test_a_cut_job_moved_by_a_bundle_keeps_its_validation_curve_and_plateau_state(cli, make, tmp_path, compact):
    from hinas.pipeline.experiment import load_experiment
    from hinas.pipeline.state import resume_file
    from hinas_core.models import load_tensors
    from hinas_core.retrain import RetrainConfig, Trainer

    core = make.sibling("../core/test_retrain_validation")  # its camera crops, held-out validator and tiny DnCNN
    torch.set_num_threads(1)
    cfg = RetrainConfig(iterations=16, batch_size=4, report_every=4, validate_every=2, lr=2e-3, cuda_graph=False,
                        plateau={"min_gain_db": 0.5, "window_patches": 32})

    def trainer():
        return Trainer(core.SPEC, cfg, core.Crops(), validate=core.held_out())

    whole = trainer()
    while not whole.done:
        whole.run()
    cut = trainer()
    cut.run()
    cut.run()  # cut after two reports: 4 validations made; the plateau can decide from 40 patches on
    assert len(cut.curve) == 4 and cut.stop_reason is None

    config = make.config(tmp_path / "c.yaml", tmp_path / "runs")
    exp = load_experiment(config)
    ckpt = exp.experiment_dir / "retrain" / f"{LABEL}-0a1b2_00000" / "checkpoint_000001" / "retrain.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save(cut.state_dict(), ckpt)
    code, out, err = cli("state", "export", config, "--out", tmp_path / "bundle", *(["--compact"] if compact else []))
    assert code == 0, err
    assert f"checkpoint: retrain {LABEL}: iteration 8" in out
    code, _, err = cli("state", "import", config, "--from", tmp_path / "bundle", "--set", f"output_dir={tmp_path / 'other'}")
    assert code == 0, err

    moved = trainer()
    with resume_file(None, load_experiment(config, [f"output_dir={tmp_path / 'other'}"]), "retrain", LABEL) as path:
        moved.load_state_dict(load_tensors(path, "retrain checkpoint"))
    assert moved.curve == cut.curve and moved.iteration == cut.iteration
    # --compact drops Adam's moments (the trainer rebuilds them with the weights held still) and
    # rounds the weights to bf16; BatchNorm's statistics travel exactly
    expected = {k: v.to(torch.bfloat16).float() if compact and v.is_floating_point() and "running_" not in k else v
                for k, v in cut.model.state_dict().items()}
    torch.testing.assert_close(moved.model.state_dict(), expected, rtol=0, atol=0)
    if compact:
        assert any(not torch.equal(a, b) for a, b in zip(expected.values(), cut.model.state_dict().values()))
    assert moved.opt.state  # filled again (a compact bundle carries none)
    while not moved.done:
        moved.run()
    if compact:  # not bit-exact after the cut, but the same job: same stop, a curve within 0.5 dB
        assert (moved.iteration, moved.stop_reason) == (whole.iteration, whole.stop_reason)
        assert moved.curve[:4] == whole.curve[:4]
        assert np.allclose([p["val_psnr"] for p in moved.curve], [p["val_psnr"] for p in whole.curve], atol=0.5)
    else:
        assert (moved.iteration, moved.stop_reason, moved.curve) == (whole.iteration, whole.stop_reason, whole.curve)
    # The first moment the rule can judge (40 patches: a point 32 patches back) comes after the
    # move; the tiny net gains nothing over that window there, so both stop at iteration 10.
    assert moved.iteration == 10 and moved.stop_reason == "plateau: +0.000 dB over the last 32 patches"


def test_a_compact_bundle_keeps_fp32_weights_for_a_job_in_its_final_anneal():
    """At the anneal's falling learning rate the job could not make up bf16 rounding, so a
    compact export keeps its weights as they are; before the anneal they go to bf16."""
    from hinas.pipeline.state import compact_retrain_state, expand_state

    weights = {"conv.weight": torch.randn(8, 4, 3, 3), "bn.running_mean": torch.randn(8),
               "bn.num_batches_tracked": torch.tensor(5)}
    state = {"model": weights, "opt": {"state": {0: {"exp_avg": torch.ones(3)}}, "param_groups": []}, "anneal_from": None}
    training = compact_retrain_state(state)
    assert training["opt"]["state"] == {}
    assert training["model"]["conv.weight"].dtype == torch.bfloat16
    assert torch.equal(training["model"]["bn.running_mean"], weights["bn.running_mean"])
    back = expand_state(training)["model"]
    assert back["conv.weight"].dtype == torch.float32 and not torch.equal(back["conv.weight"], weights["conv.weight"])
    assert torch.equal(back["bn.num_batches_tracked"], weights["bn.num_batches_tracked"])
    annealing = compact_retrain_state({**state, "anneal_from": 1000})
    assert annealing["opt"]["state"] == {}
    assert all(torch.equal(annealing["model"][k], v) and annealing["model"][k].dtype == v.dtype for k, v in weights.items())
