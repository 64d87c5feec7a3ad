"""BSD500 for Gaussian denoising (HiNAS Sec. 3.1): clean images by split.

Source layout (the original BSDS500 distribution, images only)::

    ROOT/images/train/*.jpg   200 images   \\ HiNAS "train": 300 images
    ROOT/images/val/*.jpg     100 images   /
    ROOT/images/test/*.jpg    200 images     HiNAS "test": 200 images

ROOT comes from the ``root`` argument or ``$HINAS_BSDS500_ROOT``. Images are 481x321 or
321x481 (both orientations occur). Each image is named ``"<folder>/<file>"``
(e.g. ``"val/3096.jpg"``): that name is stable across machines and seeds its test noise.
Grayscale is BT.601 luma rounded to uint8 (see :mod:`.images`); decoded sets are cached.
"""
from __future__ import annotations

import os
from pathlib import Path

from .cache import load_images
from .errors import DatasetError
from .images import JPEG_SUFFIXES, ImageSet
from .paths import bsds500_root

BSD500_SPLITS: dict[str, tuple[str, ...]] = {"train": ("train", "val"), "test": ("test",)}


def bsd500_files(split: str = "train", root: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """``(name, path)`` of every JPEG of ``split`` ("train" = train+val, "test"), sorted by name.

    Raises:
        DatasetError: unknown split, missing root or split folder, or an empty split folder.
    """
    if split not in BSD500_SPLITS:
        raise DatasetError(f"unknown BSD500 split {split!r}; choose one of {sorted(BSD500_SPLITS)}")
    base = bsds500_root(root)
    files: list[tuple[str, Path]] = []
    for folder in BSD500_SPLITS[split]:
        d = base / "images" / folder
        if not d.is_dir():
            raise DatasetError(f"BSD500 folder {d} is missing (expected {base}/images/{{train,val,test}})")
        found = sorted(p for p in d.iterdir() if p.suffix.lower() in JPEG_SUFFIXES and p.is_file())
        if not found:
            raise DatasetError(f"BSD500 split folder {d} holds no .jpg images (empty split)")
        files += [(f"{folder}/{p.name}", p) for p in found]
    return files


def load_bsd500(split: str = "train", root: str | os.PathLike | None = None, gray: bool = True,
                cache_dir: str | os.PathLike | None = None, use_cache: bool = True) -> ImageSet:
    """The clean images of a BSD500 split.

    Args:
        split: "train" (train+val, 300 images) or "test" (200 images).
        root: the BSDS500 root (default ``$HINAS_BSDS500_ROOT``).
        gray: True -> ``(H, W)`` uint8 BT.601 luma (the HiNAS protocol); False -> RGB ``(H, W, 3)``.
        cache_dir, use_cache: the decoded-image cache (see :mod:`.cache`).

    Returns:
        An :class:`ImageSet` named ``"BSD500/<split>"``.
    """
    return load_images(f"BSD500/{split}", bsd500_files(split, root), gray, cache_dir, use_cache)
