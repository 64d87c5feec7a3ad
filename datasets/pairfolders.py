"""Paired image folders: ``FOLDER/input/<name>`` (degraded) and ``FOLDER/target/<name>`` (clean).

This is the Test100 / Rain13K layout, and the layout our generated sets (SIM-style, the
synthetic-rain stand-in) are written in, one such folder per split. Pairs are matched by exact
file name; a file without its partner is an error naming it.
"""
from __future__ import annotations

import os
from pathlib import Path

from .cache import load_images
from .errors import DatasetError
from .images import Pair, PairSet, list_images, write_png

INPUT_DIR, TARGET_DIR = "input", "target"


def is_pair_folder(folder: Path) -> bool:
    return (folder / INPUT_DIR).is_dir() and (folder / TARGET_DIR).is_dir()


def read_pair_folder(folder: str | os.PathLike, name: str, gray: bool = False,
                     cache_dir: str | os.PathLike | None = None, use_cache: bool = True) -> PairSet:
    """Load ``folder/input`` + ``folder/target`` as a :class:`PairSet` named ``name``.

    Args:
        gray: BT.601 grayscale ``(H, W)`` (True) or RGB ``(H, W, 3)`` (False); both uint8.

    Raises:
        DatasetError: a missing side, no pairs, unmatched names, a size mismatch or a bad image.
    """
    folder = Path(folder)
    if not is_pair_folder(folder):
        raise DatasetError(f"{folder} has no {INPUT_DIR}/ and {TARGET_DIR}/ folders")
    inputs = {p.name: p for p in list_images(folder / INPUT_DIR)}
    targets = {p.name: p for p in list_images(folder / TARGET_DIR)}
    unmatched = sorted(set(inputs) ^ set(targets))
    if unmatched:
        raise DatasetError(f"{folder}: {len(unmatched)} file(s) without a partner in "
                           f"{INPUT_DIR}/ or {TARGET_DIR}/: {', '.join(unmatched[:10])}")
    if not inputs:
        raise DatasetError(f"{folder}: {INPUT_DIR}/ and {TARGET_DIR}/ hold no images (empty split)")
    names = sorted(inputs)
    ins = load_images(f"{name}/input", [(n, inputs[n]) for n in names], gray, cache_dir, use_cache)
    outs = load_images(f"{name}/target", [(n, targets[n]) for n in names], gray, cache_dir, use_cache)
    pairs = []
    for n, a, b in zip(names, ins.images, outs.images):
        if a.shape != b.shape:
            raise DatasetError(f"{folder}: pair {n} has input {a.shape} but target {b.shape}")
        pairs.append(Pair(n, a, b))
    return PairSet(name, tuple(pairs))


def write_pair(folder: Path, name: str, degraded, clean) -> None:
    """Write one pair as PNGs ``folder/input/<name>`` and ``folder/target/<name>``."""
    for sub, image in ((INPUT_DIR, degraded), (TARGET_DIR, clean)):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        write_png(folder / sub / name, image)
