"""Rain800 loader on fixtures in both published layouts."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from hinas.datasets import DatasetError, load_rain800


def _pair(seed, h=30, w=40):
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)  # dark
    return clean, np.clip(clean.astype(int) + 100, 0, 255).astype(np.uint8)  # brighter "rain"


def _side_by_side(folder, n, fmt="png", w=40):
    folder.mkdir(parents=True)
    for i in range(n):
        clean, rainy = _pair(i, w=w)
        Image.fromarray(np.concatenate([clean, rainy], axis=1)).save(folder / f"{i + 1}.{fmt}")


def _input_target(folder, n):
    for i in range(n):
        clean, rainy = _pair(100 + i)
        for side, img in (("input", rainy), ("target", clean)):
            (folder / side).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / side / f"{i + 1}.png")


def test_side_by_side_left_clean_right_rainy(tmp_path):
    root = tmp_path / "rain"
    _side_by_side(root / "training", 3)
    _side_by_side(root / "test_syn", 2)
    with pytest.warns(UserWarning, match="3 pairs .*700"):
        train = load_rain800(root, "train")
    assert train.name == "Rain800/train" and len(train) == 3
    clean, rainy = _pair(0)
    np.testing.assert_array_equal(train[0].target, clean)  # lossless PNG fixture: exact halves
    np.testing.assert_array_equal(train[0].input, rainy)
    with pytest.warns(UserWarning):
        assert len(load_rain800(root, "test")) == 2


def test_real_jpeg_side_by_side_and_odd_width(tmp_path):
    _side_by_side(tmp_path / "jpgs", 2, fmt="jpg", w=41)  # given directly; 82 px wide after joining
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.fromarray(np.zeros((10, 21, 3), np.uint8)).save(odd / "x.png")
    with pytest.warns(UserWarning):
        pairs = load_rain800(tmp_path / "jpgs", "train")
    assert pairs[0].input.shape == pairs[0].target.shape == (30, 41, 3)
    assert pairs[0].input.mean() > pairs[0].target.mean() + 50  # right half is the rainy one
    with pytest.warns(UserWarning):
        assert load_rain800(odd, "test")[0].input.shape == (10, 10, 3)  # middle column dropped


@pytest.mark.parametrize("where", ["split", "test100", "direct"])
def test_input_target_layouts(tmp_path, where):
    root = tmp_path / "r"
    folder = {"split": root / "test", "test100": root / "Test100", "direct": root}[where]
    _input_target(folder, 4)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        pairs = load_rain800(root, "test", gray=True)
    assert pairs.names == ("1.png", "2.png", "3.png", "4.png")
    assert pairs[0].input.ndim == 2 and (pairs[0].input.astype(int) >= pairs[0].target).all()


def test_unmatched_names_and_sizes_are_named(tmp_path):
    _input_target(tmp_path, 2)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "input" / "extra.png")
    with pytest.raises(DatasetError, match="extra.png"):
        load_rain800(tmp_path)
    (tmp_path / "input" / "extra.png").unlink()
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "input" / "1.png")
    with pytest.raises(DatasetError, match="pair 1.png"):
        load_rain800(tmp_path)


def test_wrong_layout_names_root_and_expectations(tmp_path):
    (tmp_path / "something").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match=f"wrong layout: {tmp_path}.*training") as err:
        load_rain800(tmp_path, "train")
    assert "input" in str(err.value)
    with pytest.raises(DatasetError, match="does not exist"):
        load_rain800(tmp_path / "missing")
