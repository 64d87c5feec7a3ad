"""The candidate operations of the supercell (paper Sec. 2.1), in one table.

``OPS[name](channels, affine=..., act=...)`` builds the op. Every op keeps the shape
``(B, C, H, W)`` of its input (no down-sampling: the paper relies on dilation and
deformable sampling for receptive field). Every convolutional op is activation -> conv -> BN.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

ACTIVATIONS: Dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=False),
    # The official (journal-version) code uses LeakyReLU; the slope is our choice.
    "leaky_relu": lambda: nn.LeakyReLU(0.2, inplace=False),
}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}") from None


def deform_conv2d_sampled(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                          mask: torch.Tensor, recompute: Optional[bool] = None,
                          align_corners: bool = False) -> torch.Tensor:
    """Modulated deformable 3x3 convolution (stride 1, padding 1) by bilinear sampling.

    The same function as ``torchvision.ops.deform_conv2d(x, offset, weight, padding=1,
    mask=mask)`` (offsets as (dy, dx) per tap, row-major taps, zeros outside the image),
    written with one ``grid_sample`` over all 9 taps and one 1x1 convolution over
    (channel, tap). The sampled columns are 9x the input; with ``recompute`` (default: on
    CUDA) they are not kept for backward but sampled again there, so the op stores about
    what torchvision's kernel stores.

    ``align_corners`` only chooses how the sampling positions are normalised for
    ``grid_sample``; the function is the same. With True, CUDA runs cuDNN's bilinear sampler,
    whose offset gradient is less precise (relative error 3e-3 against torchvision, measured on
    an H200) and which is slower; with False (the default), PyTorch's own kernel (1e-6).

    Shapes: x (B, C, H, W); offset (B, 18, H, W); weight (O, C, 3, 3); mask (B, 9, H, W).
    """
    if recompute is None:
        recompute = x.is_cuda
    if recompute and torch.is_grad_enabled():
        return checkpoint(_sampled, x, offset, weight, mask, align_corners, use_reentrant=False, preserve_rng_state=False)
    return _sampled(x, offset, weight, mask, align_corners)


def _sampled(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
             align_corners: bool = False) -> torch.Tensor:
    b, c, h, w = x.shape
    o = weight.shape[0]
    # Sampling positions need float32 at least (bf16 resolves a pixel coordinate of 63 only to
    # 0.25): under bf16 autocast the sampling runs in float32 and the contraction in bf16.
    dtype = torch.promote_types(x.dtype, torch.float32)
    x, offset, mask = x.to(dtype), offset.to(dtype), mask.to(dtype)
    taps = torch.arange(9, device=x.device)
    ky = (taps // 3 - 1).to(dtype).view(1, 9, 1, 1)
    kx = (taps % 3 - 1).to(dtype).view(1, 9, 1, 1)
    ys = torch.arange(h, dtype=dtype, device=x.device).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=dtype, device=x.device).view(1, 1, 1, w)
    off = offset.reshape(b, 9, 2, h, w)
    py = ys + ky + off[:, :, 0]  # (B, 9, H, W): where tap k of output pixel (y, x) reads
    px = xs + kx + off[:, :, 1]
    if align_corners:  # -1/+1 are the first/last pixel centres: pixel p -> 2p/(n-1) - 1
        grid = torch.stack((px * (2.0 / max(w - 1, 1)) - 1, py * (2.0 / max(h - 1, 1)) - 1), dim=-1)
    else:  # -1/+1 are the outer pixel edges: pixel p -> (2p+1)/n - 1
        grid = torch.stack(((2 * px + 1) / w - 1, (2 * py + 1) / h - 1), dim=-1)
    grid = grid.view(b, 9 * h, w, 2)  # (x, y), taps stacked in H
    # One sampling pass for all 9 taps, then the contraction over (channel, tap) as a 1x1 conv.
    cols = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners)
    cols = cols.view(b, c, 9, h, w) * mask.unsqueeze(1)
    return F.conv2d(cols.view(b, c * 9, h, w), weight.reshape(o, c * 9, 1, 1))


def _on_default_stream(device: torch.device) -> bool:
    return torch.cuda.current_stream(device) == torch.cuda.default_stream(device)


class DeformConv2d(nn.Module):
    """Modulated deformable 3x3 convolution (DCNv2).

    A plain 3x3 conv predicts, per output pixel, 2*9 offsets and 9 modulation scalars.
    It is zero-initialised, so training starts from the regular sampling grid with every
    tap modulated by sigmoid(0) = 0.5, as in DCNv2.

    ``impl``: ``torchvision`` (``torchvision.ops.deform_conv2d``), ``sampled``
    (:func:`deform_conv2d_sampled`, the same function) or ``auto`` (the default): sampled on
    CPU, where torchvision's backward is several times slower, and on CUDA off the default
    stream, i.e. while a CUDA graph is warmed up or captured (torchvision's backward has
    been seen to fault there); torchvision otherwise.
    """

    IMPLS = ("auto", "torchvision", "sampled")

    def __init__(self, channels: int, kernel_size: int = 3, impl: str = "auto"):
        super().__init__()
        if kernel_size != 3:
            raise ValueError("DeformConv2d supports 3x3 kernels only")
        if impl not in self.IMPLS:
            raise ValueError(f"impl must be one of {self.IMPLS}, got {impl!r}")
        self.impl = impl
        self.recompute: Optional[bool] = None  # the sampled kernel's recompute (None: on CUDA)
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 3))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.register_parameter("bias", None)  # only set when a BatchNorm is folded in (inference)
        self.offset_mask = nn.Conv2d(channels, 27, 3, padding=1)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        om = self.offset_mask(x)  # (B, 27, H, W)
        offset, mask = om[:, :18], om[:, 18:].sigmoid()
        impl = self.impl
        if impl == "auto":
            impl = "torchvision" if x.is_cuda and _on_default_stream(x.device) else "sampled"
        if impl == "sampled":
            out = deform_conv2d_sampled(x, offset, self.weight, mask, self.recompute)
            return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)
        from torchvision.ops import deform_conv2d  # here, not at the top: torchvision costs ~1 s of import

        return deform_conv2d(x, offset, self.weight, self.bias, padding=1, mask=mask)


def configure_dcn(model: nn.Module, impl: Optional[str] = None, recompute: Optional[bool] = None) -> int:
    """Set the kernel (and the sampled kernel's recompute) of every :class:`DeformConv2d` in
    ``model``; returns how many there are. ``torch.compile`` needs a fixed choice (``sampled``,
    no recompute: the compiler fuses the sampling and plans memory itself)."""
    n = 0
    for m in model.modules():
        if isinstance(m, DeformConv2d):
            if impl is not None:
                if impl not in DeformConv2d.IMPLS:
                    raise ValueError(f"impl must be one of {DeformConv2d.IMPLS}, got {impl!r}")
                m.impl = impl
            m.recompute = recompute
            n += 1
    return n


class Zero(nn.Module):
    """The `none` op: no connection. Its output is never computed by a mixed edge."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class ActConvBN(nn.Sequential):
    """activation -> conv -> BN. A mixed edge applies the activation once for all its ops
    (they share it) and calls :meth:`after_activation` on the result."""

    def after_activation(self, a: torch.Tensor) -> torch.Tensor:
        return self[2](self[1](a))


def _act_conv_bn(conv: nn.Module, channels: int, affine: bool, act: str) -> ActConvBN:
    return ActConvBN(activation(act), conv, nn.BatchNorm2d(channels, affine=affine))


def conv3x3(c: int, affine: bool = True, act: str = "relu") -> nn.Module:
    return _act_conv_bn(nn.Conv2d(c, c, 3, padding=1, bias=False), c, affine, act)


def sep3x3(c: int, affine: bool = True, act: str = "relu") -> nn.Module:
    # Depthwise 3x3 then pointwise 1x1 (one separable conv, not DARTS's stacked pair).
    conv = nn.Sequential(
        nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
    )
    return _act_conv_bn(conv, c, affine, act)


def dil3x3(c: int, affine: bool = True, act: str = "relu") -> nn.Module:
    return _act_conv_bn(nn.Conv2d(c, c, 3, padding=2, dilation=2, bias=False), c, affine, act)


def def3x3(c: int, affine: bool = True, act: str = "relu") -> nn.Module:
    return _act_conv_bn(DeformConv2d(c), c, affine, act)


def skip(c: int, affine: bool = True, act: str = "relu") -> nn.Module:
    return nn.Identity()


def none(c: int, affine: bool = True, act: str = "relu") -> nn.Module:
    return Zero()


# The one op table. Order is the column order of alpha.
OPS: Dict[str, Callable[..., nn.Module]] = {
    "conv": conv3x3,
    "sep": sep3x3,
    "dil": dil3x3,
    "def": def3x3,
    "skip": skip,
    "none": none,
}

NONE = "none"
DEFAULT_OPS = tuple(OPS)


def check_op_names(op_names) -> tuple:
    """Validate a list of op names against :data:`OPS`; return it as a tuple."""
    if isinstance(op_names, (str, bytes)) or not isinstance(op_names, (list, tuple)):
        raise ValueError(f"op_names: expected a list of op names, got {op_names!r}")
    names = tuple(op_names)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise ValueError(f"op_names: op names must be strings, got {bad}")
    if not names:
        raise ValueError("op_names: at least one op is needed")
    unknown = [n for n in names if n not in OPS]
    if unknown:
        raise ValueError(f"op_names: unknown op(s) {unknown}; known ops are {list(OPS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"op_names: duplicated op in {list(names)}")
    if all(n == NONE for n in names):
        raise ValueError("op_names: needs at least one op other than 'none'")
    return names
