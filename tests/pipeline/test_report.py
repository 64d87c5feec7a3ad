"""The report tells the truth at a glance (issue #13): a noisy-input row and a verdict per sigma,
offsets, timings without warm-up, example figures titled with model, sigma and PSNR."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from hinas.datasets import Pair
from hinas.pipeline.evaluate_stage import inference_seconds
from hinas.pipeline.experiment import load_experiment
from hinas.pipeline.figures import _example_titles
from hinas.pipeline.report import report_markdown, verdict


def _row(label, kind, sigma, psnr, noisy, offset=0.0):
    return {"label": label, "kind": kind, "sigma": sigma, "params": 0 if kind == "bm3d" else 10_000, "images": 5,
            "psnr_whole": psnr, "ssim_whole": 0.5, "offset_whole": offset, "inference_s": 0.01,
            "noisy_psnr": noisy, "noisy_ssim": 0.2}


ROWS = [_row("hinas-sigma30-seed0", "hinas", 30.0, 25.70, 18.93, 0.8), _row("dncnn-sigma30-seed0", "dncnn", 30.0, 24.69, 18.93),
        _row("bm3d-sigma30", "bm3d", 30.0, 29.55, 18.93, -0.1), _row("hinas-sigma50-seed0", "hinas", 50.0, 23.10, 14.88),
        _row("dncnn-sigma50-seed0", "dncnn", 50.0, 22.26, 14.88)]


@pytest.fixture
def exp(repo_root):
    return load_experiment(repo_root / "tune_configs/quickstart.yaml", ["evaluate.protocols=[whole]"])


def test_the_report_has_a_noisy_input_row_and_a_verdict_per_sigma(exp):
    text = report_markdown(exp, ROWS)
    noisy_rows = [line for line in text.splitlines() if line.startswith("| noisy input |")]
    assert [r.split("|")[2].strip() for r in noisy_rows] == ["30", "50"]
    assert "18.93" in noisy_rows[0] and "14.88" in noisy_rows[1]
    lines = text.splitlines()
    assert lines.index(noisy_rows[0]) < lines.index(next(l for l in lines if l.startswith("| hinas-sigma30")))
    v30 = next(l for l in lines if l.startswith("- sigma 30:"))
    assert "**bm3d-sigma30** (29.55 dB)" in v30 and "+3.85 dB over hinas-sigma30-seed0" in v30
    assert "+10.62 dB over the noisy input" in v30 and "HiNAS +6.77 dB over the noisy input" in v30
    v50 = next(l for l in lines if l.startswith("- sigma 50:"))
    assert "**hinas-sigma50-seed0** (23.10 dB), +0.84 dB over dncnn-sigma50-seed0" in v50
    assert "| +0.80 |" in next(l for l in lines if l.startswith("| hinas-sigma30"))  # the brightness offset


def test_a_verdict_without_rivals_or_noisy_scores_still_reads():
    assert verdict([]) == "no scores"
    assert verdict([{"label": "m", "kind": "hinas", "psnr_whole": 20.0}]) == "best is **m** (20.00 dB)"


def test_inference_time_leaves_out_the_first_call_of_each_image_size():
    class SlowFirstCall(torch.nn.Module):
        """Costs a second on the first call of each input size (like a kernel choice), nothing after."""

        def __init__(self):
            super().__init__()
            self.seen = set()

        def forward(self, x):
            if x.shape not in self.seen:
                self.seen.add(x.shape)
                time.sleep(1.0)
            return x

    pairs = [Pair(f"i{k}", np.zeros(shape, np.float32), np.zeros(shape, np.uint8))
             for k, shape in enumerate([(16, 24), (24, 16), (16, 24)])]
    model = SlowFirstCall()
    seconds, timed = inference_seconds(model, pairs, torch.device("cpu"))
    assert seconds < 0.5 and timed == 3
    assert len(model.seen) == 2


def test_a_slow_device_times_part_of_the_set_and_scales_it_instead_of_a_second_pass(exp):
    class Slow(torch.nn.Module):
        """0.1 s an image, every call counted."""

        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            time.sleep(0.1)
            return x

    pairs = [Pair(f"i{k}", np.zeros((16, 24), np.float32), np.zeros((16, 24), np.uint8)) for k in range(40)]
    model = Slow()
    seconds, timed = inference_seconds(model, pairs, torch.device("cpu"), budget_s=0.45)
    assert 1 <= timed < 40 and model.calls == 1 + timed  # one warm-up call, then part of one pass
    assert 3.5 < seconds < 40  # >= 0.1 s an image (more on a loaded box), scaled to the 40 images
    row = {"label": "slow", "kind": "hinas", "sigma": 30.0, "params": 10, "images": 40, "psnr_whole": 20.0,
           "inference_s": seconds, "inference_timed_images": timed}
    text = report_markdown(exp, [row])
    assert f"slow from {timed} of 40" in text
    assert "estimated from" not in report_markdown(exp, [{**row, "inference_timed_images": 40}])


def test_example_panels_are_titled_with_model_sigma_and_psnr():
    noisy, denoised, clean = _example_titles({"name": "camera", "model": "hinas-sigma30-seed0", "sigma": 30.0,
                                              "psnr_noisy": 18.61, "psnr": 25.734})
    assert noisy == "noisy (sigma 30): 18.61 dB" and denoised == "hinas-sigma30-seed0: 25.73 dB" and "camera" in clean
    assert _example_titles("camera")[1] == "denoised - camera"
