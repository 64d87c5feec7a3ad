"""The search and training loss (paper Eq. 7-8).

``loss = ||f(x) - y||^2 + lambda * log10(1 / ssim(f(x), y))``, lambda = 0.5.

The squared error is the per-pixel mean (so the two terms are on comparable scales for
[0, 1] images), SSIM is :func:`hinas_core.metrics.ssim_map_mean` on [0, 1] images. The
official journal code averages the two terms instead of adding them: ``average=True``.
"""
from __future__ import annotations

import torch
from torch import nn

from .metrics import ssim_map_mean

SSIM_FLOOR = 1e-4  # SSIM can reach 0 or below early in training; log10 needs it positive


class HiNASLoss(nn.Module):
    def __init__(self, ssim_weight: float = 0.5, average: bool = False):
        super().__init__()
        if ssim_weight < 0:
            raise ValueError(f"ssim_weight (lambda) must be >= 0, got {ssim_weight}")
        self.ssim_weight = float(ssim_weight)
        self.average = average

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args: ``(B, C, H, W)`` tensors in [0, 1] (H, W >= 11 when lambda > 0). Returns a scalar."""
        mse = (estimate - target).pow(2).mean()
        if self.ssim_weight == 0:
            return mse
        s = ssim_map_mean(estimate.float(), target.float(), data_range=1.0).mean()
        ssim_term = -torch.log10(s.clamp_min(SSIM_FLOOR))
        total = mse + self.ssim_weight * ssim_term
        return total / 2 if self.average else total
