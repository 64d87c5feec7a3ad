"""The search split of HiNAS Sec. 2.3: Train-W / Train-A / Validation-V.

``val_fraction`` (2%) of the training images go to V (at least 1); the rest is halved into W
(supernet weights) and A (architecture parameters), W taking the extra image when the rest is
odd. For 300 BSD500 training images: V = 6, W = 147, A = 147.

The assignment is a pure function of the image names and ``seed``: images are ordered by
``sha256(seed, "search-split", name)``, so it is the same on every machine and numpy version
and does not depend on the order the files were listed in. The three parts are disjoint and
cover every image; each part keeps the images in their original order.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Sequence

from .errors import DatasetError
from .images import ImageSet


@dataclass(frozen=True)
class SearchSplit:
    """Indices into the training set: ``train_w`` (weights), ``train_a`` (architecture), ``val``."""

    train_w: tuple[int, ...]
    train_a: tuple[int, ...]
    val: tuple[int, ...]

    def apply(self, images: ImageSet) -> tuple[ImageSet, ImageSet, ImageSet]:
        """The three parts of ``images`` as sets named ``<name>/train-W``, ``/train-A``, ``/val-V``."""
        return (images.subset(self.train_w, f"{images.name}/train-W"),
                images.subset(self.train_a, f"{images.name}/train-A"),
                images.subset(self.val, f"{images.name}/val-V"))


def search_split(names: Sequence[str] | ImageSet, seed: int = 0, val_fraction: float = 0.02) -> SearchSplit:
    """Split training images (given by their names, or an :class:`ImageSet`) into W / A / V.

    Raises:
        DatasetError: fewer than 3 images, or ``val_fraction`` outside (0, 1).
    """
    if isinstance(names, ImageSet):
        names = names.names
    n = len(names)
    if not 0 < val_fraction < 1:
        raise DatasetError(f"val_fraction must be in (0, 1), got val_fraction={val_fraction}")
    if n < 3:
        raise DatasetError(f"the search split needs at least 3 training images, got {n}")
    n_val = min(n - 2, max(1, math.floor(val_fraction * n + 0.5)))
    rank = sorted(range(n), key=lambda i: hashlib.sha256(f"{seed}\0search-split\0{names[i]}".encode()).digest())
    rest = rank[n_val:]
    n_w = (len(rest) + 1) // 2
    return SearchSplit(tuple(sorted(rest[:n_w])), tuple(sorted(rest[n_w:])), tuple(sorted(rank[:n_val])))
