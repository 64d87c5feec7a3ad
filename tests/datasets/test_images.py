"""Decoding, the BT.601 luma and the containers."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFile

from hinas.datasets import DatasetError, ImageSet, Pair, read_image, to_gray


def test_luma_matches_pillow_L_exactly(bsds_root):
    path = sorted((bsds_root / "images" / "test").glob("*.jpg"))[0]
    rgb = read_image(path, gray=False)
    with Image.open(path) as im:
        pil_l = np.asarray(im.convert("L"))
    assert rgb.shape[2] == 3 and rgb.dtype == np.uint8
    np.testing.assert_array_equal(to_gray(rgb), pil_l)
    np.testing.assert_array_equal(read_image(path), pil_l)


def test_luma_is_rounded_bt601():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)
    exact = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(to_gray(rgb).astype(np.float64) - exact).max() <= 0.5 + 1e-3
    grey = np.repeat(rng.integers(0, 256, (5, 6, 1), dtype=np.uint8), 3, axis=2)
    np.testing.assert_array_equal(to_gray(grey), grey[..., 0])  # neutral colours keep their value


def test_truncated_jpeg_is_refused_even_if_pillow_is_lenient(tmp_path, bsds_root, monkeypatch):
    src = sorted((bsds_root / "images" / "train").glob("*.jpg"))[0]
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(DatasetError, match="cut.jpg"):
        read_image(bad)


def test_imageset_is_read_only_and_names_unique():
    a = np.zeros((4, 4), np.uint8)
    s = ImageSet("x", ("a", "b"), (a, a.copy()))
    with pytest.raises(ValueError):
        s.images[0][0, 0] = 1
    assert a.flags.writeable  # the caller's own array is left writeable
    with pytest.raises(ValueError, match="unique"):
        ImageSet("x", ("a", "a"), (a, a))
    assert s.subset([1]).names == ("b",) and s.channels == 1


def test_pair_needs_equal_shapes():
    with pytest.raises(ValueError, match="p1"):
        Pair("p1", np.zeros((4, 4), np.float32), np.zeros((4, 5), np.uint8))
