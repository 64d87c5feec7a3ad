"""``hinas denoise``: a grey denoiser applied to a user's photo - grey or colour, 8 or 16 bits,
with or without alpha, of any size, at a given or an estimated noise level.

Photos (:func:`read_photo`): pixels as float32 in [0, 1], ``(H, W)`` grey or ``(H, W, 3)`` RGB,
plus the bit depth (8, or 16 for 16-bit grey PNG/TIFF) and the alpha plane, which passes through
untouched. 16-bit colour files are refused with one line (Pillow would silently cut them to 8 bits).

Colour (:func:`denoise_rgb`): the RGB values go through the orthonormal opponent transform
:data:`OPPONENT` (rows: luminance, red-blue, green-magenta). Orthonormal, so i.i.d. Gaussian
noise of std sigma in R, G and B is i.i.d. with the same sigma in each opponent channel, and
each channel goes through the grey model for sigma. See :func:`denoise_rgb` for the ranges.

Size: :func:`tiled` runs the network on overlapping tiles, so memory stays bounded.
Noise level: :func:`estimate_sigma` (a wavelet estimator that skips clipped areas; measured in RESULTS.md).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

# Orthonormal opponent colour transform: rows are luminance, red-blue and green-magenta.
OPPONENT = np.array([
    [1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)],
    [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)],
    [1 / math.sqrt(6), -2 / math.sqrt(6), 1 / math.sqrt(6)],
], dtype=np.float64)

TILE = 512      # core tile side (pixels); an image this size or smaller runs in one piece
OVERLAP = 32    # context added on each side of a tile and cut off again


class PhotoError(ValueError):
    """The input photo cannot be denoised (the message names the file and the reason)."""


@dataclass
class Photo:
    """A decoded photo. ``pixels``: float32 in [0, 1], ``(H, W)`` or ``(H, W, 3)`` (RGB);
    ``bits``: 8 or 16; ``alpha``: the untouched alpha plane ``(H, W)`` or None."""
    pixels: np.ndarray
    bits: int = 8
    alpha: Optional[np.ndarray] = None


def _png_bit_depth(path: Path) -> tuple:
    """(bit depth, colour type) from a PNG's IHDR chunk, or (None, None) for another format."""
    with open(path, "rb") as f:
        head = f.read(26)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or len(head) < 26:
        return None, None
    return head[24], head[25]


def read_photo(path) -> Photo:
    """Decode ``path`` (PNG, JPEG, BMP, TIFF, PPM) with the same safety checks as
    :func:`hinas.datasets.read_image` (truncation, decompression bombs, format allow-list).

    Raises:
        PhotoError: unreadable, or a kind of file this command does not handle (16-bit colour).
    """
    from PIL import Image, UnidentifiedImageError

    from hinas.datasets import DatasetError
    from hinas.datasets.images import IMAGE_FORMATS, JPEG_SUFFIXES, _looks_truncated_jpeg

    path = Path(path)
    if not path.is_file():
        raise PhotoError(f"image file {path} does not exist")
    depth, colour_type = _png_bit_depth(path)
    if depth == 16 and colour_type in (2, 4, 6):  # RGB, grey + alpha, RGBA
        what = "colour" if colour_type != 4 else "grey + alpha"
        raise PhotoError(f"{path} is a 16-bit {what} PNG, which hinas denoise does not read without losing "
                         "bits; convert it to 8 bits per channel (16-bit grey PNGs without alpha are supported)")
    try:
        if path.suffix.lower() in JPEG_SUFFIXES and _looks_truncated_jpeg(path):
            raise PhotoError(f"image file {path} is truncated (no JPEG end marker)")
        with Image.open(path, formats=IMAGE_FORMATS) as im:
            im.load()
            return _to_photo(im, path)
    except (PhotoError, DatasetError):
        raise
    except UnidentifiedImageError as e:
        raise PhotoError(f"{path} is not a readable image file") from e
    except Image.DecompressionBombError as e:
        raise PhotoError(f"image file {path} is refused: {e}") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise PhotoError(f"image file {path} is truncated or corrupt: {e}") from e


