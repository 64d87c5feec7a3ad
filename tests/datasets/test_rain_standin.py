"""The synthetic-rain stand-in: labelled NOT Rain800, seeded, screen-blended streaks."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hinas.datasets import RAIN_STANDIN_NAME, DatasetError, build_rain_standin, load_rain800
from hinas.datasets.rain_standin import rain_streaks, streak_kernel


def test_streak_kernel_is_a_normalised_line_at_the_angle():
    k = streak_kernel(30, 20)
    assert abs(k.sum() - 1) < 1e-12
    ys, xs = np.nonzero(k > 0.3 * k.max())
    slope = np.polyfit(ys, xs, 1)[0]  # dx per dy
    assert abs(slope - np.tan(np.radians(20))) < 0.05
    assert ys.max() - ys.min() >= 25


def test_streak_layer_is_sparse_and_bounded():
    layer, p = rain_streaks(120, 160, np.random.default_rng(0))
    assert 0 <= layer.min() and layer.max() <= 1
    assert 0.002 <= p["density"] <= 0.01 and -25 <= p["angle_deg"] <= 25
    assert (layer > 0.05).mean() < 0.6 and layer.max() > 0.3


def test_build_label_determinism_and_brightening(mini_bsds, tmp_path):
    out = build_rain_standin(tmp_path / "rain", mini_bsds, seed=1, n_train=8, n_test=2)
    info = json.loads((out / "DATASET.json").read_text())
    assert info["name"] == RAIN_STANDIN_NAME and "NOT Rain800" in info["warning"]
    train = load_rain800(out, "train")
    assert train.name == f"{RAIN_STANDIN_NAME}/train" and len(train) == 8  # 6 images, reused with new rain
    for p in train:
        assert (p.input.astype(int) >= p.target.astype(int) - 1).all()  # screen blend only brightens
        assert (p.input != p.target).any()
    again = load_rain800(build_rain_standin(tmp_path / "again", mini_bsds, seed=1, n_train=8, n_test=2), "test")
    for p, q in zip(load_rain800(out, "test"), again):
        np.testing.assert_array_equal(p.input, q.input)


def test_more_test_pairs_than_test_images_is_refused(mini_bsds, tmp_path):
    with pytest.raises(DatasetError, match="--test 5"):
        build_rain_standin(tmp_path / "x", mini_bsds, n_train=1, n_test=5)
    assert not (tmp_path / "x").exists()
