"""Trainable denoisers by spec, and self-describing model files.

A *model spec* is a small JSON-able dict that rebuilds the network alone:

* ``{"kind": "hinas", "genotype": {...}, "width": 18, "in_channels": 1, "activation": "relu",
  "output": "sigmoid"}`` - the network derived from a genotype (:func:`build_network`); with
  ``"aspp": true``, an ASPP block in its end part (absent means false);
* ``{"kind": "dncnn", "depth": 17, "width": 64, "in_channels": 1}`` - the DnCNN baseline.

A model file (:func:`save_model`) holds the spec, the weights and free-form metadata, as plain
tensors and JSON text, loaded with ``torch.load(weights_only=True)``: opening one never runs
code from it.
"""
from __future__ import annotations

import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from .dncnn import DnCNN
from .fsutil import atomic_file
from .genotype import Genotype, GenotypeError
from .network import build_network, count_parameters

MODEL_FORMAT = 1


class ModelError(ValueError):
    """A model spec or model file is invalid; the message names the field or the file."""


def _hinas(spec: Mapping[str, Any]) -> nn.Module:
    try:
        genotype = Genotype.from_dict(spec["genotype"])
    except GenotypeError as exc:
        raise ModelError(f"model spec: {exc}") from None
    if not isinstance(spec.get("aspp", False), bool):
        raise ModelError(f"model spec: aspp: expected true or false, got {spec['aspp']!r}")
    return build_network(genotype, width=spec.get("width"), in_channels=spec.get("in_channels", 1),
                         activation=spec.get("activation", "relu"), output=spec.get("output", "sigmoid"),
                         aspp=spec.get("aspp", False))


def _dncnn(spec: Mapping[str, Any]) -> nn.Module:
    return DnCNN(depth=spec.get("depth", 17), width=spec.get("width", 64), in_channels=spec.get("in_channels", 1))


MODELS = {"hinas": (_hinas, {"kind", "genotype", "width", "in_channels", "activation", "output", "aspp"}),
          "dncnn": (_dncnn, {"kind", "depth", "width", "in_channels"})}


def build_model(spec: Mapping[str, Any]) -> nn.Module:
    """The network a spec describes; raises :class:`ModelError` naming an unknown kind or key."""
    if not isinstance(spec, Mapping):
        raise ModelError(f"model spec: expected a mapping, got {type(spec).__name__}")
    kind = spec.get("kind")
    if kind not in MODELS:
        raise ModelError(f"model spec: unknown kind {kind!r}; known kinds are {sorted(MODELS)}")
    factory, keys = MODELS[kind]
    unknown = sorted(set(spec) - keys)
    if unknown:
        raise ModelError(f"model spec: unknown key(s) {unknown} for kind {kind!r}")
    try:
        return factory(spec)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model spec ({kind}): {exc}") from None


def hinas_spec(genotype: Genotype, width: Optional[int] = None, target_params: Optional[int] = None,
               in_channels: int = 1, activation: str = "relu", output: str = "sigmoid",
               aspp: bool = False) -> Dict[str, Any]:
    """A spec for a genotype's network; with ``target_params``, the width whose network is closest."""
    if target_params:
        width = calibrate_width(genotype, target_params, in_channels, activation, output, aspp=aspp)
    spec = {"kind": "hinas", "genotype": genotype.to_dict(), "width": width, "in_channels": in_channels,
            "activation": activation, "output": output}
    return {**spec, "aspp": True} if aspp else spec  # without ASPP, the spec every earlier model file has


def calibrate_width(genotype: Genotype, target_params: int, in_channels: int = 1,
                    activation: str = "relu", output: str = "sigmoid", max_width: int = 256, aspp: bool = False) -> int:
    """The level-0 width whose derived network has the parameter count closest to the target."""
    def params(w: int) -> int:
        return count_parameters(build_network(genotype, width=w, in_channels=in_channels,
                                              activation=activation, output=output, aspp=aspp))
    lo, hi = 1, max_width  # parameters grow with width: bisect for the first width >= target
    while lo < hi:
        mid = (lo + hi) // 2
        if params(mid) < target_params:
            lo = mid + 1
        else:
            hi = mid
    candidates = [w for w in (lo - 1, lo) if w >= 1]
    return min(candidates, key=lambda w: abs(params(w) - target_params))


def save_model(path, spec: Mapping[str, Any], model: nn.Module, meta: Optional[Mapping[str, Any]] = None) -> Path:
    """Write spec + weights + metadata atomically (a crash never leaves a truncated file)."""
    path = Path(path)
    payload = {"format": MODEL_FORMAT, "spec": json.dumps(dict(spec)), "meta": json.dumps(dict(meta or {}), default=str),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_tensors(path, what: str = "checkpoint", map_location: torch.device | str = "cpu") -> Any:
    """``torch.load`` restricted to tensors and plain data (``weights_only=True``): a file that
    pickles anything else is refused, never executed. The one loader of model files and of the
    search/retrain checkpoints; raises :class:`ModelError` naming the file (``what`` says which
    kind of file it is)."""
    path = Path(path)
    name = f"{what} {str(path)!r}"
    if not path.is_file():
        raise ModelError(f"{name} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise ModelError(f"{name} cannot be read: not a PyTorch file (truncated, or another kind of file)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # the weights-only unpickler met a global it does not allow
        wanted = re.search(r"GLOBAL ([\w.]+)", str(exc))
        raise ModelError(f"{name} cannot be read: it pickles objects other than tensors and plain data"
                         f"{f' ({wanted.group(1)})' if wanted else ''}; refused without loading them") from None
    except Exception as exc:  # a damaged archive: zip, record or storage errors
        raise ModelError(f"{name} cannot be read: truncated or corrupt ({str(exc).splitlines()[0]})") from None


def load_model(path, device: torch.device | str = "cpu") -> Tuple[nn.Module, Dict[str, Any], Dict[str, Any]]:
    """Rebuild a model file: ``(model in eval mode, spec, meta)``. Never executes code from the file."""
    path = Path(path)
    payload = load_tensors(path, "model file")
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT or "state_dict" not in payload:
        raise ModelError(f"model file {str(path)!r} is not a hinas model file (format {MODEL_FORMAT})")
    try:
        spec, meta = json.loads(payload["spec"]), json.loads(payload.get("meta") or "{}")
    except (TypeError, RecursionError, json.JSONDecodeError) as exc:
        raise ModelError(f"model file {str(path)!r}: corrupt spec ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"model file {str(path)!r}: corrupt metadata (expected a JSON object)")
    model = build_model(spec)
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0] if lines else type(exc).__name__  # torch: a heading, then the mismatches
        raise ModelError(f"model file {str(path)!r}: weights do not fit the architecture its spec describes "
                         f"({detail[:200]})") from None
    return model.to(device).eval(), spec, meta