def _to_photo(im, path: Path) -> Photo:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey (Pillow reads 16-bit grey PNG as I;16 or I)
        a = np.asarray(im).astype(np.float32)
        if a.max(initial=0) > 65535 or a.min(initial=0) < 0:
            raise PhotoError(f"{path}: {mode} pixels outside 0..65535 are not supported")
        return Photo(a / 65535, bits=16)
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return Photo(np.asarray(im.convert("RGB"), np.float32) / 255)
    if mode in ("F", "I;16S"):
        raise PhotoError(f"{path}: pixel mode {mode} is not supported; save it as 8- or 16-bit PNG")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("1", "L"):
        return Photo(np.asarray(im.convert("L"), np.float32) / 255)
    if mode in ("LA", "La", "PA"):
        la = np.asarray(im.convert("LA"))
        return Photo(la[..., 0].astype(np.float32) / 255, alpha=la[..., 1].copy())
    if mode in ("RGBA", "RGBa"):
        rgba = np.asarray(im.convert("RGBA"))
        return Photo(rgba[..., :3].astype(np.float32) / 255, alpha=rgba[..., 3].copy())
    return Photo(np.asarray(im.convert("RGB"), np.float32) / 255)


def write_photo(path, photo: Photo) -> None:
    """Write ``photo`` as PNG, atomically: same channels, same bit depth, alpha as it came in."""
    from PIL import Image

    from hinas_core.fsutil import atomic_file

    scale = 65535 if photo.bits == 16 else 255
    q = np.clip(np.round(photo.pixels * scale), 0, scale)
    if photo.bits == 16:
        if photo.pixels.ndim != 2 or photo.alpha is not None:
            raise PhotoError("only 16-bit grey images without alpha are written at 16 bits")
        q = q.astype(np.uint16)
    else:
        q = q.astype(np.uint8)
        if photo.alpha is not None:
            q = np.dstack([q, photo.alpha])
    with atomic_file(path) as tmp:
        Image.fromarray(q).save(tmp, format="PNG")


def tiled(net: Callable, x, tile: int = TILE, overlap: int = OVERLAP):
    """``net`` applied to ``x`` (a ``(1, C, H, W)`` tensor) one tile at a time: each
    ``tile x tile`` block of the output is computed from that block plus up to ``overlap``
    pixels of real context on every side, and only the block is kept. Peak memory scales with
    ``(tile + 2 overlap)^2`` instead of H x W. The result differs from ``net(x)`` only through
    pixels further than ``overlap`` away (and the zero padding a tile sees at its inner edges):
    tested below a quarter of an 8-bit grey level with 24 pixels of context."""
    import torch

    _, _, h, w = x.shape
    if h <= tile + 2 * overlap and w <= tile + 2 * overlap:
        return net(x)
    out = None
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            t0, l0 = max(top - overlap, 0), max(left - overlap, 0)
            t1, l1 = min(top + tile + overlap, h), min(left + tile + overlap, w)
            y = net(x[:, :, t0:t1, l0:l1])
            if out is None:
                out = torch.empty((1, y.shape[1], h, w), dtype=y.dtype)
            bh, bw = min(tile, h - top), min(tile, w - left)
            out[:, :, top:top + bh, left:left + bw] = y[:, :, top - t0:top - t0 + bh, left - l0:left - l0 + bw]
    return out


