"""DnCNN (Zhang et al., TIP 2017), the baseline trained by the same retrain stage.

``depth`` conv layers of ``width`` channels: conv+ReLU, (depth-2) x conv+BN+ReLU, conv; it
predicts the noise and returns ``x - noise`` (residual learning). depth 17, width 64 has
0.56 M parameters for gray images, the size of the paper's found network (0.63 M).
Images are ``(B, C, H, W)`` in [0, 1] (noisy inputs may leave that range).
"""
from __future__ import annotations

import torch
from torch import nn


class DnCNN(nn.Module):
    def __init__(self, depth: int = 17, width: int = 64, in_channels: int = 1):
        super().__init__()
        if depth < 3 or width < 1 or in_channels < 1:
            raise ValueError(f"DnCNN needs depth >= 3 and positive width/channels, got {depth}, {width}, {in_channels}")
        layers = [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, in_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)
