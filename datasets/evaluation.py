"""The evaluation protocols of HiNAS Sec. 3.1, scored with :mod:`hinas_core.metrics`.

Denoiser convention
-------------------
``fn(x) -> y`` takes a float32 tensor ``(B, C, H, W)`` holding ``input / 255`` - for Gaussian
noise that is ``noisy / 255`` **unclipped** (so values may leave [0, 1]) - and returns the same
shape, nominally in [0, 1]. It is called under ``torch.inference_mode()``. Scores: the output is
scaled by 255, clipped to [0, 255] (not rounded) and compared with the uint8 clean target:
PSNR in dB (0-255 scale) and SSIM (Wang et al. 2004, Gaussian window) per image, then averaged
over the set (with ``metric="y"``, of the Y channel of YCbCr of RGB images instead, see
:data:`METRICS`); and the brightness offset: the mean of the (clipped) output minus the mean of the
clean target, in grey levels (0-255), which a good denoiser keeps near 0.

Protocols
---------
* ``"whole"``: each image is denoised in one call (B = 1): the fairer protocol.
* ``"patch"``: the paper's - the image is split into adjacent ``64 x 64`` patches, denoised in
  batches, and joined. **Border rule**: tiles start at 0, P, 2P, ...; when a side is not a
  multiple of P, one more tile is placed to end exactly at the border, overlapping its
  neighbour. Every tile is a full P x P patch (the network always sees the size it was trained
  on), and each output pixel is taken from the **first tile in raster order that covers it**
  (the overlap comes from the regular tile, the shifted one only fills the remainder). A side
  shorter than P uses one tile of that side's full length. Consequence: for a pointwise ``fn``
  both protocols give identical outputs, and the joined output has the input's shape.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from hinas_core.metrics import psnr, rgb_to_y, ssim

from .errors import DatasetError
from .fsutil import atomic_file
from .images import Pair

Denoiser = Callable[[torch.Tensor], torch.Tensor]
PROTOCOLS = ("patch", "whole")
# What PSNR/SSIM are computed on. "image": the image as it is (grey, or all RGB channels: PSNR
# over every value, SSIM averaged over channels). "y": the Y channel of YCbCr of an RGB image
# (hinas_core.metrics.rgb_to_y, from the estimate clipped to [0, 255]), as the de-raining
# literature scores Rain800 (docs/DATASETS.md, "Scoring de-raining").
METRICS = ("image", "y")


def score(estimate: torch.Tensor, target: torch.Tensor, metric: str = "image") -> tuple[float, float]:
    """(PSNR, SSIM) of one ``(C, H, W)`` estimate against its target, both on the 0-255 scale."""
    if metric == "y":
        estimate, target = rgb_to_y(estimate.clamp(0, 255)), rgb_to_y(target)
    elif metric != "image":
        raise DatasetError(f"unknown metric {metric!r}; choose one of {METRICS}")
    return float(psnr(estimate, target)[0]), float(ssim(estimate, target)[0])


def tile_starts(size: int, patch: int) -> list[int]:
    """Start offsets of the tiles along one side (see the border rule in the module doc)."""
    if size <= patch:
        return [0]
    starts = list(range(0, size - patch + 1, patch))
    if starts[-1] + patch < size:
        starts.append(size - patch)
    return starts


def _call(fn: Denoiser, x: torch.Tensor, device) -> torch.Tensor:
    y = fn(x.to(device) if device is not None else x)
    if y.shape != x.shape:
        raise DatasetError(f"the denoiser returned shape {tuple(y.shape)} for input {tuple(x.shape)}")
    return y.detach().to("cpu", torch.float32)


def denoise_patchwise(fn: Denoiser, image: torch.Tensor, patch: int = 64, batch_size: int = 64,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Paper protocol on one ``(C, H, W)`` image; returns ``(C, H, W)`` on the CPU."""
    _, h, w = image.shape
    ph, pw = min(patch, h), min(patch, w)
    boxes = [(y, x) for y in tile_starts(h, ph) for x in tile_starts(w, pw)]
    tiles = torch.stack([image[:, y:y + ph, x:x + pw] for y, x in boxes])  # (N, C, ph, pw)
    outs = torch.cat([_call(fn, tiles[i:i + batch_size], device) for i in range(0, len(boxes), batch_size)])
    out = torch.empty_like(image)
    # Reverse raster order: earlier tiles overwrite later ones, so each pixel keeps the value of
    # the first tile that covers it.
    for (y, x), tile in zip(reversed(boxes), outs.flip(0)):
        out[:, y:y + ph, x:x + pw] = tile
    return out


