"""BM3D's test scores, computed once and kept in the repository (issue #12).

BM3D on fixed, seeded test noise gives the same numbers on every machine and in every run, and
it is slow (minutes per sigma on test-200), so ``hinas data bm3d CONFIG`` computes it once and
keeps the per-image rows under ``baselines/bm3d/``: ``<name>.parquet`` (the columns
:func:`hinas.datasets.evaluate` writes: image, psnr, ssim, offset, protocol, sigma, seconds,
dataset) and ``<name>.json``, whose ``key`` holds everything that decides the numbers:

========================  ==================================================================
dataset, split, images    which test set, and how many images
names_sha256              the exact image list, in order
pairs_sha256              the noisy inputs and clean targets themselves (so a change of the
                          noise code, the decoder or the crop is a mismatch too)
sigma, noise_seed, clip   the noise; crop, max_images: the evaluate settings
protocol                  ``whole`` (BM3D is a whole-image method)
bm3d, call                the ``bm3d`` package version and its call (sigma_psd, profile)
========================  ==================================================================

The evaluate stage (``evaluate.bm3d: true``) reuses a kept file only when its key equals the
key of the run's own test pairs, and computes BM3D otherwise; ``evaluate.bm3d: kept`` never
computes (a GPU job has no minutes to spare): without a matching file BM3D is left out and one
line says why. The folder is ``$HINAS_BM3D_KEPT`` when set, else the checkout's ``baselines/bm3d``.

A computation cut short resumes per image: each finished image is one small JSON file in
``<name>.partial/`` (written atomically), merged into the Parquet file at the end.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hinas.datasets import EvalResult, evaluate, save_results
from hinas_core.fsutil import atomic_file

from .data import test_pairs
from .experiment import ExperimentConfig

KEPT_ENV = "HINAS_BM3D_KEPT"
FORMAT = 1
PROFILE = "np"  # bm3d.bm3d's default profile, named so that the key records it


class BM3DMissing(RuntimeError):
    """The ``bm3d`` package is not installed."""


def kept_dir() -> Path:
    """``$HINAS_BM3D_KEPT``, else ``baselines/bm3d`` of the hinas checkout."""
    if os.environ.get(KEPT_ENV):
        return Path(os.environ[KEPT_ENV]).resolve()
    import hinas

    return Path(hinas.__file__).resolve().parents[1] / "baselines" / "bm3d"


def bm3d_version() -> str:
    try:
        import bm3d  # noqa: F401 - the version alone would not prove it imports
        from importlib.metadata import version
    except ImportError:
        raise BM3DMissing("the bm3d package is not installed: pip install bm3d") from None
    return version("bm3d")


def bm3d_denoiser(sigma: float) -> Callable:
    """BM3D (the PyPI ``bm3d`` package) as a denoiser callable, told the true noise level."""
    import torch

    bm3d_version()  # one clear error when it is not installed
    import bm3d

    def denoise(batch: torch.Tensor) -> torch.Tensor:
        out = [bm3d.bm3d(x[0].double().numpy(), sigma_psd=sigma / 255.0, profile=PROFILE) for x in batch]
        return torch.from_numpy(np.stack(out)[:, None]).float()

    return denoise


def kept_name(exp: ExperimentConfig, sigma: float) -> str:
    """``<dataset>-test-sigma<s>``, plus ``-first<N>`` / ``-crop<C>`` for a reduced test set."""
    ev = exp.evaluate
    return (f"{exp.data.dataset}-test-sigma{sigma:g}" + (f"-first{ev.max_images}" if ev.max_images else "")
            + (f"-crop{ev.crop}" if ev.crop else ""))


def bm3d_key(exp: ExperimentConfig, sigma: float, pairs) -> Dict[str, Any]:
    """Everything that decides BM3D's scores on ``pairs`` (the test pairs of ``exp`` at ``sigma``)."""
    names, data = hashlib.sha256(), hashlib.sha256()
    for p in pairs:
        names.update(p.name.encode() + b"\n")
        for a in (p.input, p.target):
            a = np.ascontiguousarray(a)
            data.update(f"{a.dtype.str}{a.shape}".encode())
            data.update(a.tobytes())
    return {"format": FORMAT, "dataset": exp.data.dataset, "split": "test", "images": len(pairs),
            "names_sha256": names.hexdigest(), "pairs_sha256": data.hexdigest(), "sigma": float(sigma),
            "noise_seed": exp.data.noise_seed, "clip": exp.data.clip, "crop": exp.evaluate.crop,
            "max_images": exp.evaluate.max_images, "protocol": "whole", "bm3d": bm3d_version(),
            "call": {"function": "bm3d.bm3d", "sigma_psd": float(sigma) / 255.0, "profile": PROFILE},
            # What PSNR/SSIM are taken on; named only when not the image itself, so the files
            # kept before data.metric existed (all on the image) keep their key.
            **({"metric": exp.data.metric} if exp.data.metric != "image" else {})}


def result_from_table(table: pa.Table) -> EvalResult:
    """The set's means from per-image rows, exactly as :func:`hinas.datasets.evaluate` takes them."""
    rows = table.to_pylist()
    return EvalResult(rows[0]["dataset"], "whole", float(np.mean([r["psnr"] for r in rows])),
                      float(np.mean([r["ssim"] for r in rows])), float(sum(r["seconds"] for r in rows)), table,
                      float(np.mean([r["offset"] for r in rows])))


def key_difference(key: Dict[str, Any], other: Any) -> Optional[str]:
    """None when equal, else the first differing field, e.g. ``"noise_seed: kept 1, wanted 0"``."""
    if not isinstance(other, dict):
        return "no key"
    for k in sorted(set(key) | set(other)):
        if key.get(k) != other.get(k):
            return f"{k}: kept {other.get(k)!r}, wanted {key.get(k)!r}"
    return None