def denoise_gray(net: Callable, image: np.ndarray, tile: int = TILE, overlap: int = OVERLAP) -> np.ndarray:
    """One grey channel ``(H, W)`` float in [0, 1] (plus noise) through ``net``; float32 ``(H, W)``."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    with torch.inference_mode():
        y = tiled(net, x.contiguous(memory_format=torch.channels_last), tile, overlap)
    return y[0, 0].numpy()


def denoise_rgb(gray: Callable[[np.ndarray], np.ndarray], rgb: np.ndarray, method: str = "opponent") -> np.ndarray:
    """Denoise ``rgb`` ``(H, W, 3)`` in [0, 1] with a grey denoiser ``gray`` (``(H, W)`` -> ``(H, W)``).

    ``opponent``: to :data:`OPPONENT` channels, each through ``gray``, and back. The chroma
    channels span [-0.71, 0.71] and [-0.82, 0.82] but sit near 0 in photos: they are shifted by
    +0.5 into the model's [0, 1]. The luminance spans [0, sqrt 3]; it is denoised in two
    overlapping windows of the model's range, [0, 1] and [sqrt 3 - 1, sqrt 3], each a shift of
    the channel (so its noise keeps sigma), and the two results are blended by brightness.
    ``rgb``: each of R, G and B through ``gray`` on its own (the comparison in RESULTS.md).
    """
    if method == "rgb":
        return np.stack([gray(rgb[..., c]) for c in range(3)], axis=-1)
    if method != "opponent":
        raise ValueError(f"method must be 'opponent' or 'rgb', got {method!r}")
    opp = rgb.astype(np.float64) @ OPPONENT.T  # (H, W, 3)
    lum = opp[..., 0]
    high = math.sqrt(3) - 1
    dark = gray(lum.astype(np.float32)).astype(np.float64)
    bright = gray((lum - high).astype(np.float32)).astype(np.float64) + high
    # Where the luminance lies in both windows ([sqrt 3 - 1, 1]), fade from the dark window's
    # result to the bright one's; below only the dark window is right, above only the bright.
    wb = np.clip((dark - high) / (1 - high), 0, 1)
    out = np.empty_like(opp)
    out[..., 0] = (1 - wb) * dark + wb * bright
    for c in (1, 2):
        out[..., c] = gray((opp[..., c] + 0.5).astype(np.float32)) - 0.5
    return np.clip(out @ OPPONENT, 0, 1).astype(np.float32)  # OPPONENT is orthonormal: inverse = transpose


def estimate_sigma(image: np.ndarray) -> float:
    """Gaussian noise std on the 0-255 scale of ``image`` (``(H, W)`` or ``(H, W, 3)``, [0, 1]).

    The wavelet estimator (Donoho: median |HH| / 0.6745 over the finest diagonal Haar band,
    all channels pooled), computed only where the local 2x2 mean lies at least 2 sigma inside
    [0, 255], re-estimated three times. An 8-bit photo clips its noise at 0 and 255; there the
    noise looks smaller, which made scikit-image's estimate_sigma (all pixels) read 11 grey
    levels low at sigma 75 on BSD500 (RESULTS.md)."""
    chans = [image] if image.ndim == 2 else [image[..., k] for k in range(image.shape[-1])]
    hh, mean = [], []
    for c in chans:
        x = np.asarray(c, np.float64) * 255
        h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
        a, b, cc, d = x[0:h:2, 0:w:2], x[0:h:2, 1:w:2], x[1:h:2, 0:w:2], x[1:h:2, 1:w:2]
        hh.append(((a - b - cc + d) / 2).ravel())  # orthonormal Haar: the noise keeps sigma
        mean.append(((a + b + cc + d) / 4).ravel())
    hh, mean = np.abs(np.concatenate(hh)), np.concatenate(mean)
    sigma = float(np.median(hh)) / 0.6745 if hh.size else 0.0
    for _ in range(3):
        keep = (mean > 2 * sigma) & (mean < 255 - 2 * sigma)
        if keep.sum() < 64:
            break
        sigma = float(np.median(hh[keep])) / 0.6745
    return sigma


def parse_sigma(text: str):
    """``--sigma``: ``auto`` or a noise level > 0 on the 0-255 scale (ValueError otherwise)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        sigma = float(text)
    except ValueError:
        raise ValueError(f"--sigma: expected a number (0-255 scale) or 'auto', got {text!r}") from None
    if not (0 < sigma < math.inf):
        raise ValueError(f"--sigma: a noise level must be > 0 (0-255 scale), got {text}")
    return sigma


def shipped_model(sigma: float, say: Callable[[str], None]) -> str:
    """Path of the shipped model nearest ``sigma``; says so when it is not an exact match."""
    from hinas import models as shipped

    entry = shipped.for_sigma(sigma)
    if entry["sigma"] != sigma:
        say(f"no shipped model for sigma {sigma:g}; using the one trained for sigma {entry['sigma']:g}")
    return entry["path"]


def mismatch(estimated: float, trained: float) -> str:
    """A warning to append when a photo's estimated noise is far from what the nearest shipped
    model was trained for (under half of it, or over 1.25 times: 8-bit clipping already makes heavy
    noise look weaker), else ''."""
    if estimated < trained / 2:
        return "; the photo is much less noisy than that model expects: it will come out smoother than it needs to be"
    if estimated > trained * 1.25:
        return "; the photo is much noisier than that model was trained for: expect noise left in it"
    return ""


