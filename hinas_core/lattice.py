"""Which cells exist and how they connect: the width lattice (paper Sec. 2.2, Fig. 2).

Positions are ``(layer, level)``. Layers -2 and -1 are the start part (the two stem convs),
both at level 0, so every path starts at level 0. The supernet's lattice holds, at layer l,
the levels ``0..min(l + 1, S - 1)`` (a cell is only reachable after enough up-moves); a
derived network's lattice holds one level per layer, its width path. The same two rules
wire both:

* ``h_{l-1}`` inputs of (l, i): every present level s at layer l-1 with ``|s - i| <= 1``
  (Eq. 4-5: down, same and up moves);
* ``h_{l-2}`` input of (l, i): the present level at layer l-2 nearest to i (the same level
  where it exists; the stem for l < 2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple


@dataclass(frozen=True)
class Lattice:
    present: Tuple[Tuple[int, ...], ...]  # levels present at each layer 0..L-1
    num_levels: int

    @classmethod
    def full(cls, num_layers: int, num_levels: int) -> "Lattice":
        return cls(tuple(tuple(range(min(l + 2, num_levels))) for l in range(num_layers)), num_levels)

    @classmethod
    def path(cls, levels: Sequence[int], num_levels: int) -> "Lattice":
        return cls(tuple((int(s),) for s in levels), num_levels)

    @property
    def num_layers(self) -> int:
        return len(self.present)

    def levels_at(self, layer: int) -> Tuple[int, ...]:
        return (0,) if layer < 0 else self.present[layer]

    def sources(self, layer: int, level: int) -> Tuple[int, ...]:
        """Levels at layer-1 that feed (layer, level) through the beta-weighted sum."""
        src = tuple(s for s in self.levels_at(layer - 1) if abs(s - level) <= 1)
        if not src:
            raise ValueError(f"cell (layer {layer}, level {level}) has no input from layer {layer - 1}")
        return src

    def prev_prev(self, layer: int, level: int) -> int:
        """The level at layer-2 whose output is this cell's h_{l-2} input."""
        return min(self.levels_at(layer - 2), key=lambda s: (abs(s - level), s))

    def moves(self) -> List[Tuple[int, int, int]]:
        """Every valid transition ``(layer, source_level, k)``, k = 0/1/2 for down/same/up.

        These are the entries of beta (Eq. 4-5); their order is beta's order.
        """
        out = []
        for layer in range(self.num_layers):
            for s in self.levels_at(layer - 1):
                for k in range(3):
                    if s - 1 + k in self.present[layer]:
                        out.append((layer, s, k))
        return out
