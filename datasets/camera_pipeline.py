"""Camera-pipeline operators for the SIM-style noise simulator (see :mod:`.sim_noise`).

Every operator works on float arrays in [0, 1]: RGB images are ``(H, W, 3)``, raw mosaics and
single channels ``(H, W)``. Pure numpy/scipy/Pillow, written for this project from the recipe
of Jaroensri et al. 2019 (``SIM_NOISE.md`` section 3.1). Approximations are named where they are.
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image
from scipy import ndimage

# Bayer pattern "G R / B G" (Jaroensri): channel index (0=R, 1=G, 2=B) at (y % 2, x % 2).
CFA = np.array([[1, 0], [2, 1]])
_PLUS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
# Bilinear demosaic kernels: G is interpolated from its 4 neighbours, R and B from 2 or 4.
_K_G = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=np.float64) / 4
_K_RB = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float64) / 4


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """Undo the sRGB transfer curve (IEC 61966-2-1), values in [0, 1]."""
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Apply the sRGB transfer curve (IEC 61966-2-1), values in [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 with rounding (values outside are clipped)."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def cfa_channels(h: int, w: int, phase: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` channel index of the Bayer pattern shifted by ``phase`` = (dy, dx) in {0, 1}."""
    dy, dx = phase
    return CFA[(np.arange(h)[:, None] + dy) % 2, (np.arange(w)[None, :] + dx) % 2]


def mosaic(rgb: np.ndarray, phase: tuple[int, int]) -> np.ndarray:
    """Sample one colour per pixel: ``(H, W, 3)`` -> ``(H, W)`` raw."""
    ch = cfa_channels(rgb.shape[0], rgb.shape[1], phase)
    return np.take_along_axis(rgb, ch[..., None], axis=2)[..., 0]


def demosaic_bilinear(raw: np.ndarray, phase: tuple[int, int]) -> np.ndarray:
    """Bilinear ("naive") demosaic ``(H, W)`` -> ``(H, W, 3)``, as normalised convolution.

    Each channel is the kernel-weighted mean of the known samples around a pixel: identical to
    textbook bilinear interpolation inside the image, known samples are kept exactly, and the
    border needs no padding rule (only the samples that exist are averaged).
    """
    ch = cfa_channels(raw.shape[0], raw.shape[1], phase)
    out = np.empty(raw.shape + (3,), dtype=raw.dtype)
    for c, k in ((0, _K_RB), (1, _K_G), (2, _K_RB)):
        known = (ch == c).astype(raw.dtype)
        num = ndimage.convolve(raw * known, k, mode="constant")
        den = ndimage.convolve(known, k, mode="constant")
        out[..., c] = num / den
    return out


def rgb_to_yuv(rgb: np.ndarray) -> np.ndarray:
    """BT.601 analogue YUV: Y = .299R + .587G + .114B, U = .492(B - Y), V = .877(R - Y)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return np.stack([y, 0.492 * (b - y), 0.877 * (r - y)], axis=-1)


def yuv_to_rgb(yuv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_yuv`."""
    y, u, v = yuv[..., 0], yuv[..., 1], yuv[..., 2]
    b = y + u / 0.492
    r = y + v / 0.877
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    return np.stack([r, g, b], axis=-1)


def median_plus(x: np.ndarray) -> np.ndarray:
    """Median over the plus-shaped 3x3 footprint, per channel of ``(H, W)`` or ``(H, W, C)``."""
    if x.ndim == 2:
        return ndimage.median_filter(x, footprint=_PLUS, mode="mirror")
    return np.stack([median_plus(x[..., c]) for c in range(x.shape[2])], axis=-1)


def joint_bilateral(values: np.ndarray, guide: np.ndarray, sigma_s: float, sigma_r: float) -> np.ndarray:
    """Bilateral filter of ``values`` (``(H, W)`` or ``(H, W, C)``) with range weights from ``guide``.

    Weight of offset d: ``exp(-|d|^2 / 2 sigma_s^2) * exp(-(g(p + d) - g(p))^2 / 2 sigma_r^2)``.
    Narrow filters (``sigma_s <= 4``: all luma ones, the narrowest chroma ones) are computed
    exactly over a ``ceil(3 sigma_s)``-radius window with mirrored borders; wider ones (chroma,
    sigma_s up to 32 px) use a bilateral grid, as the reference code does (:func:`bilateral_grid`).
    """
    vals = values if values.ndim == 3 else values[..., None]
    out = _bilateral_direct(vals, guide, sigma_s, sigma_r) if sigma_s <= 4 else bilateral_grid(vals, guide, sigma_s, sigma_r)
    return out if values.ndim == 3 else out[..., 0]


