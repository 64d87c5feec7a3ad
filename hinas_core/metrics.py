"""PSNR and SSIM, defined once for training, validation, evaluation and reports.

Conventions
-----------
* Evaluation metrics (:func:`psnr`, :func:`ssim`) take images on the **0-255 scale**, shaped
  ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)``, and clip the estimate to [0, 255] first (the
  paper scores clipped outputs). They compute in float64 and agree with scikit-image's
  ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255)`` and ``peak_signal_noise_ratio(..., data_range=255)``.
* :func:`ssim_map_mean` is the differentiable core used by the training loss (Eq. 8); it takes
  any ``data_range`` and works on ``(B, C, H, W)`` tensors of any float dtype.

Colour images are scored either as they are (PSNR over all pixels and channels, SSIM averaged
over channels) or, as de-raining papers do, on the Y channel of YCbCr (:func:`rgb_to_y`; which
one is the data config's ``metric``).

SSIM follows Wang et al. 2004: an 11x11 Gaussian window (sigma 1.5, truncated at 3.5 sigma as
scikit-image does), K1 = 0.01, K2 = 0.03, population (not sample) covariances, averaged over the
"valid" region, i.e. the pixels at least 5 away from every border.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Metric names shared by trainables, schedulers, MLflow and reports.
PSNR = "psnr"
SSIM = "ssim"
VAL_PSNR = "val_psnr"
VAL_SSIM = "val_ssim"

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _gaussian_window(sigma: float, truncate: float, dtype, device) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)  # scipy.ndimage's rule, as scikit-image uses it
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _as_bchw(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 2:
        return x[None, None]
    if x.dim() == 3:
        return x[None]
    if x.dim() == 4:
        return x
    raise ValueError(f"expected an image of shape (H, W), (C, H, W) or (B, C, H, W), got {tuple(x.shape)}")


def ssim_map_mean(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per image, differentiable.

    Args:
        x, y: ``(B, C, H, W)`` tensors of the same shape, values in ``[0, data_range]``;
            H and W must be at least 11 (the window).
        data_range: the dynamic range of the values (1.0 for [0, 1] images, 255 for 8-bit).

    Returns:
        ``(B,)`` tensor: SSIM averaged over channels and the valid region of each image.
    """
    if x.shape != y.shape:
        raise ValueError(f"SSIM needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    b, c, h, w = x.shape
    g = _gaussian_window(SSIM_SIGMA, SSIM_TRUNCATE, x.dtype, x.device)
    k = g.numel()
    if h < k or w < k:
        raise ValueError(f"SSIM needs images of at least {k}x{k} pixels, got {h}x{w}")
    # Separable Gaussian filter over the five moments at once: (B*C, 5, H, W) -> valid region.
    stack = torch.stack([x, y, x * x, y * y, x * y], dim=2).reshape(b * c, 5, h, w)
    gh = g.view(1, 1, 1, k).expand(5, 1, 1, k)
    gv = g.view(1, 1, k, 1).expand(5, 1, k, 1)
    m = F.conv2d(F.conv2d(stack, gh, groups=5), gv, groups=5)
    ux, uy, uxx, uyy, uxy = m.unbind(dim=1)
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.reshape(b, c, -1).mean(dim=(1, 2))


def ssim(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM of images on the 0-255 scale (estimate clipped), per image: shape ``(B,)``."""
    est = _as_bchw(estimate).double().clamp(0, 255)
    ref = _as_bchw(target).double()
    return ssim_map_mean(est, ref, data_range=255.0)


def psnr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images on the 0-255 scale (estimate clipped), per image: shape ``(B,)``.

    A perfect estimate gives ``inf``.
    """
    est = _as_bchw(estimate).double().clamp(0, 255)
    ref = _as_bchw(target).double()
    if est.shape != ref.shape:
        raise ValueError(f"PSNR needs equal shapes, got {tuple(est.shape)} and {tuple(ref.shape)}")
    mse = (est - ref).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(255.0**2 / mse)


# ITU-R BT.601 Y of YCbCr for RGB on the 0-255 scale, as MATLAB's rgb2ycbcr computes it for
# double images (Y = 16 + 65.481 R + 128.553 G + 24.966 B with R, G, B in [0, 1]), not rounded:
# the Y channel on which de-raining papers score PSNR/SSIM (e.g. PReNet's statistic/statistic_rain*.m:
# rgb2ycbcr(im2double(...)), channel 1). Y spans [16, 235].
Y_OFFSET = 16.0
Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)


def rgb_to_y(rgb: torch.Tensor) -> torch.Tensor:
    """Y of YCbCr (BT.601, studio range) of RGB images on the 0-255 scale.

    Args:
        rgb: ``(3, H, W)`` or ``(B, 3, H, W)``, values in [0, 255] (clip an estimate first).

    Returns:
        ``(1, H, W)`` or ``(B, 1, H, W)`` in float64, values in [16, 235].
    """
    x = _as_bchw(rgb)
    if x.shape[1] != 3:
        raise ValueError(f"rgb_to_y needs 3 channels (RGB), got {x.shape[1]} in {tuple(rgb.shape)}")
    w = torch.tensor(Y_WEIGHTS, dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
    y = Y_OFFSET + (x.double() * w).sum(dim=1, keepdim=True)
    return y if rgb.dim() == 4 else y[0]


def psnr_from_mse(mse: float, data_range: float = 255.0) -> float:
    """PSNR in dB for a mean squared error on a scale whose peak is ``data_range``."""
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)
