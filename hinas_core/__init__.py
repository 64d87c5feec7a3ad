"""hinas_core: the HiNAS search space, derivation and derived network (plain PyTorch).

No Ray, MLflow or Optuna here: those live in ``hinas.pipeline``.
"""
from .cells import Cell, MixedOp, derived_cell, mixed_cell
from .config import PRESETS, ConfigError, SpaceConfig, preset
from .genotype import Genotype, GenotypeError, derive_cell, known_genotypes, num_edges, path_probability, viterbi_path
from .lattice import Lattice
from .network import Supernet, Topology, build_network, count_parameters
from .ops import OPS

__all__ = [
    "OPS", "Cell", "MixedOp", "mixed_cell", "derived_cell", "Lattice", "Topology", "Supernet",
    "build_network", "count_parameters", "Genotype", "GenotypeError", "derive_cell", "viterbi_path",
    "path_probability", "num_edges", "known_genotypes", "SpaceConfig", "ConfigError", "PRESETS", "preset",
]
