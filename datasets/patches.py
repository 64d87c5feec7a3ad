"""Training patches: random crops with the 8 rotation/flip variants, and noisy batches.

The fast path works on in-memory uint8 images with numpy and hands torch tensors over without
copying: :class:`PatchSampler` (clean images + Gaussian noise drawn per sample) and
:class:`PairPatchSampler` (stored pairs such as SIM or rain, cropped at the same place).
:class:`PatchDataset` wraps either as a map-style torch ``Dataset`` for a ``DataLoader``.

Batch convention: ``(input, target)``, float32 tensors ``(B, C, P, P)`` with values ``x / 255``;
Gaussian-noise inputs are ``clean/255 + sigma/255 * N(0, 1)``, unclipped unless ``clip=True``.

Sampling: each patch picks an image uniformly (images have similar sizes), a uniform top-left
corner, and an augmentation (:data:`AUGMENTS`): ``"d8"`` one of the 8 dihedral transforms
uniformly (optional transpose, horizontal flip, vertical flip): every rotation by k*90 degrees
with and without a flip, the augmentations the paper lists for denoising (Sec. 3.1);
``"hflip"`` a horizontal (left-right) flip with probability 1/2 and nothing else, the paper's
de-raining augmentation (Sec. 3.4: rotating or flipping upside down would change the direction
rain falls in); ``"none"``. ``augment=True`` / ``False`` mean ``"d8"`` / ``"none"``. Images may
differ in size; each must be at least P x P.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from .errors import DatasetError
from .images import ImageSet, PairSet
from .noise import check_sigma

AUGMENTS = ("d8", "hflip", "none")


def augment_mode(augment: bool | str) -> str:
    """``augment`` as one of :data:`AUGMENTS` (True -> "d8", False -> "none")."""
    if augment is True or augment is False:
        return "d8" if augment else "none"
    if augment not in AUGMENTS:
        raise DatasetError(f"unknown augmentation {augment!r}; choose one of {list(AUGMENTS)}")
    return augment


def _check_sizes(images: Sequence[np.ndarray], names: Sequence[str], patch: int) -> None:
    if patch < 1:
        raise DatasetError(f"patch_size must be >= 1, got patch_size={patch}")
    if not len(images):
        raise DatasetError("cannot sample patches from an empty image set")
    for name, im in zip(names, images):
        if im.shape[0] < patch or im.shape[1] < patch:
            raise DatasetError(f"image {name} ({im.shape[0]}x{im.shape[1]}) is smaller than patch_size={patch}")


def random_crops(images: Sequence[np.ndarray], count: int, patch: int, rng: np.random.Generator,
                 augment: bool | str = True, partners: Sequence[np.ndarray] | None = None):
    """``count`` random ``patch x patch`` crops of ``images`` (uint8 ``(H, W)`` or ``(H, W, C)``).

    Args:
        augment: one of :data:`AUGMENTS` or a bool (see the module doc).
        partners: optional images aligned with ``images`` (same shapes); cropped and transformed
            identically (for pairs).

    Returns:
        ``(count, P, P[, C])`` array of the images' dtype, or a tuple (crops, partner crops).
    """
    n = len(images)
    idx = rng.integers(0, n, size=count)
    shapes = np.array([images[i].shape[:2] for i in idx]).reshape(count, 2)
    # One vectorised draw for all corners: floor(u * (size - P + 1)) is uniform on 0..size-P.
    corners = (rng.random((count, 2)) * (shapes - patch + 1)).astype(np.int64).tolist()
    # The 8 dihedral transforms as 3 bits: transpose, horizontal flip, vertical flip. Views, not
    # np.rot90: its per-call overhead made augmentation cost 4x the crop itself.
    mode = augment_mode(augment)
    if mode == "d8":
        kinds = rng.integers(0, 8, size=count).tolist()
    elif mode == "hflip":  # bit 2 only: a left-right flip, never a transpose or an upside-down flip
        kinds = (rng.integers(0, 2, size=count) * 2).tolist()
    else:
        kinds = [0] * count
    sources = [images] if partners is None else [images, partners]
    outs = [np.empty((count, patch, patch) + src[0].shape[2:], dtype=src[0].dtype) for src in sources]
    for j, ((y, x), k, i) in enumerate(zip(corners, kinds, idx.tolist())):
        for src, out in zip(sources, outs):
            crop = src[i][y:y + patch, x:x + patch]
            if k & 1:
                crop = crop.swapaxes(0, 1)
            if k & 2:
                crop = crop[:, ::-1]
            if k & 4:
                crop = crop[::-1]
            out[j] = crop
    return outs[0] if partners is None else tuple(outs)


def to_unit(batch: np.ndarray) -> np.ndarray:
    """``(B, P, P)`` or ``(B, P, P, C)`` array -> float32 ``(B, C, P, P)`` array scaled by 1/255."""
    x = batch.astype(np.float32)
    x *= np.float32(1.0 / 255.0)
    return x[:, None] if x.ndim == 3 else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class PatchSampler:
    """Random noisy/clean training patches from clean images with fresh Gaussian noise.

    Args:
        images: clean images, uint8 ``(H, W)`` (or ``(H, W, C)``), e.g. an :class:`ImageSet`.
        sigma: noise standard deviation on the 0-255 scale (> 0).
        patch_size: P (default 64, the paper's).
        augment: ``"d8"`` (or True: one of the 8 rotation/flip variants per patch), ``"hflip"``
            or ``"none"`` (or False); see the module doc.
        clip: clip noisy inputs to [0, 1] (default False: unclipped, as the noise model says).
    """

    def __init__(self, images: ImageSet | Sequence[np.ndarray], sigma: float, patch_size: int = 64,
                 augment: bool | str = True, clip: bool = False):
        self.sigma = check_sigma(sigma)
        self.images = list(images.images if isinstance(images, ImageSet) else images)
        names = images.names if isinstance(images, ImageSet) else [f"#{i}" for i in range(len(self.images))]
        _check_sizes(self.images, names, patch_size)
        self.patch_size, self.augment, self.clip = patch_size, augment_mode(augment), clip

    def sample(self, rng: np.random.Generator, batch_size: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch ``(noisy, clean)``, float32 ``(B, C, P, P)`` in [0, 1] (noisy unclipped)."""
        clean = to_unit(random_crops(self.images, batch_size, self.patch_size, rng, self.augment))
        # All arithmetic in numpy, in place: torch ops on tensors this small are dominated by
        # thread-pool overhead (measured 8 ms per add on a loaded 2-core box).
        noisy = rng.standard_normal(clean.shape, dtype=np.float32)
        noisy *= np.float32(self.sigma / 255.0)
        noisy += clean
        if self.clip:
            np.clip(noisy, 0.0, 1.0, out=noisy)
        return torch.from_numpy(noisy), torch.from_numpy(clean)

    def batches(self, rng: np.random.Generator, batch_size: int = 12) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """An endless stream of :meth:`sample` batches."""
        while True:
            yield self.sample(rng, batch_size)


class PairPatchSampler:
    """Random aligned patches of stored (input, target) pairs (SIM, rain): same crop, same transform
    (``augment`` as for :class:`PatchSampler`)."""

    def __init__(self, pairs: PairSet, patch_size: int = 64, augment: bool | str = True):
        self.inputs = [p.input for p in pairs]
        self.targets = [p.target for p in pairs]
        _check_sizes(self.targets, pairs.names, patch_size)
        self.patch_size, self.augment = patch_size, augment_mode(augment)

    def sample(self, rng: np.random.Generator, batch_size: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch ``(input, target)``, float32 ``(B, C, P, P)`` in [0, 1]."""
        inp, tgt = random_crops(self.inputs, batch_size, self.patch_size, rng, self.augment, self.targets)
        return torch.from_numpy(to_unit(inp)), torch.from_numpy(to_unit(tgt))


class PatchDataset(torch.utils.data.Dataset):
    """Map-style ``Dataset`` over a sampler: item ``i`` is one ``(input, target)`` patch ``(C, P, P)``.

    Item ``i`` of epoch ``e`` is drawn from ``numpy.random.default_rng([seed, e, i])``: the same
    index gives the same patch within an epoch (any number of DataLoader workers, any order),
    and fresh crops and noise in the next epoch (call :meth:`set_epoch`).
    """

    def __init__(self, sampler: PatchSampler | PairPatchSampler, length: int, seed: int = 0):
        self.sampler, self.length, self.seed, self.epoch = sampler, length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        inp, tgt = self.sampler.sample(np.random.default_rng([self.seed, self.epoch, i]), 1)
        return inp[0], tgt[0]