def runnable_now(samples: int = 10, pause: float = 0.005) -> Optional[float]:
    """How many other tasks are running or waiting for a CPU right now (Linux: the kernel's
    count in /proc/loadavg, this process excluded; the least of a few samples, as one sample can
    catch a short-lived task), or None where the system does not say."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, IndexError, ValueError):
            return None
        if i + 1 < samples:
            time.sleep(pause)
    return float(max(0, min(counts)))


def free_cores() -> int:
    """CPU cores not already busy, at least 1. On a shared machine, more threads than free cores
    make every small op wait for a descheduled thread: measured in RESULTS.md, a busy 2-core box
    ran the network several times slower on 2 threads than on 1. Busy: the tasks running now
    (:func:`runnable_now`), not the 1-minute load average (only where the system has no such
    count), which still counts a user's previous `hinas denoise` for a minute after it ended."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = runnable_now()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except OSError:
            busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


def load_denoiser(path: str):
    """A model file as an inference-only callable on ``(1, C, H, W)`` tensors: eval mode,
    BatchNorm folded into the convolutions, channels-last weights (faster oneDNN convolutions
    on the CPU), on :func:`free_cores` threads unless ``OMP_NUM_THREADS`` says otherwise.
    Returns (net, spec, meta)."""
    import torch

    from hinas_core.inference import fold_batchnorm
    from hinas_core.models import load_model

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(free_cores())
    model, spec, meta = load_model(path, "cpu")
    return fold_batchnorm(model).to(memory_format=torch.channels_last), spec, meta


def check_channels(spec: dict, pixels: np.ndarray, model: str, src) -> None:
    """Refuse, with one line, a photo the model cannot take: a grey model denoises grey and (per
    opponent channel) colour photos; a colour model (``in_channels`` 3, trained on RGB such as
    de-raining) only colour ones - a grey photo is not what it learnt, so it is not guessed at."""
    from hinas_core.models import ModelError

    channels = spec.get("in_channels", 1)
    if channels not in (1, 3):
        raise ModelError(f"model file {model!r} takes {channels}-channel images; hinas denoise handles 1 (grey) or 3 (RGB)")
    if channels == 3 and pixels.ndim == 2:
        raise PhotoError(f"{src} is a grey photo; model file {model!r} takes colour (RGB) images "
                         "(convert the photo to RGB, or use a grey model)")


def denoise_file(src, dst, sigma=None, model: Optional[str] = None, say: Callable[[str], None] = print) -> str:
    """Denoise the photo ``src`` into the PNG ``dst``; returns a one-line summary.

    ``sigma``: a number (the shipped model for the nearest noise level), ``"auto"`` (estimate it
    from the photo first), or None with ``model`` (a model file from the retrain stage).
    Raises PhotoError / ModelError / ValueError with a one-line message.
    """
    if model is None:
        sigma = parse_sigma(str(sigma))
    net = spec = meta = None
    if model is not None or sigma != "auto":  # a bad model file is reported before the photo is read
        net, spec, meta = load_denoiser(model or shipped_model(sigma, say))
    photo = read_photo(src)
    if net is None:
        estimated = estimate_sigma(photo.pixels)
        net, spec, meta = load_denoiser(shipped_model(max(estimated, 1e-3), lambda _: None))
        say(f"estimated noise sigma {estimated:.1f} (0-255 scale); using the shipped model for sigma "
            f"{meta.get('sigma', '?'):g}{mismatch(estimated, float(meta.get('sigma', estimated)))}")
    check_channels(spec, photo.pixels, model or "the shipped model", src)
    if spec.get("in_channels", 1) == 3:  # a colour model (e.g. de-raining): RGB straight in
        import torch

        x = torch.from_numpy(np.ascontiguousarray(photo.pixels.transpose(2, 0, 1)))[None]
        with torch.inference_mode():
            photo.pixels = tiled(net, x.contiguous(memory_format=torch.channels_last))[0].permute(1, 2, 0).numpy()
    elif photo.pixels.ndim == 3:
        photo.pixels = denoise_rgb(lambda c: denoise_gray(net, c), photo.pixels)
    else:
        photo.pixels = denoise_gray(net, photo.pixels)
    write_photo(dst, photo)
    kind = "colour" if photo.pixels.ndim == 3 else "grey"
    bits = f", {photo.bits}-bit" if photo.bits != 8 else ""
    alpha = ", alpha kept" if photo.alpha is not None else ""
    return f"{src} -> {dst} ({kind}{bits}{alpha}; {spec['kind']} model, sigma {meta.get('sigma', '?')})"
