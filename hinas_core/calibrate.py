"""Re-fitting a trained network's output bias on training patches (issue #13, target 6).

A network trained under MSE + lambda (1 - SSIM) can come out with a brightness bias: its mean
output a grey level or so above the clean mean (the campaign's sigma-50 network: +1.06 on its
own training patches, +1.18 on Validation-V, +1.09 on test-200). The SSIM term barely sees such
a shift and the MSE term pays little for it, so training leaves it in the weights.

The end part's last convolution ends in one bias per output channel, added before the output
activation. With every other weight frozen, the training-set MSE as a function of that bias is
a smooth function of C numbers, so its minimum is found exactly:

* ``linear`` / ``residual`` output (``image = y`` or ``x + y``): the shift is the mean of
  ``clean - output`` per channel;
* ``sigmoid`` output (``image = sigmoid(y)``): Newton's method per channel on
  ``mean((sigmoid(y + b) - clean)^2)`` (Gauss-Newton curvature, a few steps).

This is least squares on training data of one parameter per channel, like re-estimating
BatchNorm statistics: no validation or test image is looked at, and the MSE on the patches it
was fitted to can only go down.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, List, Tuple

import torch
from torch import nn


@dataclass(frozen=True)
class BiasFit:
    """Attributes:
        shift: the change of the end conv's bias per output channel (added before the output
            activation).
        patches: how many training patches it was fitted on.
        offset_before, offset_after: mean output minus mean clean value on those patches, in
            grey levels (0-255 scale), without and with the shift.
        mse_before, mse_after: the mean squared error on those patches ([0, 1] scale).
    """

    shift: Tuple[float, ...]
    patches: int
    offset_before: float
    offset_after: float
    mse_before: float
    mse_after: float

    def to_dict(self) -> dict:
        return asdict(self)


def end_conv(model: nn.Module) -> nn.Conv2d:
    """The convolution whose bias :func:`fit_output_bias` moves (a HiNAS network's ``end``).

    Raises:
        ValueError: the model has no such layer (DnCNN and other baselines).
    """
    end = getattr(model, "end", None)
    if not isinstance(end, nn.Conv2d) or end.bias is None or getattr(model, "output", None) not in ("sigmoid", "residual", "linear"):
        raise ValueError(f"{type(model).__name__} has no end convolution with a bias before its output: "
                         "only HiNAS networks (hinas_core.network) can have their output bias re-fitted")
    return end


def _collect(model: nn.Module, batches: Iterable[Tuple[torch.Tensor, torch.Tensor]]):
    """End-conv outputs ``y``, noisy inputs and clean targets, each ``(C, N)`` in float64."""
    end = end_conv(model)
    ys: List[torch.Tensor] = []
    xs: List[torch.Tensor] = []
    cs: List[torch.Tensor] = []
    hook = end.register_forward_hook(lambda _m, _i, out: ys.append(out.detach()))
    device = end.weight.device
    try:
        with torch.no_grad():
            for noisy, clean in batches:  # (B, C, H, W) each, [0, 1]
                model(noisy.to(device))
                xs.append(noisy)
                cs.append(clean)
    finally:
        hook.remove()
    if not ys:
        raise ValueError("fit_output_bias needs at least one batch of training patches")

    def channels(ts: List[torch.Tensor]) -> torch.Tensor:
        t = torch.cat([v.double().cpu() for v in ts])  # (N, C, H, W)
        return t.transpose(0, 1).reshape(t.shape[1], -1)

    return channels(ys), channels(xs), channels(cs), sum(c.shape[0] for c in cs)


def _output(kind: str, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(y) if kind == "sigmoid" else x + y if kind == "residual" else y


def fit_output_bias(model: nn.Module, batches: Iterable[Tuple[torch.Tensor, torch.Tensor]],
                    newton_steps: int = 30) -> BiasFit:
    """The MSE-optimal shift of the end conv's bias on ``batches`` of ``(noisy, clean)`` training
    patches; the model is not changed (:func:`apply_output_bias` does that).

    Raises:
        ValueError: not a HiNAS network, or no batches.
    """
    y, x, c, patches = _collect(model, batches)  # checks that the model has an end conv
    kind = model.output
    if kind == "sigmoid":
        b = torch.zeros(y.shape[0], 1, dtype=torch.float64)
        for _ in range(newton_steps):
            p = torch.sigmoid(y + b)
            slope = p * (1 - p)
            step = ((p - c) * slope).mean(1, keepdim=True) / (slope ** 2).mean(1, keepdim=True).clamp_min(1e-12)
            b = b - step
            if step.abs().max() < 1e-9:
                break
    else:
        b = (c - _output(kind, y, x)).mean(1, keepdim=True)
    before, after = _output(kind, y, x), _output(kind, y + b, x)
    return BiasFit(shift=tuple(float(v) for v in b.flatten()), patches=patches,
                   offset_before=float((before - c).mean() * 255), offset_after=float((after - c).mean() * 255),
                   mse_before=float(((before - c) ** 2).mean()), mse_after=float(((after - c) ** 2).mean()))


def apply_output_bias(model: nn.Module, fit: BiasFit) -> None:
    """Add ``fit.shift`` to the model's end-conv bias, in place."""
    end = end_conv(model)
    if len(fit.shift) != end.bias.numel():
        raise ValueError(f"the fit has {len(fit.shift)} channel(s), the model's output {end.bias.numel()}")
    with torch.no_grad():
        end.bias += torch.tensor(fit.shift, dtype=end.bias.dtype, device=end.bias.device)
