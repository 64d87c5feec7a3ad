"""The search-space configuration: one frozen dataclass, validated once.

The defaults are the paper's CVPR denoising preset (4 layers x 5 nodes, W = 10, widths
W/2W/4W, six ops, cell sharing). The official code's journal-version choices are switches
(see SPEC.md "The official code differs from the paper"), each defaulting to the CVPR choice.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Tuple

from .ops import ACTIVATIONS, DEFAULT_OPS, check_op_names

WIDTH_MODES = ("searched", "w40", "wm")  # Table 1: searched widths, all 40, doubling from 10
OUTPUTS = ("sigmoid", "residual", "linear")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message names the key."""


def check_keys(section: str, data: Mapping[str, Any], cls) -> None:
    """Refuse keys of ``data`` that are not fields of the dataclass ``cls``, naming the known ones."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {unknown}; known keys are {sorted(known)}")


@dataclass(frozen=True)
class SpaceConfig:
    """The supernet / search space.

    Attributes:
        layers: L, cells on the width path (paper: 4 for denoising, 3 for de-raining).
        nodes: N, nodes per cell (paper: 5 for denoising, 4 for de-raining).
        base_width: W, channels per node at level 0 (paper: 10 during search).
        level_factors: width of level i is ``round(W * level_factors[i])``
            (CVPR: 1, 2, 4; journal code: 1, 1.5, 2).
        ops: candidate ops, columns of alpha (drop ``def`` for the journal version).
        cell_sharing: Eq. 5 (one cell per layer and level, inputs summed first) when True;
            the Auto-DeepLab form Eq. 6 (one cell per incoming level, summed after) when False.
        tied_cells: one genotype for every layer (CVPR) or one per layer (journal).
        activation: ``relu`` (CVPR) or ``leaky_relu`` (journal).
        output: ``sigmoid`` (CVPR: image = sigmoid(conv)), ``residual`` (journal: image =
            input + conv, the end conv zero-initialised so the network starts as the identity)
            or ``linear``.
        width_mode: ``searched`` (beta + Viterbi), or a fixed path for Table 1's ablations:
            ``w40`` (every layer 40 channels per node) and ``wm`` (10, 20, 40, ... per node).
        in_channels: image channels (1 = grayscale).
    """

    layers: int = 4
    nodes: int = 5
    base_width: int = 10
    level_factors: Tuple[float, ...] = (1.0, 2.0, 4.0)
    ops: Tuple[str, ...] = DEFAULT_OPS
    cell_sharing: bool = True
    tied_cells: bool = True
    activation: str = "relu"
    output: str = "sigmoid"
    width_mode: str = "searched"
    in_channels: int = 1

    def __post_init__(self):
        for name in ("layers", "nodes", "base_width", "in_channels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {v!r}")
        for name in ("cell_sharing", "tied_cells"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: expected true or false, got {getattr(self, name)!r}")
        factors = self.level_factors
        if isinstance(factors, (str, bytes)) or not isinstance(factors, (list, tuple)) or not factors:
            raise ConfigError(f"level_factors: expected a non-empty list of numbers, got {factors!r}")
        if any(isinstance(f, bool) or not isinstance(f, (int, float)) or f <= 0 for f in factors):
            raise ConfigError(f"level_factors: expected positive numbers, got {list(factors)}")
        object.__setattr__(self, "level_factors", tuple(float(f) for f in factors))
        if isinstance(self.ops, (str, bytes)):
            raise ConfigError(f"ops: expected a list of op names, got {self.ops!r}")
        try:
            object.__setattr__(self, "ops", check_op_names(self.ops))
        except ValueError as exc:
            raise ConfigError(str(exc).replace("op_names", "ops")) from None
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation: {self.activation!r} is not one of {sorted(ACTIVATIONS)}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"output: {self.output!r} is not one of {list(OUTPUTS)}")
        if self.width_mode not in WIDTH_MODES:
            raise ConfigError(f"width_mode: {self.width_mode!r} is not one of {list(WIDTH_MODES)}")

    @property
    def widths(self) -> Tuple[int, ...]:
        """Channels per node at each level of the lattice (searched) or of the fixed path."""
        if self.width_mode == "w40":
            return (40,)
        if self.width_mode == "wm":
            return tuple(10 * 2**i for i in range(self.layers))
        return tuple(max(1, round(self.base_width * f)) for f in self.level_factors)

    @property
    def fixed_levels(self) -> Tuple[int, ...] | None:
        """The fixed width path of the w40 / wm ablations; None when widths are searched."""
        if self.width_mode == "w40":
            return (0,) * self.layers
        if self.width_mode == "wm":
            return tuple(range(self.layers))
        return None

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "SpaceConfig":
        data = dict(data or {})
        check_keys("space", data, cls)
        for key in ("level_factors", "ops"):
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        return cls(**data)


PRESETS = {
    # Paper Sec. 3.1: the denoising supernet.
    "denoise": SpaceConfig(),
    # Paper Sec. 3.4: the de-raining supernet.
    "derain": SpaceConfig(layers=3, nodes=4),
    # The official journal-version code's choices, for the ablation.
    "journal": SpaceConfig(layers=3, nodes=4, level_factors=(1.0, 1.5, 2.0),
                           ops=("conv", "sep", "dil", "skip", "none"), tied_cells=False,
                           activation="leaky_relu", output="residual"),
    # Small enough for CPU tests and the quickstart.
    "tiny": SpaceConfig(layers=2, nodes=2, base_width=4),
}


def preset(name: str) -> SpaceConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown space preset {name!r}; known presets are {sorted(PRESETS)}") from None
