"""Gaussian noise: sigma checks, statistics, clipping, and fixed per-image test noise."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hinas.datasets import DatasetError, ImageSet, add_gaussian_noise, check_sigma, image_seed, noisy_pairs


@pytest.mark.parametrize("bad", [0, -5, math.nan, math.inf, "abc", None])
def test_bad_sigma_is_refused_by_name(bad):
    with pytest.raises(DatasetError, match="sigma"):
        check_sigma(bad)


@pytest.mark.parametrize("sigma", [0.5, 15, 30, 70, 300])
def test_noise_has_the_requested_std_and_is_unclipped(sigma):
    clean = np.full((300, 400), 128, np.uint8)
    noisy = add_gaussian_noise(clean, sigma, np.random.default_rng(1))
    assert noisy.dtype == np.float32
    resid = noisy - 128.0
    assert abs(resid.std() / sigma - 1) < 0.01 and abs(resid.mean()) < 0.02 * sigma
    if sigma >= 70:
        assert noisy.min() < 0 and noisy.max() > 255  # not clipped by default
        clipped = add_gaussian_noise(clean, sigma, np.random.default_rng(1), clip=True)
        assert clipped.min() >= 0 and clipped.max() <= 255


def _set(n=4):
    rng = np.random.default_rng(0)
    return ImageSet("toy", tuple(f"img{i}.jpg" for i in range(n)),
                    tuple(rng.integers(0, 256, (20 + i, 30), dtype=np.uint8) for i in range(n)))


def test_test_noise_is_fixed_per_image_name():
    s = _set()
    a, b = noisy_pairs(s, 30, seed=5), noisy_pairs(s, 30, seed=5)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.input, q.input)
    # An image's noise depends on its name only, not on the set it is in or its position.
    sub = noisy_pairs(s.subset([3, 1]), 30, seed=5)
    np.testing.assert_array_equal(sub[0].input, a[3].input)
    other = noisy_pairs(s, 30, seed=6)
    assert not np.array_equal(other[0].input, a[0].input)
    assert len({image_seed(5, n) for n in s.names}) == len(s)


def test_sigmas_share_one_noise_field_per_image():
    s = _set(1)
    z30 = (noisy_pairs(s, 30)[0].input - s.images[0]) / 30
    z50 = (noisy_pairs(s, 50)[0].input - s.images[0]) / 50
    np.testing.assert_allclose(z30, z50, atol=1e-4)
    assert noisy_pairs(s, 30).name == "toy sigma=30"
