"""The embedded scikit-image sample set: offline, grayscale, fixed split."""
from __future__ import annotations

import socket

import numpy as np
import pytest

from hinas.datasets import DatasetError, noisy_pairs, sample_set
from hinas.datasets import skimage_samples as sample_mod


def test_loads_offline_as_gray(monkeypatch):
    def no_network(*a, **k):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    sample_mod._load.cache_clear()
    train, test = sample_set("train"), sample_set("test")
    assert (len(train), len(test)) == (11, 5)
    assert not set(train.names) & set(test.names)
    for img in train.images + test.images:
        assert img.ndim == 2 and img.dtype == np.uint8 and min(img.shape) >= 64
        assert img.std() > 10  # a real photograph, not a flat or binary image


def test_same_noise_conventions_as_bsd500():
    test = sample_set("test")
    a, b = noisy_pairs(test, 25, seed=1), noisy_pairs(test, 25, seed=1)
    assert all(np.array_equal(p.input, q.input) for p, q in zip(a, b))
    assert a.name == "skimage-sample/test sigma=25"


def test_unknown_split():
    with pytest.raises(DatasetError, match="split"):
        sample_set("val")
