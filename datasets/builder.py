"""Writing a generated pair dataset (SIM-style noise, synthetic rain) atomically.

Output layout (layout (b) of :mod:`.pairfolders`, one folder per split)::

    OUT/DATASET.json                    name/label, kind, seed, counts, recipe, source
    OUT/pairs.parquet                   one row per pair: split, name, source image, crop box,
                                        seed and every degradation parameter drawn
    OUT/<split>/input/<NNNN>.png        degraded, 8-bit (lossless copy of the decoded result)
    OUT/<split>/target/<NNNN>.png       clean, 8-bit

Pair ``i`` of split ``s`` uses its own generator ``default_rng([seed, SPLIT_CODE[s], i])``, so a
pair does not depend on the others, on the order they are made, or on the number of workers.
Everything is written into a temporary sibling folder renamed to OUT at the end.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DatasetError
from .fsutil import atomic_dir, refuse_existing
from .pairfolders import write_pair

SPLIT_CODE = {"train": 0, "test": 1}
INFO_FILE, PAIRS_FILE = "DATASET.json", "pairs.parquet"

# degrade(clean uint8 (H, W, 3), rng) -> (degraded uint8 (H, W, 3), {parameter: value})
Degrade = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, dict]]


@dataclass(frozen=True)
class PairJob:
    """One pair to make: output ``split``/``name`` from ``source`` cropped to (y, x, h, w)."""

    split: str
    index: int
    source: str
    y: int
    x: int
    h: int
    w: int

    @property
    def name(self) -> str:
        return f"{self.index:04d}.png"


def _make_one(degrade: Degrade, clean: np.ndarray, entropy: list[int]) -> tuple[np.ndarray, dict]:
    return degrade(clean, np.random.default_rng(entropy))


def check_build(out: str | os.PathLike, n_train: int, n_test: int, workers: int, overwrite: bool) -> None:
    """Refuse a build's bad settings before any image is decoded (the counts, the workers, an
    existing output folder); raises DatasetError naming the setting."""
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise DatasetError(f"need a positive number of pairs, got --train {n_train} --test {n_test}")
    if workers < 1:
        raise DatasetError(f"need at least one worker process, got --workers {workers}")
    refuse_existing(Path(out).expanduser().resolve(), overwrite)


def build_pair_dataset(out: str | os.PathLike, jobs: Sequence[PairJob], sources: dict[str, np.ndarray],
                       degrade: Degrade, seed: int, info: dict, workers: int = 1,
                       progress: Callable[[str], None] | None = None, overwrite: bool = False) -> Path:
    """Make every job's pair with ``degrade`` and write the dataset at ``out`` (see module doc).

    Args:
        sources: clean ``(H, W, 3)`` uint8 images by name; ``degrade`` must be picklable
            (a module-level function) when ``workers > 1``.
        info: extra fields for ``DATASET.json`` (must include ``"name"``).

    Returns:
        ``out`` (absolute).
    """
    out = Path(out).expanduser().resolve()
    if not jobs:
        raise DatasetError("nothing to build: zero pairs requested")
    crops = [sources[j.source][j.y:j.y + j.h, j.x:j.x + j.w] for j in jobs]
    entropy = [[seed, SPLIT_CODE[j.split], j.index] for j in jobs]
    with atomic_dir(out, overwrite=overwrite) as tmp:
        rows = []
        pool = ProcessPoolExecutor(workers) if workers > 1 else None
        try:
            results = (pool.map(_make_one, [degrade] * len(jobs), crops, entropy, chunksize=8) if pool
                       else map(_make_one, [degrade] * len(jobs), crops, entropy))
            for n, (job, clean, (degraded, params)) in enumerate(zip(jobs, crops, results), 1):
                write_pair(tmp / job.split, job.name, degraded, clean)
                rows.append(asdict(job) | {"name": job.name, "seed": seed} | params)
                if progress and (n % 100 == 0 or n == len(jobs)):
                    progress(f"made {n}/{len(jobs)} pairs")
        finally:
            if pool:
                pool.shutdown(cancel_futures=True)
        pq.write_table(pa.Table.from_pylist(rows), tmp / PAIRS_FILE)
        counts = {s: sum(j.split == s for j in jobs) for s in SPLIT_CODE}
        meta = info | {"seed": seed, "counts": counts, "layout": "<split>/{input,target}/NNNN.png"}
        (tmp / INFO_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def read_info(root: str | os.PathLike, kind: str | None = None) -> dict:
    """``DATASET.json`` of a generated set; with ``kind``, checked to be of that kind
    ("sim" or "rain-standin")."""
    path = Path(root) / INFO_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path} is missing or unreadable: is {root} a generated {kind or ''} dataset? ({e})") from e
    if kind is not None and info.get("kind") != kind:
        raise DatasetError(f"{root} holds a {info.get('kind')!r} dataset, expected {kind!r}")
    return info
