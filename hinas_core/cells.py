"""Cells (paper Sec. 2.1, Eq. 1-3) and the two kinds of edge a cell can have.

A cell takes ``s0 = h_{l-2}`` and ``s1 = h_{l-1}`` (both already brought to the cell's width
``C``), runs N nodes, and outputs the concatenation of the N node outputs: ``(B, N*C, H, W)``.
Node i sums one edge per kept input; inputs are indexed 0 = s0, 1 = s1, 2 + j = node j.

The supernet's cell has every edge, each a :class:`MixedOp` weighted by softmax(alpha)
(Eq. 2); the derived cell keeps two edges per node, each one chosen op. Everything else is
shared, so the two cannot drift apart.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from .genotype import CellGenotype, num_edges
from .ops import NONE, OPS, ActConvBN


class MixedOp(nn.Module):
    """Eq. 2: sum_k w_k * O_k(x) over the candidate ops (the `none` op adds nothing)."""

    def __init__(self, channels: int, op_names: Sequence[str], act: str = "relu"):
        super().__init__()
        self.op_names = tuple(op_names)
        # BN without affine parameters in the supernet, as in DARTS: the mixing weights
        # alone scale each op's contribution.
        self.ops = nn.ModuleList(OPS[name](channels, affine=False, act=act) for name in self.op_names)
        self._active = [k for k, name in enumerate(self.op_names) if name != NONE]

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out, a = None, None
        for k in self._active:
            op = self.ops[k]
            if isinstance(op, ActConvBN):
                if a is None:  # the ops' activations are identical: compute (and store) one
                    a = op[0](x)
                y = op.after_activation(a)
            else:
                y = op(x)
            y = weights[k] * y
            out = y if out is None else out + y
        return out


class Cell(nn.Module):
    """A cell of ``num_nodes`` nodes at ``channels`` channels per node.

    ``edges`` lists ``(node, input_index, module)``. ``weighted`` says whether modules are
    mixed ops that take a row of alpha weights (edge e reads row e of the weights passed
    to :meth:`forward`, in the order of :func:`mixed_edges`).
    """

    def __init__(self, channels: int, num_nodes: int, edges: List[Tuple[int, int, nn.Module]], weighted: bool):
        super().__init__()
        self.channels = channels
        self.num_nodes = num_nodes
        self.weighted = weighted
        self.edge_ops = nn.ModuleList(m for _, _, m in edges)
        self.edge_index = [(node, inp) for node, inp, _ in edges]
        for node in range(num_nodes):
            if not any(n == node for n, _ in self.edge_index):
                raise ValueError(f"cell node {node} has no input edge")

    @property
    def out_channels(self) -> int:
        return self.num_nodes * self.channels

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.weighted and weights is None:
            raise ValueError("a supernet cell needs its alpha weights")
        states = [s0, s1]
        e = 0
        for node in range(self.num_nodes):
            acc = None
            while e < len(self.edge_index) and self.edge_index[e][0] == node:
                _, inp = self.edge_index[e]
                op = self.edge_ops[e]
                y = op(states[inp], weights[e]) if self.weighted else op(states[inp])
                acc = y if acc is None else acc + y
                e += 1
            states.append(acc)
        return torch.cat(states[2:], dim=1)  # Eq. 3: (B, N*C, H, W)


def mixed_cell(channels: int, num_nodes: int, op_names: Sequence[str], act: str = "relu") -> Cell:
    """The supercell: every input of every node is a mixed edge (``num_edges`` of them)."""
    edges = [(node, inp, MixedOp(channels, op_names, act)) for node in range(num_nodes) for inp in range(node + 2)]
    assert len(edges) == num_edges(num_nodes)
    return Cell(channels, num_nodes, edges, weighted=True)


def derived_cell(channels: int, cell: CellGenotype, act: str = "relu") -> Cell:
    """The compact cell of a genotype: two chosen ops per node."""
    edges = [(node, inp, OPS[op](channels, affine=True, act=act))
             for node, kept in enumerate(cell) for op, inp in kept]
    return Cell(channels, len(cell), edges, weighted=False)
