"""The SIM-style dataset: (noisy, clean) pairs made by :mod:`.sim_noise` from BSDS500 crops.

Defaults follow HiNAS's SIM1800 counts: 1600 train + 212 test pairs. BSDS500 has 500 images, so
pairs are **crops** (default 128 x 128, RGB):

* train crops come from the 300 train+val images, test crops from the 200 test images, so no
  clean content is shared between train and test;
* each image is cut into its largest grid of disjoint ``crop x crop`` cells (2 x 3 for
  321x481 at 128), placed at a random offset; an image's crops are distinct cells, so **no two
  crops overlap**. Crop ``j`` comes from image ``order[j % n]`` (``order`` a seeded permutation),
  so images give ``count / n`` crops each, give or take one (1600 over 300: 5 or 6);
* every pair has its own seeded draw of the pipeline parameters and noise (see :mod:`.builder`).

Pairs are RGB, as the paper's set most likely was; ``load_sim(..., gray=True)`` converts both
sides with the BT.601 luma of :mod:`.images` for a grayscale network. Label results "SIM-style".
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from .bsd500 import load_bsd500
from .builder import SPLIT_CODE, PairJob, build_pair_dataset, check_build, read_info
from .errors import DatasetError
from .images import ImageSet, PairSet
from .pairfolders import read_pair_folder
from .sim_noise import simulate_camera_noise

SIM_NAME = "SIM-style camera noise (regenerated from BSDS500; not the paper's SIM1800)"
SIM_KIND = "sim"
RECIPE = "hinas.datasets.sim_noise v1 (Jaroensri et al. 2019 pipeline, SIM_NOISE.md 3.1)"


def plan_crops(images: ImageSet, split: str, count: int, crop: int, seed: int) -> list[PairJob]:
    """Disjoint-cell crop plan (see module doc); deterministic in ``seed``."""
    if crop < 16:
        raise DatasetError(f"crop must be at least 16 px, got crop={crop}")
    # The plan's own stream (pairs use [seed, split code, index]; 100 keeps the two apart).
    rng = np.random.default_rng([seed, 100 + SPLIT_CODE[split]])
    order = rng.permutation(len(images))
    cells: dict[int, list[tuple[int, int]]] = {}
    jobs = []
    for j in range(count):
        i = int(order[j % len(images)])
        if i not in cells:
            h, w = images.images[i].shape[:2]
            rows, cols = h // crop, w // crop
            if rows == 0 or cols == 0:
                raise DatasetError(f"image {images.names[i]} ({h}x{w}) is smaller than crop={crop}")
            oy, ox = int(rng.integers(0, h - rows * crop + 1)), int(rng.integers(0, w - cols * crop + 1))
            grid = [(oy + r * crop, ox + c * crop) for r in range(rows) for c in range(cols)]
            cells[i] = [grid[k] for k in rng.permutation(len(grid))]
        k = j // len(images)
        if k >= len(cells[i]):
            raise DatasetError(f"{count} {split} crops of {crop}px need {k + 1} disjoint crops from "
                               f"{images.names[i]}, which holds {len(cells[i])}; use a smaller crop or count")
        y, x = cells[i][k]
        jobs.append(PairJob(split, j, images.names[i], y, x, crop, crop))
    return jobs


def _sim_degrade(clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    noisy, params = simulate_camera_noise(clean, rng)
    return noisy, params.to_dict()


def build_sim_dataset(out: str | os.PathLike, bsds_root: str | os.PathLike | None = None, seed: int = 0,
                      n_train: int = 1600, n_test: int = 212, crop: int = 128, workers: int = 1,
                      progress: Callable[[str], None] | None = None, overwrite: bool = False,
                      cache_dir: str | os.PathLike | None = None) -> Path:
    """Build the SIM-style set at ``out`` (layout in :mod:`.builder`); returns ``out``.

    Args:
        bsds_root: BSDS500 root (default ``$HINAS_BSDS500_ROOT``); train crops from train+val,
            test crops from test.
        seed: base seed of the crop plan and of every pair's pipeline draw.
        n_train, n_test: pair counts (SIM1800: 1600 / 212); crop: square crop size in px.
        workers: processes (results do not depend on it).
    """
    check_build(out, n_train, n_test, workers, overwrite)
    sets = {"train": load_bsd500("train", bsds_root, gray=False, cache_dir=cache_dir),
            "test": load_bsd500("test", bsds_root, gray=False, cache_dir=cache_dir)}
    jobs = [job for split, n in (("train", n_train), ("test", n_test))
            for job in plan_crops(sets[split], split, n, crop, seed)]
    sources = {name: img for s in sets.values() for name, img in s}
    info = {"name": SIM_NAME, "kind": SIM_KIND, "recipe": RECIPE, "crop": crop,
            "source": "BSDS500 (train+val -> train crops, test -> test crops)"}
    return build_pair_dataset(out, jobs, sources, _sim_degrade, seed, info, workers, progress, overwrite)


def load_sim(root: str | os.PathLike, split: str = "train", gray: bool = False,
             cache_dir: str | os.PathLike | None = None, use_cache: bool = True) -> PairSet:
    """Pairs of a built SIM-style set: ``input`` noisy, ``target`` clean, uint8 RGB ``(H, W, 3)``
    (or BT.601 gray ``(H, W)`` with ``gray``). Named ``"<SIM_NAME>/<split>"``."""
    root = Path(root).expanduser().resolve()
    read_info(root, SIM_KIND)
    if split not in ("train", "test"):
        raise DatasetError(f"unknown SIM split {split!r}; choose 'train' or 'test'")
    return read_pair_folder(root / split, f"{SIM_NAME}/{split}", gray, cache_dir, use_cache)