def denoise_whole(fn: Denoiser, image: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """Whole-image protocol on one ``(C, H, W)`` image; returns ``(C, H, W)`` on the CPU."""
    return _call(fn, image[None], device)[0]


def to_chw(a: np.ndarray) -> torch.Tensor:
    """An ``(H, W)`` or ``(H, W, C)`` image as a float32 ``(C, H, W)`` tensor (a copy), same scale."""
    t = torch.from_numpy(np.array(a, dtype=np.float32))  # a copy: Pair arrays are read-only
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1).contiguous()


@dataclass(frozen=True)
class EvalResult:
    """Mean scores over a set and the per-image table.

    ``table`` columns: image (str), psnr (dB), ssim, offset (output mean minus target mean, grey
    levels), protocol, sigma (NaN when not Gaussian noise), seconds (denoising time of that
    image, tiling included), dataset. ``offset`` is the mean of the per-image offsets.
    """

    dataset: str
    protocol: str
    psnr: float
    ssim: float
    seconds: float
    table: pa.Table
    offset: float = math.nan

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "protocol": self.protocol, "psnr": self.psnr, "ssim": self.ssim,
                "offset": self.offset, "seconds": self.seconds, "images": self.table.num_rows}


def evaluate(fn: Denoiser, pairs: Sequence[Pair], protocol: str = "patch", sigma: float | None = None,
             patch: int = 64, batch_size: int = 64, device: torch.device | str | None = None,
             dataset: str | None = None, out: str | os.PathLike | None = None, metric: str = "image",
             progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Denoise every pair's input with ``fn`` and score it against its target.

    Args:
        fn: the denoiser (convention in the module doc).
        pairs: e.g. :func:`.noise.noisy_pairs` of the test set, or a stored :class:`PairSet`.
        protocol: "patch" (paper) or "whole".
        sigma: recorded in the table (Gaussian noise level), not used otherwise.
        patch, batch_size: tile size and tiles per ``fn`` call (patch protocol).
        device: where ``fn``'s inputs are sent (outputs come back to the CPU).
        dataset: name for the table (default: the set's ``name`` attribute, if any).
        out: if given, the per-image table is written there as Parquet (atomically).
        metric: "image" or "y" (:data:`METRICS`); "y" needs RGB pairs.
        progress: called as ``progress(done, total)`` after each image.
    """
    if metric not in METRICS:
        raise DatasetError(f"unknown metric {metric!r}; choose one of {METRICS}")
    if protocol not in PROTOCOLS:
        raise DatasetError(f"unknown evaluation protocol {protocol!r}; choose one of {PROTOCOLS}")
    if not len(pairs):
        raise DatasetError("nothing to evaluate: the pair set is empty")
    dataset = dataset or getattr(pairs, "name", "unnamed")
    rows = []
    with torch.inference_mode():
        for pair in pairs:
            x = to_chw(pair.input) / 255.0
            t0 = time.perf_counter()
            y = (denoise_patchwise(fn, x, patch, batch_size, device) if protocol == "patch"
                 else denoise_whole(fn, x, device))
            seconds = time.perf_counter() - t0
            est, ref = y * 255.0, to_chw(pair.target)
            offset = float(est.clamp(0, 255).double().mean() - ref.double().mean())
            p, s = score(est, ref, metric)
            rows.append({"image": pair.name, "psnr": p, "ssim": s, "offset": offset,
                         "protocol": protocol, "sigma": math.nan if sigma is None else float(sigma),
                         "seconds": seconds, "dataset": dataset})
            if progress is not None:
                progress(len(rows), len(pairs))
    table = pa.Table.from_pylist(rows)
    if out is not None:
        save_results([table], out)
    return EvalResult(dataset, protocol, float(np.mean([r["psnr"] for r in rows])),
                      float(np.mean([r["ssim"] for r in rows])), float(sum(r["seconds"] for r in rows)), table,
                      float(np.mean([r["offset"] for r in rows])))


def save_results(tables: Sequence[pa.Table | EvalResult], path: str | os.PathLike) -> None:
    """Concatenate per-image tables (e.g. both protocols, several sigmas) into one Parquet file."""
    tabs = [t.table if isinstance(t, EvalResult) else t for t in tables]
    with atomic_file(path) as tmp:
        pq.write_table(pa.concat_tables(tabs), tmp)
