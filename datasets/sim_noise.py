"""SIM-style realistic camera noise: a camera-pipeline simulator after Jaroensri et al. 2019.

This regenerates the *kind* of data HiNAS calls SIM1800 (the original set is private); results
on it are "SIM-style", not comparable to the paper's numbers. Recipe (``SIM_NOISE.md`` 3.1),
on values in [0, 1]:

1. **Linearise**: BSDS500 is 8-bit sRGB JPEG, not raw, so the clean sRGB image is taken to
   linear RGB by undoing the sRGB curve only (no camera-matrix/white-balance "unprocessing");
   the exposure step of the reference config is a no-op and is left out.
2. **Bayer mosaic** "G R / B G" with a random phase (dy, dx) in {0, 1}^2.
3. **Shot noise** ``k * sqrt(max(x, 0)) * N(0, 1)``, k ~ logU[0.01, 0.2] (same k for all colours),
   then **read noise** ``sigma_r * N(0, 1)``, sigma_r ~ logU[0.01, 0.1].
4. **Clip** to [0, 1] and **quantise to 14 bits**: ``floor(x * 2^14) / 2^14``.
5. **Bilinear demosaic**, clip.
6. **In-camera denoise in YUV** (BT.601): plus-shaped 3x3 median on Y, U, V; then a bilateral
   filter on Y guided by ``sqrt(Y)``, spatial sigma_s ~ logU[0.25, 1] px, range
   sigma_r ~ logU[0.1, 1] grid units = sigma_r / 32 in intensity (the reference's scikit-image
   scale); then a bilateral on U, V guided by ``sqrt`` of the filtered Y, spatial sigma_s * c_s with
   c_s ~ logU[8, 32], range (sigma_r / 32) * c_r with c_r ~ logU[0.1, 0.5]. Clip.
   (Filters with sigma_s <= 4 px are computed exactly, wider ones on a bilateral grid with at
   most 1024 range cells, see :func:`.camera_pipeline.joint_bilateral`; using ``sqrt`` of the
   filtered Y as the chroma guide is our reading of "guided by the filtered Y".)
7. **Unsharp mask** ``x + a * mask``, mask = x - GaussBlur(x, 4 px), kept where |mask| > 3/255,
   a ~ U[0, 0.25]. Clip.
8. **sRGB curve**, round to 8 bits.
9. **JPEG** with Pillow/libjpeg at Photoshop level q in {4, 5, 6, 7}, mapped to libjpeg quality
   50/60/70/80 and chroma subsampling 4:2:0 for levels 4-6, 4:4:4 for level 7 (Photoshop's
   convention). The quality mapping is an **approximation**: the reference uses Photoshop's own
   quantisation tables. The noisy image is the decoded 8-bit result.

The clean target is the clean image through the same sRGB curve: with an 8-bit sRGB source,
decoding and re-encoding round-trips exactly, so the target *is* the source crop.
Everything random comes from one ``numpy.random.Generator``: same seed, same pair.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from . import camera_pipeline as cp

RAW_BITS = 14
GRID_TO_INTENSITY = 1 / 32  # reference scikit-image fallback: bilateral-grid range units / 32
JPEG_QUALITY = {4: 50, 5: 60, 6: 70, 7: 80}  # Photoshop level -> libjpeg quality (approximation)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


@dataclass(frozen=True)
class SimNoiseParams:
    """One draw of the pipeline's parameters (ranges in the module docstring)."""

    bayer_dy: int
    bayer_dx: int
    shot_k: float
    read_sigma: float
    denoise_sigma_s: float
    denoise_sigma_r: float   # bilateral-grid units; intensity = value / 32
    chroma_ratio_s: float
    chroma_ratio_r: float
    sharpen_amount: float
    jpeg_level: int

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "SimNoiseParams":
        """Draw every parameter from its range (the order of draws is fixed)."""
        return cls(
            bayer_dy=int(rng.integers(0, 2)), bayer_dx=int(rng.integers(0, 2)),
            shot_k=_log_uniform(rng, 0.01, 0.2), read_sigma=_log_uniform(rng, 0.01, 0.1),
            denoise_sigma_s=_log_uniform(rng, 0.25, 1.0), denoise_sigma_r=_log_uniform(rng, 0.1, 1.0),
            chroma_ratio_s=_log_uniform(rng, 8.0, 32.0), chroma_ratio_r=_log_uniform(rng, 0.1, 0.5),
            sharpen_amount=float(rng.uniform(0.0, 0.25)), jpeg_level=int(rng.integers(4, 8)),
        )

    @property
    def jpeg_quality(self) -> int:
        return JPEG_QUALITY[self.jpeg_level]

    @property
    def jpeg_subsampling(self) -> str:
        return "4:4:4" if self.jpeg_level >= 7 else "4:2:0"

    def to_dict(self) -> dict:
        """All fields plus the derived JPEG quality and subsampling (for the pair manifest)."""
        return asdict(self) | {"jpeg_quality": self.jpeg_quality, "jpeg_subsampling": self.jpeg_subsampling}


