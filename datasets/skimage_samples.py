"""The embedded sample set: scikit-image's bundled photographs, no download needed.

The images below ship inside the scikit-image wheel (``skimage/data/*.png|jpg``) and load
offline, without pooch (checked on scikit-image 0.26 with no network and an empty home).
Synthetic or unsuitable ones are left out (binary ``horse``, RGBA ``logo``, ``colorwheel``,
``checkerboard``, ``shepp_logan_phantom``; ``cat`` duplicates ``chelsea``; ``retina`` at 1411 px
would dominate; ``microaneurysms`` at 102 px is too small). Colour images become BT.601 gray as
BSD500 does. The split is a fixed list, so it is the same everywhere; noise conventions are
BSD500's (:mod:`.noise`). Used by the quickstart and the smoke tests.
"""
from __future__ import annotations

import functools

import numpy as np

from .errors import DatasetError
from .images import ImageSet, to_gray

SAMPLE_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("astronaut", "brick", "cell", "chelsea", "clock", "coffee", "grass", "gravel",
              "hubble_deep_field", "immunohistochemistry", "rocket"),
    "test": ("camera", "coins", "moon", "page", "text"),
}


@functools.lru_cache(maxsize=None)
def _load(name: str) -> np.ndarray:
    import skimage.data  # deferred: importing skimage.data costs ~0.3 s

    try:
        img = np.asarray(getattr(skimage.data, name)())
    except Exception as e:  # a newer scikit-image may move an image to a download
        raise DatasetError(f"scikit-image sample image {name!r} is not available offline: {e}") from e
    if img.dtype != np.uint8:
        raise DatasetError(f"scikit-image sample image {name!r} is {img.dtype}, expected uint8")
    return to_gray(img[..., :3]) if img.ndim == 3 else img


def sample_set(split: str = "train") -> ImageSet:
    """Grayscale ``(H, W)`` uint8 sample images of ``split`` ("train": 11, "test": 5)."""
    if split not in SAMPLE_SPLITS:
        raise DatasetError(f"unknown sample-set split {split!r}; choose one of {sorted(SAMPLE_SPLITS)}")
    names = SAMPLE_SPLITS[split]
    return ImageSet(f"skimage-sample/{split}", names, tuple(_load(n) for n in names))