def find_kept(exp: ExperimentConfig, sigma: float, pairs, folder: Optional[Path] = None):
    """``(EvalResult, parquet path, None)`` for a kept file whose key matches, else
    ``(None, None, why)``: no file, or the first field that differs."""
    folder = folder or kept_dir()
    base = folder / kept_name(exp, sigma)
    meta, parquet = base.with_suffix(".json"), base.with_suffix(".parquet")
    if not (meta.is_file() and parquet.is_file()):
        return None, None, f"no kept file {parquet}"
    try:
        kept = json.loads(meta.read_text()).get("key")
    except (OSError, ValueError, AttributeError) as exc:
        return None, None, f"{meta} is unreadable ({exc})"
    try:
        why = key_difference(bm3d_key(exp, sigma, pairs), kept)
    except BM3DMissing as exc:  # the version is part of the key
        return None, None, str(exc)
    if why:
        return None, None, f"{meta.name} was kept for other inputs ({why})"
    table = pq.read_table(parquet)
    if table.num_rows != len(pairs) or table.column("image").to_pylist() != [p.name for p in pairs]:
        return None, None, f"{parquet.name} does not hold one row per test image, in order"
    return result_from_table(table), parquet, None


# --- computing and keeping -------------------------------------------------------------------

_WORK: Dict[str, Any] = {}
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _init_worker(sigma: float, dataset: str, metric: str) -> None:
    import torch

    torch.set_num_threads(1)
    _WORK.update(denoise=bm3d_denoiser(sigma), sigma=sigma, dataset=dataset, metric=metric)


def _score(pair) -> Dict[str, Any]:
    """One image's row, computed exactly as the evaluate stage's BM3D path computes it."""
    r = evaluate(_WORK["denoise"], [pair], protocol="whole", sigma=_WORK["sigma"], dataset=_WORK["dataset"],
                 metric=_WORK["metric"])
    return r.table.to_pylist()[0]


@contextlib.contextmanager
def _one_thread_each():
    """``*_NUM_THREADS=1`` for the processes started inside the block (they read it at import)."""
    before = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _row_file(partial: Path, index: int) -> Path:
    return partial / f"{index:05d}.json"


def compute_kept(exp: ExperimentConfig, sigma: float, processes: int = 1, folder: Optional[Path] = None,
                 say: Callable[[str], None] = print, every: int = 10) -> Path:
    """Compute BM3D on the test pairs of ``exp`` at ``sigma`` and keep the per-image rows.

    Images already finished in ``<name>.partial/`` with the same key are not computed again.
    Returns the Parquet file; a matching kept file is returned as it is.
    """
    folder = folder or kept_dir()
    pairs = test_pairs(exp.data, sigma, exp.evaluate.max_images, exp.evaluate.crop)
    key = bm3d_key(exp, sigma, pairs)
    name = kept_name(exp, sigma)
    kept, parquet, why = find_kept(exp, sigma, pairs, folder)
    if kept is not None:
        say(f"bm3d sigma {sigma:g}: kept already ({parquet}, {kept.psnr:.2f} dB / {kept.ssim:.4f})")
        return parquet
    partial = folder / f"{name}.partial"
    if partial.is_dir():
        try:
            old = json.loads((partial / "key.json").read_text())
        except (OSError, ValueError):
            old = None
        if key_difference(key, old):
            say(f"bm3d sigma {sigma:g}: discarding {partial} (computed for other inputs)")
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    with atomic_file(partial / "key.json") as tmp:
        tmp.write_text(json.dumps(key, indent=1))
    todo = [i for i in range(len(pairs)) if not _row_file(partial, i).is_file()]
    resumed = len(pairs) - len(todo)
    say(f"bm3d sigma {sigma:g}: {len(todo)} of {len(pairs)} images to compute"
        + (f" ({resumed} kept from a cut run)" if resumed else "") + f", {processes} process(es)")
    t0, done = time.time(), 0
    # Fresh (spawned) processes with one BLAS / OpenMP thread each: the processes are the
    # parallelism, and a forked copy of a process that ran torch can hang in OpenMP.
    with _one_thread_each(), ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_init_worker,
                                                 initargs=(float(sigma), exp.data.dataset, exp.data.metric)) as pool:
        for i, row in zip(todo, pool.map(_score, [pairs[i] for i in todo])):
            with atomic_file(_row_file(partial, i)) as tmp:
                tmp.write_text(json.dumps(row))
            done += 1
            if done % every == 0 or done == len(todo):
                spent = time.time() - t0
                say(f"bm3d sigma {sigma:g}: {resumed + done}/{len(pairs)} images, {spent:.0f} s, "
                    f"~{spent / done * (len(todo) - done):.0f} s left")
    rows = [json.loads(_row_file(partial, i).read_text()) for i in range(len(pairs))]
    result = result_from_table(pa.Table.from_pylist(rows))
    parquet = folder / f"{name}.parquet"
    parquet.with_suffix(".json").unlink(missing_ok=True)  # an older key never labels the new rows
    save_results([result.table], parquet)
    meta = {"key": key, "psnr": result.psnr, "ssim": result.ssim, "offset": result.offset,
            "seconds": result.seconds, "processes": processes,
            "computed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": _machine()}
    with atomic_file(parquet.with_suffix(".json")) as tmp:  # the key last: a file without it is not kept
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(partial)
    say(f"bm3d sigma {sigma:g}: {result.psnr:.2f} dB / {result.ssim:.4f} over {len(pairs)} images -> {parquet}")
    return parquet


def _machine() -> str:
    import platform

    return f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs".replace("  ", " ")
