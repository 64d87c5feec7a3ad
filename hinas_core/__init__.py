"""hinas_core: the HiNAS search space, derivation and derived network (plain PyTorch).

No Ray, MLflow or Optuna here: those live in ``hinas.pipeline``. The names below load on first
use (PEP 562), so that importing a light submodule (``hinas_core.fsutil``, ``hinas_core.config``)
does not import torch - ``hinas --help`` stays fast.
"""
from .lazy import lazy_exports

_MODULES = {
    ".cells": ("Cell", "MixedOp", "derived_cell", "mixed_cell"),
    ".config": ("PRESETS", "ConfigError", "SpaceConfig", "preset"),
    ".genotype": ("Genotype", "GenotypeError", "derive_cell", "known_genotypes", "num_edges", "path_probability",
                  "viterbi_path"),
    ".lattice": ("Lattice",),
    ".network": ("Supernet", "Topology", "build_network", "count_parameters"),
    ".ops": ("OPS",),
}

__all__ = [
    "OPS", "Cell", "MixedOp", "mixed_cell", "derived_cell", "Lattice", "Topology", "Supernet",
    "build_network", "count_parameters", "Genotype", "GenotypeError", "derive_cell", "viterbi_path",
    "path_probability", "num_edges", "known_genotypes", "SpaceConfig", "ConfigError", "PRESETS", "preset",
]


__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
