"""De-raining's data side (paper Sec. 3.4, issue #15): the horizontal-flip-only augmentation never
rotates or flips upside down, and the Y-channel scores equal a hand computation; the grey paths
(the 8 rotations/flips, scores on the image as it is) are unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from hinas.datasets import DatasetError, Pair, PairPatchSampler, PairSet, PatchSampler, evaluate, random_crops
from hinas_core.metrics import psnr, rgb_to_y


def _dihedral(img: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations/flips of an (H, W[, C]) image (over the first two axes)."""
    out = []
    for t in (img, img.swapaxes(0, 1)):
        for k in range(4):
            out.append(np.rot90(t, k, axes=(0, 1)))
    return out


def _which(crop: np.ndarray, variants: list[np.ndarray]) -> int:
    hits = [i for i, v in enumerate(variants) if v.shape == crop.shape and np.array_equal(v, crop)]
    assert len(hits) == 1, "the test image must tell its 8 variants apart"
    return hits[0]


@pytest.fixture(scope="module")
def photo(bsds_root) -> np.ndarray:
    """A real 16x16 colour patch (BSDS500 test image), all 8 variants distinct."""
    path = sorted((bsds_root / "images" / "test").glob("*.jpg"))[0]
    return np.asarray(Image.open(path).convert("RGB"))[100:116, 200:216].copy()


def test_hflip_gives_only_the_image_and_its_mirror_and_d8_gives_all_eight(photo):
    variants = _dihedral(photo)
    mirror = _which(photo[:, ::-1], variants)  # the only transform hflip may apply
    rng = np.random.default_rng(0)
    hflip = {_which(c, variants) for c in random_crops([photo], 200, 16, rng, augment="hflip")}
    assert hflip == {0, mirror}  # both occur, nothing else: no rotation, no upside-down flip
    d8 = {_which(c, variants) for c in random_crops([photo], 200, 16, rng, augment="d8")}
    assert d8 == set(range(8))
    none = {_which(c, variants) for c in random_crops([photo], 50, 16, rng, augment="none")}
    assert none == {0}


def test_pair_sampler_with_hflip_flips_rainy_and_clean_together_and_keeps_rgb_order(photo):
    rainy = (255 - photo).copy()
    sampler = PairPatchSampler(PairSet("t", (Pair("a", rainy, photo),)), patch_size=16, augment="hflip")
    inp, tgt = sampler.sample(np.random.default_rng(1), 64)
    assert inp.shape == tgt.shape == (64, 3, 16, 16)
    clean = torch.from_numpy(photo.transpose(2, 0, 1).astype(np.float32) / 255)
    mirrored = clean.flip(-1)
    flipped = [torch.allclose(t, mirrored, rtol=0, atol=1e-6) for t in tgt]
    assert all(torch.allclose(t, clean, rtol=0, atol=1e-6) or f for t, f in zip(tgt, flipped))
    assert 0 < sum(flipped) < 64
    torch.testing.assert_close(inp, 1 - tgt, atol=1e-6, rtol=0)  # the same transform on both sides


def test_d8_and_the_old_true_draw_the_same_patches_and_a_bad_name_is_refused(photo):
    a = random_crops([photo], 20, 8, np.random.default_rng(3), augment=True)
    b = random_crops([photo], 20, 8, np.random.default_rng(3), augment="d8")
    assert np.array_equal(a, b)
    grey = PatchSampler([photo[..., 0]], 30, 8)
    assert grey.augment == "d8"
    with pytest.raises(DatasetError, match="rot90"):
        PatchSampler([photo[..., 0]], 30, 8, augment="rot90")


def test_y_channel_scores_equal_a_hand_computation(photo):
    rng = np.random.default_rng(0)
    clean = np.asarray(Image.fromarray(photo).resize((48, 48)))  # (48, 48, 3) uint8, real content
    est = np.clip(clean + rng.normal(0, 12, clean.shape), -20, 275).astype(np.float32)  # leaves [0, 255]

    def y(rgb):  # MATLAB rgb2ycbcr on im2double images, channel 1, on the 0-255 scale
        r, g, b = (np.clip(rgb.astype(np.float64), 0, 255)[..., i] / 255 for i in range(3))
        return 16 + 65.481 * r + 128.553 * g + 24.966 * b

    ye, yc = y(est), y(clean)
    want_psnr = 10 * np.log10(255.0**2 / np.mean((ye - yc) ** 2))
    want_ssim = structural_similarity(ye, yc, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                      data_range=255)
    pairs = [Pair("p", est, clean)]
    r = evaluate(lambda x: x, pairs, protocol="whole", metric="y")
    assert r.psnr == pytest.approx(want_psnr, abs=1e-9) and r.ssim == pytest.approx(want_ssim, abs=1e-9)
    rgb = evaluate(lambda x: x, pairs, protocol="whole")  # the image as it is: every channel
    assert abs(rgb.psnr - r.psnr) > 0.1
    white_black = torch.tensor([255.0, 0.0]).view(1, 2).expand(3, 1, 2)
    assert rgb_to_y(white_black).flatten().tolist() == pytest.approx([235.0, 16.0])


def test_grey_scores_are_the_plain_psnr_and_y_needs_colour(photo):
    clean = photo[..., 1]
    est = (clean + np.random.default_rng(2).normal(0, 10, clean.shape)).astype(np.float32)
    r = evaluate(lambda x: x, [Pair("g", est, clean)], protocol="whole")
    assert r.psnr == pytest.approx(float(psnr(torch.from_numpy(est), torch.from_numpy(clean.astype(np.float32)))[0]))
    with pytest.raises(ValueError, match="3 channels"):
        evaluate(lambda x: x, [Pair("g", est, clean)], protocol="whole", metric="y")
    with pytest.raises(DatasetError, match="metric"):
        evaluate(lambda x: x, [Pair("g", est, clean)], protocol="whole", metric="lab")
