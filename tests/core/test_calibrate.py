"""Re-fitting the output bias (issue #13, target 6): the fit finds a bias that was moved away
from its optimum, for every output kind; it refuses networks without an end conv; and the
script writes a calibrated model file that records its fit and scores Validation-V."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hinas_core.calibrate import apply_output_bias, end_conv, fit_output_bias
from hinas_core.genotype import Genotype
from hinas_core.models import build_model, hinas_spec, load_model, save_model

ROOT = Path(__file__).resolve().parents[2]
TINY = Genotype.from_dict({"format": 1, "cells": [[[["conv", 0], ["skip", 1]], [["sep", 1], ["skip", 2]]]],
                           "levels": [0, 0], "widths": [4, 8, 16]})


def _batches(n=4, channels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        clean = torch.rand(3, channels, 16, 16, generator=g)
        out.append(((clean + 0.1 * torch.randn(clean.shape, generator=g)), clean))
    return out


@pytest.mark.parametrize("output", ["sigmoid", "residual", "linear"])
@pytest.mark.parametrize("channels", [1, 3])
def test_a_moved_bias_is_found_again(output, channels):
    torch.manual_seed(0)
    model = build_model(hinas_spec(TINY, width=4, in_channels=channels, output=output)).eval()
    batches = _batches(channels=channels)
    apply_output_bias(model, fit_output_bias(model, batches))  # at the optimum now
    best = end_conv(model).bias.detach().clone()
    moved = tuple(0.3 * (i + 1) for i in range(channels))
    with torch.no_grad():
        end_conv(model).bias += torch.tensor(moved)
    fit = fit_output_bias(model, batches)
    assert fit.patches == 12
    assert fit.shift == pytest.approx([-m for m in moved], abs=1e-6)
    assert fit.mse_after < fit.mse_before
    assert abs(fit.offset_after) < abs(fit.offset_before)
    apply_output_bias(model, fit)
    assert torch.allclose(end_conv(model).bias, best, atol=1e-6)


def test_the_fit_leaves_the_model_alone_and_other_weights_stay():
    torch.manual_seed(1)
    model = build_model(hinas_spec(TINY, width=4)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit = fit_output_bias(model, _batches())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    apply_output_bias(model, fit)
    changed = [k for k, v in before.items() if not torch.equal(v, model.state_dict()[k])]
    assert changed == ["end.bias"]


def test_networks_without_an_end_conv_and_empty_input_are_refused():
    dncnn = build_model({"kind": "dncnn", "depth": 3, "width": 4})
    with pytest.raises(ValueError, match="only HiNAS networks"):
        fit_output_bias(dncnn, _batches())
    with pytest.raises(ValueError, match="at least one batch"):
        fit_output_bias(build_model(hinas_spec(TINY, width=4)), [])


def test_the_script_writes_a_calibrated_model_that_records_its_fit(tmp_path):
    spec = hinas_spec(TINY, width=4)
    torch.manual_seed(2)
    model = build_model(spec)
    with torch.no_grad():
        model.end.bias += 0.5  # a brightness bias of the kind the fit removes
    src = save_model(tmp_path / "m.pt", spec, model, {"sigma": 30, "label": "tiny"})
    out = tmp_path / "calibrated.pt"
    cmd = [sys.executable, str(ROOT / "scripts/calibrate_output_bias.py"), str(ROOT / "tune_configs/quickstart.yaml"),
           "--model", str(src), "--out", str(out), "--patches", "24"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Validation-V" in done.stdout and "before" in done.stdout and "after" in done.stdout
    new, new_spec, meta = load_model(out)
    assert new_spec == spec
    cal = meta["calibration"]
    assert cal["patches"] == 24 and cal["from_model"] == str(src) and meta["sigma"] == 30
    assert cal["device"] == "cpu"  # the tests hide any GPU: the default falls back to the CPU
    assert abs(cal["offset_after"]) < abs(cal["offset_before"])
    assert cal["validation_after"]["images"] >= 1
    assert new.end.bias.item() == pytest.approx(model.end.bias.item() + cal["shift"][0], abs=1e-6)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # never overwrites
    assert again.returncode == 2 and "exists" in again.stderr
    for device, said in (("cuda", "no GPU is visible"), ("abacus", "not a device PyTorch knows")):
        bad = subprocess.run(cmd[:-4] + ["--out", str(tmp_path / f"{device}.pt"), "--device", device],
                             capture_output=True, text=True, timeout=300)
        assert bad.returncode == 2 and said in bad.stderr and not (tmp_path / f"{device}.pt").exists()
