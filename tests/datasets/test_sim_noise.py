"""The camera-pipeline simulator: physical properties, not golden images."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hinas.datasets import SimNoiseParams, simulate_camera_noise
from hinas.datasets import camera_pipeline as cp
from hinas.datasets.sim_noise import isp_before_jpeg, sensor_raw

# Shot-noise dominated, barely denoised, no sharpening: what the variance checks need.
SHOT = SimNoiseParams(bayer_dy=0, bayer_dx=1, shot_k=0.2, read_sigma=0.01, denoise_sigma_s=0.25,
                      denoise_sigma_r=0.1, chroma_ratio_s=8.0, chroma_ratio_r=0.1, sharpen_amount=0.0,
                      jpeg_level=7)


def test_srgb_curve_round_trips_every_8bit_value():
    v = np.arange(256) / 255.0
    np.testing.assert_array_equal(cp.to_uint8(cp.linear_to_srgb(cp.srgb_to_linear(v))), np.arange(256))
    assert np.all(np.diff(cp.srgb_to_linear(v)) > 0)


@pytest.mark.parametrize("phase", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_demosaic_keeps_samples_and_flat_colours(phase):
    rng = np.random.default_rng(0)
    rgb = rng.random((9, 11, 3))
    raw = cp.mosaic(rgb, phase)
    ch = cp.cfa_channels(9, 11, phase)
    out = cp.demosaic_bilinear(raw, phase)
    np.testing.assert_allclose(np.take_along_axis(out, ch[..., None], 2)[..., 0], raw, atol=1e-12)
    flat = np.broadcast_to([0.2, 0.5, 0.7], (9, 11, 3))
    np.testing.assert_allclose(cp.demosaic_bilinear(cp.mosaic(flat, phase), phase), flat, atol=1e-12)
    assert np.bincount(ch.ravel(), minlength=3)[1] >= 49  # half the sites are green


def test_yuv_round_trip():
    rgb = np.random.default_rng(1).random((20, 30, 3))
    np.testing.assert_allclose(cp.yuv_to_rgb(cp.rgb_to_yuv(rgb)), rgb, atol=1e-12)


@pytest.mark.parametrize("sigma_s", [1.0, 3.0, 8.0, 24.0])  # direct (<= 4 px) and grid paths
def test_bilateral_smooths_flat_noise_and_keeps_edges(sigma_s):
    rng = np.random.default_rng(1)
    step = np.where(np.arange(96)[None, :] < 48, 0.2, 0.8) * np.ones((96, 1))
    noisy = step + 0.01 * rng.standard_normal((96, 96))
    out = cp.joint_bilateral(noisy, noisy, sigma_s, 0.05)
    assert out.shape == noisy.shape
    assert out[:, :40].std() < 0.5 * noisy[:, :40].std()  # flat side smoothed
    assert abs(out[:, 45:48].mean() - 0.2) < 0.01 and abs(out[:, 48:51].mean() - 0.8) < 0.01  # edge kept
    const = cp.joint_bilateral(np.full((96, 96, 2), 0.3), noisy, sigma_s, 0.01)
    np.testing.assert_allclose(const, 0.3, atol=1e-9)  # a weighted mean of a constant
    wide_range = cp.joint_bilateral(noisy - step, noisy - step, sigma_s, 10.0)
    assert wide_range.std() < 1.5 / (2 * math.sqrt(math.pi) * sigma_s) * 0.01  # ~ a Gaussian blur


def test_tiny_range_sigma_is_edge_stopping_everywhere():
    noisy = 0.5 + 0.05 * np.random.default_rng(2).standard_normal((40, 40))
    np.testing.assert_allclose(cp.joint_bilateral(noisy, noisy, 1.0, 1e-6), noisy, atol=1e-6)


def test_raw_noise_variance_grows_with_intensity():
    levels = [0.02, 0.1, 0.3, 0.6]
    variances = []
    for x in levels:
        raw = sensor_raw(np.full((200, 200, 3), x), SHOT, np.random.default_rng(2))
        variances.append(raw.var())
        expected = SHOT.shot_k**2 * x + SHOT.read_sigma**2  # Var = k^2 x + sigma_r^2
        if x >= 0.2:  # nearer 0 the clip at 0 removes part of the lower tail
            assert abs(raw.var() / expected - 1) < 0.1, (x, raw.var(), expected)
    assert all(a < b for a, b in zip(variances, variances[1:]))
    raw = sensor_raw(np.full((10, 10, 3), 0.3), SHOT, np.random.default_rng(2))
    assert raw.min() >= 0 and raw.max() <= 1
    np.testing.assert_array_equal(raw * 2**14, np.floor(raw * 2**14))  # 14-bit levels


def test_end_to_end_noise_grows_with_intensity_in_linear_light():
    variances = []
    for level in (40, 110, 200):
        noisy, _ = simulate_camera_noise(np.full((96, 96, 3), level, np.uint8), np.random.default_rng(3), SHOT)
        lin = cp.srgb_to_linear(noisy[8:-8, 8:-8].astype(np.float64) / 255.0)
        variances.append(lin.var(axis=(0, 1)).mean())
    assert variances[0] < variances[1] < variances[2]


def test_output_is_the_decoded_jpeg_of_the_8bit_pipeline():
    clean = np.random.default_rng(4).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    noisy, p = simulate_camera_noise(clean, np.random.default_rng(5))
    assert noisy.dtype == np.uint8 and noisy.shape == clean.shape
    rng = np.random.default_rng(5)
    SimNoiseParams.draw(rng)  # the same draws, in the same order
    raw = sensor_raw(cp.srgb_to_linear(clean / 255.0), p, rng)
    before = isp_before_jpeg(raw, p)
    np.testing.assert_array_equal(noisy, cp.jpeg_roundtrip(before, p.jpeg_quality, p.jpeg_subsampling))
    assert not np.array_equal(noisy, before)  # the JPEG step changed it


def test_seed_determines_the_pair():
    clean = np.random.default_rng(6).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    a, pa = simulate_camera_noise(clean, np.random.default_rng(7))
    b, pb = simulate_camera_noise(clean, np.random.default_rng(7))
    c, pc = simulate_camera_noise(clean, np.random.default_rng(8))
    assert pa == pb and np.array_equal(a, b)
    assert pa != pc and not np.array_equal(a, c)


def test_parameter_draws_follow_their_ranges():
    rng = np.random.default_rng(9)
    draws = [SimNoiseParams.draw(rng) for _ in range(3000)]
    k = np.array([d.shot_k for d in draws])
    assert k.min() >= 0.01 and k.max() <= 0.2
    assert abs(np.median(np.log(k)) - math.log(math.sqrt(0.01 * 0.2))) < 0.1  # log-uniform
    assert all(0.01 <= d.read_sigma <= 0.1 and 0.25 <= d.denoise_sigma_s <= 1 and 0.1 <= d.denoise_sigma_r <= 1
               and 8 <= d.chroma_ratio_s <= 32 and 0.1 <= d.chroma_ratio_r <= 0.5 and 0 <= d.sharpen_amount <= 0.25
               for d in draws)
    assert {d.jpeg_level for d in draws} == {4, 5, 6, 7}
    assert {(d.bayer_dy, d.bayer_dx) for d in draws} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert draws[0].to_dict()["jpeg_quality"] in (50, 60, 70, 80)
    assert {d.jpeg_subsampling for d in draws if d.jpeg_level == 7} == {"4:4:4"}


def test_rgb_uint8_input_is_required():
    with pytest.raises(ValueError, match="uint8"):
        simulate_camera_noise(np.zeros((8, 8)), np.random.default_rng(0))
