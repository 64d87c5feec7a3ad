"""The genotype: what a search finds, and the two pure functions that derive it.

* :func:`derive_cell` keeps, for every node, its two strongest inputs (paper Sec. 2.1).
* :func:`viterbi_path` picks the maximum-probability width path through the lattice, reading
  beta as transition probabilities (Sec. 2.2, "Deriving the final architecture").
* :class:`Genotype` holds the result, validates itself and round-trips through JSON.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from .fsutil import atomic_file
from .ops import NONE, OPS

Edge = Tuple[str, int]  # (op name, input index): 0 = h_{l-2}, 1 = h_{l-1}, 2.. = earlier nodes
CellGenotype = Tuple[Tuple[Edge, Edge], ...]

GENOTYPE_FORMAT = 1
_GENOTYPE_DIR = Path(__file__).with_name("genotypes")


class GenotypeError(ValueError):
    """A genotype (or its JSON) is malformed; the message names the field."""


def num_edges(num_nodes: int) -> int:
    """Edges of a supercell with ``num_nodes`` nodes: node i has i + 2 inputs."""
    return sum(i + 2 for i in range(num_nodes))


def _to_array(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def derive_cell(alpha, op_names: Sequence[str], num_nodes: int) -> List[List[Edge]]:
    """Keep the two strongest inputs of every node, each with its strongest op.

    Args:
        alpha: ``(E, K)`` edge weights, ``E = sum(i + 2 for i < num_nodes)`` rows ordered node
            by node and, within node i, by input (0 = h_{l-2}, 1 = h_{l-1}, 2 + j = node j);
            ``K = len(op_names)`` columns. Values are compared as given: the supernet passes
            softmax(alpha) per row, as DARTS does.
        op_names: the op of each column.
        num_nodes: N.

    Returns:
        For each node, ``[(op_name, input_index), (op_name, input_index)]`` sorted by input
        index. An input's strength is its largest non-`none` weight; the two strongest inputs
        are kept. `none` is never chosen. Ties go to the lower input index and, within an
        input, to the op listed first.
    """
    names = list(op_names)
    a = _to_array(alpha, "alpha")
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
    expected = (num_edges(num_nodes), len(names))
    if a.shape != expected:
        raise ValueError(f"alpha has shape {a.shape}; {num_nodes} nodes and {len(names)} ops need {expected}")
    candidates = [k for k, n in enumerate(names) if n != NONE]
    if not candidates:
        raise ValueError("op_names has no op other than 'none'")
    cell: List[List[Edge]] = []
    row = 0
    for node in range(num_nodes):
        strengths = []
        for inp in range(node + 2):
            w = a[row + inp]
            best = max(candidates, key=lambda k: (w[k], -k))  # ties -> first listed op
            strengths.append((w[best], -inp, names[best], inp))
        top2 = sorted(strengths, reverse=True)[:2]
        cell.append(sorted([(op, inp) for _, _, op, inp in top2], key=lambda e: e[1]))
        row += node + 2
    return cell


def viterbi_path(transitions) -> List[int]:
    """The most probable sequence of width levels (exact, in log space).

    Args:
        transitions: ``(L, S, 3)`` non-negative; ``transitions[l, s, k]`` is the probability of
            going from level ``s`` (the level before layer ``l``) to level ``s - 1 + k`` at layer
            ``l``. The path starts at level 0 before layer 0. Moves to a level outside
            ``0..S-1`` are invalid whatever their value.

    Returns:
        The ``L`` levels of the path, one per layer. Ties go to the lower level.
    """
    t = _to_array(transitions, "transitions")
    if t.ndim != 3 or t.shape[2] != 3 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"transitions must have shape (L, S, 3) with L, S >= 1, got {t.shape}")
    if np.any(t < 0):
        raise ValueError("transitions must be non-negative probabilities")
    num_layers, num_levels, _ = t.shape
    with np.errstate(divide="ignore"):
        logt = np.log(t)
    score = np.full(num_levels, -math.inf)
    score[0] = 0.0
    back = np.zeros((num_layers, num_levels), dtype=np.int64)
    for layer in range(num_layers):
        new = np.full(num_levels, -math.inf)
        arg = np.zeros(num_levels, dtype=np.int64)
        have = np.zeros(num_levels, dtype=bool)
        for target in range(num_levels):
            for k in range(3):
                source = target + 1 - k
                if not 0 <= source < num_levels:
                    continue
                cand = score[source] + logt[layer, source, k]
                # Strictly better wins; ties keep the lower source (visited first below).
                if not have[target] or cand > new[target] or (cand == new[target] and source < arg[target]):
                    new[target], arg[target], have[target] = cand, source, True
        score, back[layer] = new, arg
    level = int(np.argmax(score))  # first maximum = lowest level
    path = [level]
    for layer in range(num_layers - 1, 0, -1):
        level = int(back[layer, level])
        path.append(level)
    return path[::-1]


def path_probability(transitions, path: Sequence[int]) -> float:
    """Probability of a level path under ``transitions`` (0 for an invalid path)."""
    t = _to_array(transitions, "transitions")
    prob, prev = 1.0, 0
    for layer, level in enumerate(path):
        k = level - prev + 1
        if not 0 <= k <= 2 or not 0 <= level < t.shape[1]:
            return 0.0
        prob *= t[layer, prev, k]
        prev = level
    return prob


@dataclass(frozen=True)
class Genotype:
    """A derived architecture.

    Attributes:
        cells: one cell genotype, shared by every layer (the CVPR version), or one per layer
            (untied cells, the journal version). A cell genotype has, per node, two
            ``(op, input_index)`` edges.
        levels: the width level of each layer's cell (the Viterbi path); consecutive levels
            differ by at most 1 and the path starts at level 0 (the stem).
        widths: channels per node at each level, e.g. ``(10, 20, 40)`` (W, 2W, 4W); a cell at
            level i outputs ``nodes * widths[i]`` channels.
        provenance: free-form facts about where the genotype came from (not compared).
    """

    cells: Tuple[CellGenotype, ...]
    levels: Tuple[int, ...]
    widths: Tuple[int, ...]
    provenance: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "cells", _check_cells(self.cells))
        object.__setattr__(self, "levels", _check_int_tuple(self.levels, "levels"))
        object.__setattr__(self, "widths", _check_int_tuple(self.widths, "widths"))
        if not isinstance(self.provenance, Mapping):
            raise GenotypeError("provenance: must be a JSON object")
        if not self.levels:
            raise GenotypeError("levels: at least one layer is needed")
        if not self.widths or any(w < 1 for w in self.widths):
            raise GenotypeError(f"widths: must be positive channel counts, got {list(self.widths)}")
        prev = 0
        for layer, level in enumerate(self.levels):
            if not 0 <= level < len(self.widths):
                raise GenotypeError(f"levels[{layer}]: level {level} outside 0..{len(self.widths) - 1} (widths has {len(self.widths)} levels)")
            if abs(level - prev) > 1:
                raise GenotypeError(f"levels[{layer}]: jump from level {prev} to {level}; a layer moves at most one level")
            prev = level
        if len(self.cells) not in (1, len(self.levels)):
            raise GenotypeError(f"cells: {len(self.cells)} cells for {len(self.levels)} layers; give 1 (shared) or one per layer")
        sizes = {len(c) for c in self.cells}
        if len(sizes) != 1:
            raise GenotypeError(f"cells: cells have different node counts {sorted(sizes)}")

    @property
    def num_nodes(self) -> int:
        return len(self.cells[0])

    @property
    def num_layers(self) -> int:
        return len(self.levels)

    def cell(self, layer: int) -> CellGenotype:
        return self.cells[0] if len(self.cells) == 1 else self.cells[layer]

    def ops_used(self) -> List[str]:
        return [op for cell in self.cells for node in cell for op, _ in node]

    # ---- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return {
            "format": GENOTYPE_FORMAT,
            "cells": [[[list(e) for e in node] for node in cell] for cell in self.cells],
            "levels": list(self.levels),
            "widths": list(self.widths),
            "provenance": dict(self.provenance),
        }

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any) -> "Genotype":
        if not isinstance(data, Mapping):
            raise GenotypeError(f"genotype: expected a JSON object, got {type(data).__name__}")
        known = {"format", "cells", "levels", "widths", "provenance"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise GenotypeError(f"genotype: unknown field(s) {unknown}; expected {sorted(known)}")
        missing = sorted({"cells", "levels", "widths"} - set(data))
        if missing:
            raise GenotypeError(f"genotype: missing field(s) {missing}")
        fmt = data.get("format", GENOTYPE_FORMAT)
        if fmt != GENOTYPE_FORMAT:
            raise GenotypeError(f"format: unsupported genotype format {fmt!r} (this hinas reads {GENOTYPE_FORMAT})")
        return cls(cells=data["cells"], levels=data["levels"], widths=data["widths"],
                   provenance=data.get("provenance") or {})

    @classmethod
    def from_json(cls, text: str) -> "Genotype":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GenotypeError(f"genotype: not valid JSON ({exc})") from None
        except RecursionError:
            raise GenotypeError("genotype: not valid JSON (nested too deeply)") from None
        return cls.from_dict(data)

    def save(self, path) -> Path:
        """Write atomically: a crash never leaves a truncated genotype file behind."""
        path = Path(path)
        with atomic_file(path) as tmp:
            tmp.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, path_or_name) -> "Genotype":
        """Load a genotype from a JSON file, or a known one by name (see :func:`known_genotypes`)."""
        path = Path(path_or_name)
        if not path.exists() and (_GENOTYPE_DIR / f"{path_or_name}.json").exists():
            path = _GENOTYPE_DIR / f"{path_or_name}.json"
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise GenotypeError(f"genotype file {str(path)!r} does not exist (known names: {known_genotypes()})") from None
        except (OSError, UnicodeDecodeError) as exc:  # a folder, no permission, not text
            raise GenotypeError(f"genotype file {str(path)!r} cannot be read: {exc}") from None
        try:
            return cls.from_json(text)
        except GenotypeError as exc:
            raise GenotypeError(f"{path}: {exc}") from None


def check_ops(genotype: Genotype, ops: Sequence[str], space: str) -> None:
    """Refuse a genotype that uses an op the search space ``space`` (e.g. "preset 'journal'")
    does not have: it was found in, or written for, another space."""
    extra = sorted(set(genotype.ops_used()) - set(ops))
    if extra:
        raise GenotypeError(f"the genotype uses op(s) {extra} that the space {space} does not have "
                            f"(its ops: {list(ops)}); it was made for another space")


def known_genotypes() -> List[str]:
    return sorted(p.stem for p in _GENOTYPE_DIR.glob("*.json"))


def _check_int_tuple(values, name: str) -> Tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise GenotypeError(f"{name}: expected a list of integers, got {type(values).__name__}")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int):
            raise GenotypeError(f"{name}[{i}]: expected an integer, got {v!r}")
        out.append(v)
    return tuple(out)


def _check_cells(cells) -> Tuple[CellGenotype, ...]:
    if not isinstance(cells, (list, tuple)) or not cells:
        raise GenotypeError("cells: expected a non-empty list of cells")
    out = []
    for c, cell in enumerate(cells):
        if not isinstance(cell, (list, tuple)) or not cell:
            raise GenotypeError(f"cells[{c}]: expected a non-empty list of nodes")
        nodes = []
        for n, node in enumerate(cell):
            where = f"cells[{c}][{n}]"
            if not isinstance(node, (list, tuple)) or len(node) != 2:
                raise GenotypeError(f"{where}: a node keeps exactly two edges [op, input]")
            edges = []
            for e, edge in enumerate(node):
                if not isinstance(edge, (list, tuple)) or len(edge) != 2:
                    raise GenotypeError(f"{where}[{e}]: an edge is [op_name, input_index]")
                op, inp = edge
                if not isinstance(op, str) or op not in OPS or op == NONE:
                    raise GenotypeError(f"{where}[{e}]: unknown op {op!r}; expected one of {[o for o in OPS if o != NONE]}")
                if isinstance(inp, bool) or not isinstance(inp, int) or not 0 <= inp < n + 2:
                    raise GenotypeError(f"{where}[{e}]: input index {inp!r} out of range 0..{n + 1} for node {n}")
                edges.append((op, inp))
            if edges[0][1] == edges[1][1]:
                raise GenotypeError(f"{where}: both edges take input {edges[0][1]}; a node keeps two distinct inputs")
            nodes.append(tuple(edges))
        out.append(tuple(nodes))
    return tuple(out)


def replace_ops(genotype: Genotype, mapping: Mapping[str, str]) -> Genotype:
    """The same genotype with ops swapped, e.g. ``{"conv": "def"}`` (Table 3's R1)."""
    cells = [[[(mapping.get(op, op), inp) for op, inp in node] for node in cell] for cell in genotype.cells]
    return Genotype(cells, genotype.levels, genotype.widths, {**genotype.provenance, "edit": f"replace_ops {dict(mapping)}"})


def rewire(genotype: Genotype) -> Genotype:
    """The same ops with each node's inputs moved (Table 3's R2, "rewired").

    Node i keeps its two ops; the op on its lower input moves to a neighbouring input: the other
    cell input (h_{l-2} <-> h_{l-1}) when it reads one, else the previous node; when that input is
    the node's other edge (inputs 0 and 1), to node 0 instead. Node 0 has no other input and stays.
    So every node after the first changes its wiring: deterministic, and always a valid cell.
    (The paper shows its R2 only in Fig. 5(d); which edges it moved is not recoverable.)
    """
    cells = []
    for cell in genotype.cells:
        nodes = []
        for i, ((op_a, a), (op_b, b)) in enumerate(cell):
            new_a = 1 - a if a < 2 else a - 1
            if new_a == b:  # inputs (0, 1): the op on h_{l-2} moves to node 0, if there is one
                new_a = 2 if i >= 1 else a
            nodes.append(sorted([(op_a, new_a), (op_b, b)], key=lambda e: e[1]))
        cells.append(nodes)
    return Genotype(cells, genotype.levels, genotype.widths, {**genotype.provenance, "edit": "rewire"})


# Table 3's modified cells (paper Sec. 3.4, Fig. 5(c)/(d)), applied to a found genotype.
EDITS = {
    "r1": lambda g: replace_ops(g, {"conv": "def"}),  # R1: every conventional conv becomes a deformable conv
    "r2": rewire,  # R2: the same ops, connected differently
}


def apply_edit(genotype: Genotype, edit: str | None) -> Genotype:
    """``genotype`` with Table 3's edit ``r1`` or ``r2`` applied (None: unchanged)."""
    if edit is None:
        return genotype
    try:
        return EDITS[edit](genotype)
    except KeyError:
        raise GenotypeError(f"unknown cell edit {edit!r}; known edits are {sorted(EDITS)}") from None