def _bilateral_direct(vals: np.ndarray, guide: np.ndarray, sigma_s: float, sigma_r: float) -> np.ndarray:
    r = max(1, math.ceil(3 * sigma_s))
    h, w = guide.shape
    g_pad = np.pad(guide, r, mode="symmetric")
    v_pad = np.pad(vals, ((r, r), (r, r), (0, 0)), mode="symmetric")
    num, den = np.zeros_like(vals), np.zeros_like(guide)
    inv_s, inv_r = -0.5 / sigma_s**2, -0.5 / sigma_r**2
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            ys, xs = slice(r + dy, r + dy + h), slice(r + dx, r + dx + w)
            wgt = np.exp(inv_s * (dy * dy + dx * dx) + inv_r * (g_pad[ys, xs] - guide) ** 2)
            num += wgt[..., None] * v_pad[ys, xs]
            den += wgt
    return num / den[..., None]


def bilateral_grid(vals: np.ndarray, guide: np.ndarray, sigma_s: float, sigma_r: float,
                   max_bins: int = 1024) -> np.ndarray:
    """Bilateral filter by the bilateral grid (Chen, Paris, Durand 2007): ``(H, W, C)`` values.

    The homogeneous values ``(v, 1)`` are splatted trilinearly into a grid whose cells are
    ``sigma_s`` px by ``sigma_r`` guide units, blurred with a unit Gaussian per axis, and sliced
    trilinearly at each pixel. Approximation (documented): at most ``max_bins`` range cells,
    i.e. range cells are at least (guide range) / ``max_bins`` wide - this bounds memory for
    the smallest drawn chroma range sigmas (below about 5e-4), which are widened to that.
    """
    h, w, c = vals.shape
    g0 = float(guide.min())
    span = float(guide.max()) - g0
    sr = max(sigma_r, span / max_bins, 1e-12)
    pad = 2
    coords = [np.broadcast_to(np.arange(h)[:, None] / sigma_s, (h, w)) + pad,
              np.broadcast_to(np.arange(w)[None, :] / sigma_s, (h, w)) + pad,
              (guide - g0) / sr + pad]
    shape = tuple(int(np.ceil(x.max())) + pad + 2 for x in coords)
    base = [np.floor(x).astype(np.int64) for x in coords]
    frac = [x - b for x, b in zip(coords, base)]
    homog = np.concatenate([vals, np.ones((h, w, 1))], axis=-1).reshape(-1, c + 1)
    corners = []
    for oy in (0, 1):
        for ox in (0, 1):
            for oz in (0, 1):
                wgt = ((frac[0] if oy else 1 - frac[0]) * (frac[1] if ox else 1 - frac[1])
                       * (frac[2] if oz else 1 - frac[2])).ravel()
                flat = np.ravel_multi_index((base[0] + oy, base[1] + ox, base[2] + oz), shape).ravel()
                corners.append((flat, wgt))
    size = int(np.prod(shape))
    grid = np.zeros((c + 1, size))
    for flat, wgt in corners:
        for k in range(c + 1):
            grid[k] += np.bincount(flat, weights=wgt * homog[:, k], minlength=size)
    grid = np.stack([ndimage.gaussian_filter(g.reshape(shape), 1.0, mode="constant", truncate=3.0).ravel()
                     for g in grid])
    out = sum(wgt[:, None] * grid[:, flat].T for flat, wgt in corners)
    return (out[:, :c] / out[:, c:]).reshape(h, w, c)


def unsharp_mask(x: np.ndarray, amount: float, sigma: float = 4.0, threshold: float = 3 / 255) -> np.ndarray:
    """``x + amount * mask`` with ``mask = x - GaussianBlur(x, sigma)`` where ``|mask| > threshold``."""
    blur = np.stack([ndimage.gaussian_filter(x[..., c], sigma, mode="mirror") for c in range(x.shape[2])], axis=-1)
    mask = x - blur
    mask[np.abs(mask) <= threshold] = 0.0
    return np.clip(x + amount * mask, 0.0, 1.0)


def jpeg_roundtrip(rgb8: np.ndarray, quality: int, subsampling: str) -> np.ndarray:
    """Encode ``(H, W, 3)`` uint8 as JPEG with Pillow (libjpeg) and decode it again (uint8)."""
    buf = io.BytesIO()
    Image.fromarray(rgb8).save(buf, format="JPEG", quality=int(quality),
                               subsampling={"4:4:4": 0, "4:2:0": 2}[subsampling])
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
