"""Training patches: crops, the 8 augmentations, noise, pairs, and the torch Dataset."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hinas.datasets import DatasetError, ImageSet, Pair, PairPatchSampler, PairSet, PatchDataset, PatchSampler, random_crops


def _dihedral(a):
    """The 8 rotations/flips of a square array."""
    out = []
    for k in range(4):
        r = np.rot90(a, k)
        out += [r, r[:, ::-1]]
    return out


def _index(patch, variants):
    return next(i for i, v in enumerate(variants) if np.array_equal(patch, v))


def test_all_eight_variants_appear_uniformly():
    img = np.arange(64 * 64, dtype=np.int32).reshape(64, 64)  # every pixel unique: transforms differ
    variants = _dihedral(img)
    crops = random_crops([img], 1600, 64, np.random.default_rng(0))
    counts = np.bincount([_index(c, variants) for c in crops], minlength=8)
    assert counts.min() > 150 and counts.max() < 250  # ~200 each
    plain = random_crops([img], 20, 64, np.random.default_rng(0), augment=False)
    assert all(np.array_equal(c, img) for c in plain)


def test_crops_come_from_the_images_at_any_size():
    # Unique increasing values: a crop's minimum is its source block's top-left pixel.
    imgs = [np.arange(40 * 70).reshape(40, 70), 10_000 + np.arange(70 * 40).reshape(70, 40)]
    corners = set()
    for c in random_crops(imgs, 300, 16, np.random.default_rng(2)):
        i = int(c.min() >= 10_000)
        y, x = np.unravel_index(c.min() - 10_000 * i, imgs[i].shape)
        assert any(np.array_equal(c, v) for v in _dihedral(imgs[i][y:y + 16, x:x + 16]))
        corners.add((i, y, x))
    assert {i for i, _, _ in corners} == {0, 1} and len(corners) > 200  # both images, many corners


def test_sampler_batch_layout_and_noise(bsds_root):
    from hinas.datasets import load_bsd500

    train = load_bsd500("train", bsds_root)
    sampler = PatchSampler(train, sigma=50)
    noisy, clean = sampler.sample(np.random.default_rng(0), 12)
    assert noisy.shape == clean.shape == (12, 1, 64, 64)
    assert noisy.dtype == clean.dtype == torch.float32
    assert 0 <= clean.min() and clean.max() <= 1
    big_noisy, big_clean = sampler.sample(np.random.default_rng(1), 400)
    resid = (big_noisy - big_clean) * 255
    assert abs(resid.std().item() / 50 - 1) < 0.01
    assert big_noisy.min() < 0 or big_noisy.max() > 1  # unclipped by default
    a = sampler.sample(np.random.default_rng(3), 4)
    b = sampler.sample(np.random.default_rng(3), 4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    clipped, _ = PatchSampler(train, 50, patch_size=32, clip=True).sample(np.random.default_rng(0), 64)
    assert clipped.shape[-1] == 32 and clipped.min() >= 0 and clipped.max() <= 1


def test_image_smaller_than_patch_is_named():
    s = ImageSet("toy", ("big", "tiny"), (np.zeros((80, 80), np.uint8), np.zeros((30, 90), np.uint8)))
    with pytest.raises(DatasetError, match="tiny"):
        PatchSampler(s, 25)


def test_pair_patches_stay_aligned_rgb():
    rng = np.random.default_rng(0)
    pairs = PairSet("p", tuple(Pair(f"{i}", 255 - t, t) for i, t in
                               ((i, rng.integers(0, 256, (50 + i, 70, 3), dtype=np.uint8)) for i in range(3))))
    inp, tgt = PairPatchSampler(pairs, patch_size=24).sample(np.random.default_rng(1), 16)
    assert inp.shape == (16, 3, 24, 24)
    torch.testing.assert_close(inp, 1 - tgt, atol=1e-6, rtol=0)


def test_dataset_is_indexable_deterministic_and_fresh_per_epoch():
    s = ImageSet("toy", ("a",), (np.random.default_rng(0).integers(0, 256, (80, 90), dtype=np.uint8),))
    ds = PatchDataset(PatchSampler(s, 25, patch_size=32), length=10, seed=4)
    x0, y0 = ds[3]
    assert x0.shape == y0.shape == (1, 32, 32)
    assert torch.equal(ds[3][0], x0)
    ds.set_epoch(1)
    assert not torch.equal(ds[3][0], x0)
    loader = torch.utils.data.DataLoader(ds, batch_size=5)
    batches = list(loader)
    assert len(batches) == 2 and batches[0][0].shape == (5, 1, 32, 32)
    with pytest.raises(IndexError):
        ds[10]
