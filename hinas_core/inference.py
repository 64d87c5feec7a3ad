"""Inference-only rewrites of a trained network: the same function, fewer kernels.

:func:`fold_batchnorm` folds every BatchNorm that directly follows a convolution into that
convolution's weights and bias (valid in eval mode, where BN is a fixed per-channel affine
map), and replaces the BN with an identity. Outputs are unchanged up to float rounding.
:func:`keep_freed_memory` stops a CPU inference process from handing its feature maps back
to the kernel between layers.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .ops import DeformConv2d


def _last_conv(module: nn.Module) -> Optional[nn.Module]:
    if isinstance(module, (nn.Conv2d, DeformConv2d)):
        return module
    if isinstance(module, nn.Sequential) and len(module):
        return _last_conv(module[-1])
    return None


@torch.no_grad()
def _fold(conv: nn.Module, bn: nn.BatchNorm2d) -> None:
    scale = torch.rsqrt(bn.running_var + bn.eps)
    shift = -bn.running_mean * scale
    if bn.affine:
        scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold each ``conv -> BatchNorm2d`` pair inside an ``nn.Sequential`` (in place); returns the
    model in eval mode. Only for inference: the folded model must not be trained further."""
    model.eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for first, second in zip(names, names[1:]):
            bn, conv = seq._modules[second], _last_conv(seq._modules[first])
            if isinstance(bn, nn.BatchNorm2d) and conv is not None and bn.track_running_stats:
                _fold(conv, bn)
                seq._modules[second] = nn.Identity()
    return model


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Make this process keep the memory it frees (glibc: no mmap for large blocks, no trimming
    of the heap) instead of handing every large block back to the kernel. A CPU forward pass
    frees and allocates feature maps of 100+ MB layer after layer; returned to the kernel, each
    one is page-faulted in again (RESULTS.md: a third of `hinas denoise`'s time in the kernel).
    For one-shot processes only (`hinas denoise`, `hinas evaluate`): the process never shrinks.
    Returns whether the C library took the settings (False where it has no ``mallopt``, e.g.
    macOS or musl)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
