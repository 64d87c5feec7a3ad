"""Rain800 (ID-CGAN) for de-raining, in either published layout, and our stand-in's label.

Layouts (detected in this order for ``split`` in {"train", "test"}):

(a) **side-by-side**: one JPEG per pair, left half clean, right half rainy, in
    ``ROOT/training/`` (700) and ``ROOT/test_syn/`` (100) - the original ``rain/`` folder;
(b) **input/target**: ``ROOT/<split>/{input,target}/`` or, for test, ``ROOT/Test100/...``
    (98 pairs, Rain13K convention), with matching file names;
(b') ``ROOT/{input,target}/`` given directly (the split is then just a label);
(a') a folder of side-by-side JPEGs given directly.

Anything else is a "wrong layout" :class:`DatasetError` naming ROOT and what was expected.
An odd width is split as ``half = W // 2``: clean = columns ``[0, half)``, rainy =
``[W - half, W)`` (the middle column is dropped). Pair counts other than 700 / 100 are
accepted with a warning. A folder written by :func:`.rain_standin.build_rain_standin` is
recognised by its ``DATASET.json`` and named ``"synthetic-rain-bsds (NOT Rain800)/<split>"``
so it cannot be reported as Rain800.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from .builder import INFO_FILE, read_info
from .cache import load_images
from .errors import DatasetError
from .images import Pair, PairSet, list_images
from .pairfolders import is_pair_folder, read_pair_folder

RAIN800_DIRS = {"train": "training", "test": "test_syn"}
RAIN800_COUNTS = {"train": 700, "test": 100}
RAIN_STANDIN_NAME = "synthetic-rain-bsds (NOT Rain800)"
RAIN_STANDIN_KIND = "rain-standin"


def detect_layout(root: Path, split: str) -> tuple[str, Path]:
    """``("side-by-side" | "input-target", folder)`` for ``split`` under ``root`` (see module doc)."""
    candidates = [("side-by-side", root / RAIN800_DIRS[split]), ("input-target", root / split)]
    if split == "test":
        candidates.append(("input-target", root / "Test100"))
    for layout, folder in candidates:
        if layout == "side-by-side" and folder.is_dir():
            return layout, folder
        if layout == "input-target" and is_pair_folder(folder):
            return layout, folder
    if is_pair_folder(root):
        return "input-target", root
    if list_images(root):
        return "side-by-side", root
    raise DatasetError(
        f"wrong layout: {root} is not a Rain800 folder for split {split!r}. Expected "
        f"{root}/{RAIN800_DIRS[split]}/*.jpg (side-by-side, left clean | right rainy), "
        f"{root}/{split}/input + {root}/{split}/target, {root}/input + {root}/target, "
        "or a folder of side-by-side JPEGs"
    )


def _side_by_side(folder: Path, name: str, gray: bool, cache_dir, use_cache) -> PairSet:
    files = list_images(folder)
    if not files:
        raise DatasetError(f"Rain800 folder {folder} holds no images (empty split)")
    joined = load_images(name, [(p.name, p) for p in files], gray, cache_dir, use_cache)
    pairs = []
    for n, img in joined:
        half = img.shape[1] // 2
        if half < 1:
            raise DatasetError(f"{folder / n} is {img.shape[1]} px wide: too narrow to hold two halves")
        pairs.append(Pair(n, input=img[:, img.shape[1] - half:], target=img[:, :half]))
    return PairSet(name, tuple(pairs))


def load_rain800(root: str | os.PathLike, split: str = "train", gray: bool = False,
                 cache_dir: str | os.PathLike | None = None, use_cache: bool = True) -> PairSet:
    """(rainy, clean) pairs of a Rain800-layout folder (or of our stand-in, labelled as such).

    Returns:
        A :class:`PairSet` named ``"Rain800/<split>"`` (or the stand-in's label); ``input`` is
        rainy, ``target`` clean, uint8 RGB ``(H, W, 3)`` (BT.601 gray ``(H, W)`` with ``gray``).
    """
    if split not in RAIN800_DIRS:
        raise DatasetError(f"unknown Rain800 split {split!r}; choose 'train' or 'test'")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"Rain800 root {root} does not exist or is not a folder")
    layout, folder = detect_layout(root, split)
    standin = (root / INFO_FILE).is_file() and read_info(root).get("kind") == RAIN_STANDIN_KIND
    label = RAIN_STANDIN_NAME if standin else "Rain800"
    name = f"{label}/{split}"
    if layout == "side-by-side":
        pairs = _side_by_side(folder, name, gray, cache_dir, use_cache)
    else:
        pairs = read_pair_folder(folder, name, gray, cache_dir, use_cache)
    if label == "Rain800" and len(pairs) != RAIN800_COUNTS[split]:
        warnings.warn(f"Rain800 {split} at {folder}: {len(pairs)} pairs "
                      f"(the published split has {RAIN800_COUNTS[split]})", stacklevel=2)
    return pairs