def sensor_raw(linear_rgb: np.ndarray, p: SimNoiseParams, rng: np.random.Generator) -> np.ndarray:
    """Steps 2-4: noisy, clipped, 14-bit quantised Bayer mosaic ``(H, W)`` in [0, 1]."""
    raw = cp.mosaic(linear_rgb, (p.bayer_dy, p.bayer_dx))
    noise = rng.standard_normal((2,) + raw.shape)
    raw = raw + p.shot_k * np.sqrt(np.maximum(raw, 0.0)) * noise[0] + p.read_sigma * noise[1]
    return np.floor(np.clip(raw, 0.0, 1.0) * 2**RAW_BITS) / 2**RAW_BITS


def in_camera_denoise(rgb: np.ndarray, p: SimNoiseParams) -> np.ndarray:
    """Step 6: YUV median then bilateral filters, ``(H, W, 3)`` linear RGB in/out."""
    yuv = cp.median_plus(cp.rgb_to_yuv(rgb))
    y, uv = yuv[..., 0], yuv[..., 1:]
    sigma_r = p.denoise_sigma_r * GRID_TO_INTENSITY
    y = cp.joint_bilateral(y, np.sqrt(np.maximum(y, 0.0)), p.denoise_sigma_s, sigma_r)
    uv = cp.joint_bilateral(uv, np.sqrt(np.maximum(y, 0.0)), p.denoise_sigma_s * p.chroma_ratio_s,
                            sigma_r * p.chroma_ratio_r)
    return np.clip(cp.yuv_to_rgb(np.concatenate([y[..., None], uv], axis=-1)), 0.0, 1.0)


def isp_before_jpeg(raw: np.ndarray, p: SimNoiseParams) -> np.ndarray:
    """Steps 5-8: demosaic, denoise, sharpen, sRGB curve, 8 bits -> ``(H, W, 3)`` uint8."""
    rgb = np.clip(cp.demosaic_bilinear(raw, (p.bayer_dy, p.bayer_dx)), 0.0, 1.0)
    rgb = cp.unsharp_mask(in_camera_denoise(rgb, p), p.sharpen_amount)
    return cp.to_uint8(cp.linear_to_srgb(rgb))


def isp(raw: np.ndarray, p: SimNoiseParams) -> np.ndarray:
    """Steps 5-9: :func:`isp_before_jpeg`, then the JPEG round trip -> ``(H, W, 3)`` uint8."""
    return cp.jpeg_roundtrip(isp_before_jpeg(raw, p), p.jpeg_quality, p.jpeg_subsampling)


def simulate_camera_noise(clean: np.ndarray, rng: np.random.Generator,
                          params: SimNoiseParams | None = None) -> tuple[np.ndarray, SimNoiseParams]:
    """Run the whole pipeline on one clean image.

    Args:
        clean: ``(H, W, 3)`` uint8 sRGB clean image (H, W >= 2).
        rng: the only source of randomness (parameters, then noise).
        params: fixed parameters; None draws them from ``rng`` first.

    Returns:
        ``(noisy, params)``: noisy ``(H, W, 3)`` uint8 (JPEG-decoded sRGB) and the parameters used.
        The matching clean target is ``clean`` itself (see module docstring).
    """
    if clean.ndim != 3 or clean.shape[2] != 3 or clean.dtype != np.uint8:
        raise ValueError(f"simulate_camera_noise expects (H, W, 3) uint8 sRGB, got {clean.shape} {clean.dtype}")
    p = params if params is not None else SimNoiseParams.draw(rng)
    linear = cp.srgb_to_linear(clean.astype(np.float64) / 255.0)
    return isp(sensor_raw(linear, p, rng), p), p
