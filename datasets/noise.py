"""Additive white Gaussian noise on the 0-255 scale, with per-image seeds for fixed test noise.

* Training noise is drawn fresh for every sample from the caller's ``numpy.random.Generator``.
* Validation/test noise is fixed: image ``name`` gets its own generator seeded by
  :func:`image_seed` ``(seed, name)`` - a sha256 of both, so it is stable across runs, machines
  and Python versions (Python's ``hash`` is salted per process). The seed does not involve
  sigma: every sigma uses the same standard-normal field ``z`` of an image, scaled by sigma,
  which makes results at different sigmas differ by the noise level only.
* Noisy values are ``float32``: ``clean + sigma * z`` with ``z ~ N(0, 1)`` drawn in float32.
  They are **not clipped** unless ``clip=True`` (then clipped to [0, 255], still not rounded).
"""
from __future__ import annotations

import hashlib
import math

import numpy as np

from .errors import DatasetError
from .images import ImageSet, Pair, PairSet


def check_sigma(sigma: float) -> float:
    """``sigma`` as a float if it is a finite number > 0; else DatasetError naming sigma."""
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise DatasetError(f"noise sigma must be a number, got sigma={sigma!r}") from None
    if not math.isfinite(s) or s <= 0:
        raise DatasetError(f"noise sigma must be > 0 (0-255 scale), got sigma={sigma!r}")
    return s


def image_seed(seed: int, name: str) -> int:
    """A 64-bit seed for image ``name`` under base ``seed``; stable everywhere."""
    digest = hashlib.sha256(f"{int(seed)}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def add_gaussian_noise(clean: np.ndarray, sigma: float, rng: np.random.Generator,
                       clip: bool = False) -> np.ndarray:
    """``clean + sigma * N(0, 1)`` as float32 on the 0-255 scale, same shape as ``clean``."""
    sigma = check_sigma(sigma)
    noisy = clean.astype(np.float32)
    noisy += np.float32(sigma) * rng.standard_normal(clean.shape, dtype=np.float32)
    if clip:
        np.clip(noisy, 0.0, 255.0, out=noisy)
    return noisy


def noisy_pairs(images: ImageSet, sigma: float, seed: int = 0, clip: bool = False) -> PairSet:
    """Fixed (noisy, clean) pairs for validation/test: image ``name`` uses :func:`image_seed`.

    Returns:
        A :class:`PairSet` named ``"<set> sigma=<sigma>"``; ``input`` is float32 ``(H, W)`` on
        0-255 (unclipped unless ``clip``), ``target`` the clean uint8 image.
    """
    sigma = check_sigma(sigma)
    pairs = tuple(
        Pair(name, add_gaussian_noise(img, sigma, np.random.default_rng(image_seed(seed, name)), clip), img)
        for name, img in images
    )
    return PairSet(f"{images.name} sigma={sigma:g}", pairs)
