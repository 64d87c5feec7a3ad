"""A synthetic-rain stand-in for Rain800, built from BSDS500. **Not Rain800**: results on it are
not comparable to the paper's; its dataset name says so everywhere.

Rain800 itself is not downloadable any more (``SIM_NOISE.md`` section 1); this set lets the
de-raining search run end to end. Streaks follow the Photoshop recipe the Rain800 authors
describe (noise -> motion blur -> screen blend), randomised per pair:

1. sparse seeds: each pixel is a seed with probability d ~ U[0.002, 0.01], brightness U[0.5, 1];
2. thickness: Gaussian blur with sigma ~ U[0.4, 1.2] px;
3. motion blur along a line of length L ~ U[15, 45] px at angle theta ~ U[-25, 25] degrees from
   vertical (one angle per image, as falling rain has);
4. scale so the 99.9th percentile is s ~ U[0.5, 0.9], clip to [0, 1];
5. screen blend on every channel: ``rainy = 1 - (1 - clean) * (1 - streaks)`` (values in [0, 1]).

Whole BSDS500 images are used (train+val -> train, test -> test); by default 700 train pairs
(each train image reused with different rain) and 100 test pairs, like Rain800's split, written
in the ``<split>/{input,target}/`` layout :func:`.rain800.load_rain800` reads.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage

from .bsd500 import load_bsd500
from .builder import PairJob, build_pair_dataset, check_build
from .errors import DatasetError
from .rain800 import RAIN_STANDIN_KIND, RAIN_STANDIN_NAME


def streak_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A line of ``length`` px at ``angle_deg`` from vertical, anti-aliased by bilinear splatting
    of 4 samples per px, normalised to sum 1 (the motion-blur kernel)."""
    r = max(1, int(math.ceil(length / 2)) + 1)
    t = np.linspace(-0.5, 0.5, int(math.ceil(4 * length)) + 1) * length
    ys = r + t * math.cos(math.radians(angle_deg))
    xs = r + t * math.sin(math.radians(angle_deg))
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = ys - y0, xs - x0
    k = np.zeros((2 * r + 2, 2 * r + 2))
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(k, (y0 + dy, x0 + dx), wy * wx)
    return k / k.sum()


def _convolve_same(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    # FFT convolution, zero outside the image; scipy.signal would add ~1 s to import time.
    (h, w), (kh, kw) = image.shape, kernel.shape
    shape = (h + kh - 1, w + kw - 1)
    full = np.fft.irfft2(np.fft.rfft2(image, shape) * np.fft.rfft2(kernel, shape), shape)
    return full[kh // 2:kh // 2 + h, kw // 2:kw // 2 + w]


def rain_streaks(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A ``(H, W)`` streak layer in [0, 1] and the parameters drawn for it."""
    p = {"density": float(rng.uniform(0.002, 0.01)), "thickness": float(rng.uniform(0.4, 1.2)),
         "length": float(rng.uniform(15, 45)), "angle_deg": float(rng.uniform(-25, 25)),
         "strength": float(rng.uniform(0.5, 0.9))}
    seeds = (rng.random((h, w)) < p["density"]) * rng.uniform(0.5, 1.0, (h, w))
    seeds = ndimage.gaussian_filter(seeds, p["thickness"])
    streaks = _convolve_same(seeds, streak_kernel(p["length"], p["angle_deg"]))
    peak = np.percentile(streaks, 99.9)
    return np.clip(streaks * (p["strength"] / peak if peak > 0 else 0.0), 0.0, 1.0), p


def add_rain(clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Screen-blend fresh streaks onto ``(H, W, 3)`` uint8 ``clean``; returns (rainy uint8, params)."""
    layer, params = rain_streaks(clean.shape[0], clean.shape[1], rng)
    x = clean.astype(np.float64) / 255.0
    rainy = 1.0 - (1.0 - x) * (1.0 - layer[..., None])
    return np.round(rainy * 255.0).astype(np.uint8), params


def build_rain_standin(out: str | os.PathLike, bsds_root: str | os.PathLike | None = None, seed: int = 0,
                       n_train: int = 700, n_test: int = 100, workers: int = 1,
                       progress: Callable[[str], None] | None = None, overwrite: bool = False,
                       cache_dir: str | os.PathLike | None = None) -> Path:
    """Write the stand-in at ``out`` (layout and files as in :mod:`.builder`); returns ``out``.

    Pair ``j`` of a split uses image ``order[j % n]`` of a seeded permutation of that split's
    images; ``n_test`` may not exceed the 200 test images (test pairs never repeat an image).
    """
    check_build(out, n_train, n_test, workers, overwrite)
    jobs, sources = [], {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = load_bsd500(split, bsds_root, gray=False, cache_dir=cache_dir)
        if split == "test" and n > len(images):
            raise DatasetError(f"--test {n} exceeds the {len(images)} BSDS500 test images")
        order = np.random.default_rng([seed, 200 + (split == "test")]).permutation(len(images))
        for j in range(n):
            name, img = images.names[order[j % len(images)]], images.images[order[j % len(images)]]
            sources[name] = img
            jobs.append(PairJob(split, j, name, 0, 0, img.shape[0], img.shape[1]))
    info = {"name": RAIN_STANDIN_NAME, "kind": RAIN_STANDIN_KIND,
            "recipe": "hinas.datasets.rain_standin v1 (sparse noise -> motion blur -> screen blend)",
            "source": "BSDS500 whole images (train+val -> train, test -> test)",
            "warning": "synthetic stand-in; NOT Rain800; not comparable to published Rain800 results"}
    return build_pair_dataset(out, jobs, sources, add_rain, seed, info, workers, progress, overwrite)
