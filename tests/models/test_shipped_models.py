"""The trained denoisers shipped under models/: each loads on the CPU, scores what its card
says on the check set, and `hinas denoise --sigma` uses them out of the box."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hinas import models as shipped

REPO = Path(__file__).resolve().parents[2]


def test_one_model_per_paper_noise_level_each_a_few_megabytes_with_a_card():
    entries = shipped.shipped()
    assert sorted(e["sigma"] for e in entries) == [30.0, 50.0, 70.0]
    for e in entries:
        assert 0.5e6 < Path(e["path"]).stat().st_size < 5e6
        card = Path(e["card"]).read_text()
        assert f"sigma {e['sigma']:g}" in card and f"{e['check']['psnr']:.4f}" in card
        assert f"{e['test200']['psnr_patch']:.2f}" in card and f"{e['iterations']:,}" in card


@pytest.mark.parametrize("sigma", [30.0, 50.0, 70.0])
def test_each_model_scores_what_its_card_says_on_the_check_set(sigma, bsds_root):
    from hinas_core.models import load_model

    entry = shipped.for_sigma(sigma)
    assert entry["sigma"] == sigma
    _, spec, meta = load_model(entry["path"])
    assert spec["kind"] == "hinas" and meta["sigma"] == sigma and meta["iterations"] == entry["iterations"]
    got = shipped.check_figures(entry["path"], sigma, bsds_root)
    assert got["psnr"] == pytest.approx(entry["check"]["psnr"], abs=0.02)
    assert got["ssim"] == pytest.approx(entry["check"]["ssim"], abs=1e-3)


def test_the_nearest_noise_level_is_chosen_and_a_bad_one_refused():
    assert shipped.for_sigma(25)["sigma"] == 30 and shipped.for_sigma(61)["sigma"] == 70
    assert shipped.for_sigma(40)["sigma"] == 30  # a tie goes to the weaker noise level
    with pytest.raises(ValueError, match="> 0"):
        shipped.for_sigma(0)


def test_hinas_denoise_by_sigma_on_the_cpu_cleans_a_real_noisy_image(tmp_path, bsds_root):
    from hinas.datasets import ImageSet, load_bsd500, noisy_pairs, read_image
    from hinas.datasets.images import write_png
    from hinas_core.metrics import psnr_from_mse

    def psnr(a, b):
        return psnr_from_mse(float(np.mean((np.asarray(a, np.float64) - b) ** 2)))

    img = load_bsd500("test", bsds_root).images[7][100:196, 150:278]
    pair = noisy_pairs(ImageSet("crop", ("x",), (np.ascontiguousarray(img),)), 30)[0]
    noisy = np.clip(pair.input, 0, 255).round().astype(np.uint8)  # pairs are on the 0-255 scale
    write_png(tmp_path / "noisy.png", noisy)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run([sys.executable, "-m", "hinas.pipeline.cli", "denoise", "--sigma", "30",
                        str(tmp_path / "noisy.png"), str(tmp_path / "out.png")], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "sigma 30" in r.stdout and not r.stderr
    out = read_image(tmp_path / "out.png", gray=True)
    clean = pair.target.astype(np.float64)
    gain = psnr(out, clean) - psnr(noisy, clean)
    assert gain > 5, gain  # a sigma-30 image sits near 18.6 dB; the shipped model lifts it well above


def test_index_paths_are_relative_so_an_installed_copy_finds_its_files():
    raw = json.loads((REPO / "models" / "index.json").read_text())
    assert all(not Path(e["file"]).is_absolute() and "/" not in e["file"] for e in raw["models"])
