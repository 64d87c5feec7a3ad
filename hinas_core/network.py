"""The one topology builder, the supernet and the derived network.

:class:`Topology` wires the start part (input conv + conv), the L layers of cells on a
:class:`~hinas_core.lattice.Lattice`, and the end part (concatenate the last layer's outputs,
conv, image). The supernet and the derived network are both a :class:`Topology`; they differ
only in the cell factory (mixed edges vs. chosen ops) and in the lattice (all levels vs. the
width path).

Images are ``(B, in_channels, H, W)`` float tensors in [0, 1] (noisy inputs may leave that
range); outputs have the same shape.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import torch
from torch import nn

from .cells import Cell, derived_cell, mixed_cell
from .config import SpaceConfig
from .genotype import Genotype, derive_cell, num_edges, viterbi_path
from .lattice import Lattice
from .ops import activation


def _key(*parts: int) -> str:
    return "_".join(str(p) for p in parts)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling in the end part (paper Fig. 2 right and Fig. 5(a) draw an
    ASPP block before the last conv; the text says conv). The block of the official code's
    ``ASPPModule`` (DeepLab v3+): a 1x1 branch and one separable 3x3 branch per atrous rate
    (depthwise dilated conv -> BN -> act -> 1x1 conv -> BN -> act), no image pooling (its
    denoising decoder passes ``use_gap=False``), concatenated and fused by 1x1 conv -> BN -> act.
    Each branch narrows to ``b = C // 4`` channels, as DeepLab's ASPP narrows its input (2048 ->
    256): with ``b = C`` the block alone would hold more weights than the 0.63 M network.

    ``(B, C, H, W) -> (B, b, H, W)``. Parameters: ``4 C b + 4 b^2 + 27 C`` conv weights plus
    ``6 C + 10 b`` in its eight BatchNorms.
    """

    RATES = (2, 4, 6)  # the official code's MODEL.ASPP_RATES

    def __init__(self, channels: int, act: str = "relu"):
        super().__init__()
        c, b = channels, max(1, channels // 4)
        self.out_channels = b

        def bn_act(n: int) -> List[nn.Module]:
            return [nn.BatchNorm2d(n), activation(act)]

        self.branches = nn.ModuleList([nn.Sequential(nn.Conv2d(c, b, 1, bias=False), *bn_act(b))])
        for r in self.RATES:
            self.branches.append(nn.Sequential(nn.Conv2d(c, c, 3, padding=r, dilation=r, groups=c, bias=False), *bn_act(c),
                                               nn.Conv2d(c, b, 1, bias=False), *bn_act(b)))
        self.fuse = nn.Sequential(nn.Conv2d(b * len(self.branches), b, 1, bias=False), *bn_act(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))


class Topology(nn.Module):
    """Start part -> L layers of cells on a lattice -> end part.

    Args:
        lattice: which (layer, level) cells exist.
        widths: channels per node at each level.
        num_nodes: N.
        make_cell: ``make_cell(layer, channels) -> Cell``.
        cell_sharing: Eq. 5 (True) or Eq. 6 (False); irrelevant where a cell has one source.
        in_channels: image channels.
        act: activation name for the 1x1 input convs and the stem.
        output: ``sigmoid``, ``residual`` or ``linear``.
        aspp: an :class:`ASPP` block between the concatenated last layer and the end conv
            (the derived network of Fig. 2 right; the supernet of Fig. 2 left has none).
    """

    def __init__(self, lattice: Lattice, widths, num_nodes: int, make_cell: Callable[[int, int], Cell],
                 cell_sharing: bool = True, in_channels: int = 1, act: str = "relu", output: str = "sigmoid",
                 aspp: bool = False):
        super().__init__()
        self.lattice = lattice
        self.widths = tuple(widths)
        self.num_nodes = num_nodes
        self.cell_sharing = cell_sharing
        self.output = output
        stem = num_nodes * self.widths[0]  # the stem looks like a level-0 cell output
        self.stem_channels = stem
        self.stem0 = nn.Sequential(nn.Conv2d(in_channels, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem))
        self.stem1 = nn.Sequential(activation(act), nn.Conv2d(stem, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem))

        def out_channels(layer: int, level: int) -> int:
            return stem if layer < 0 else num_nodes * self.widths[level]

        def conv1x1(c_in: int, c_out: int) -> nn.Module:
            return nn.Sequential(activation(act), nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

        self.pre1 = nn.ModuleDict()  # (l, source s, level i): h^s_{l-1} -> f^s_{l-1} at width 2^i W
        self.pre0 = nn.ModuleDict()  # (l, level i): h_{l-2} -> f^i_{l-2}
        self.cells = nn.ModuleDict()  # (l, i) shared; (l, i, s) unshared
        for layer in range(lattice.num_layers):
            for level in lattice.present[layer]:
                c = self.widths[level]
                for s in lattice.sources(layer, level):
                    self.pre1[_key(layer, s, level)] = conv1x1(out_channels(layer - 1, s), c)
                    if not cell_sharing:
                        self.cells[_key(layer, level, s)] = make_cell(layer, c)
                pp = lattice.prev_prev(layer, level)
                self.pre0[_key(layer, level)] = conv1x1(out_channels(layer - 2, pp), c)
                if cell_sharing:
                    self.cells[_key(layer, level)] = make_cell(layer, c)
        last = lattice.num_layers - 1
        end_in = sum(out_channels(last, s) for s in lattice.present[last])
        self.aspp = ASPP(end_in, act) if aspp else None
        if self.aspp is not None:
            end_in = self.aspp.out_channels
        self.end = nn.Conv2d(end_in, in_channels, 3, padding=1)
        if output == "residual":
            # The network starts as the identity (it returns its noisy input) and learns the
            # correction from there: measured on the quickstart, 25.7 dB after 150 steps at
            # sigma 30 against 24.3 with the default init (docs/RESULTS.md, issue #13).
            nn.init.zeros_(self.end.weight)
            nn.init.zeros_(self.end.bias)

    def forward(self, x: torch.Tensor, alphas: Optional[List[torch.Tensor]] = None,
                transitions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Args:
            x: ``(B, C_in, H, W)`` noisy image.
            alphas: per layer, the ``(E, K)`` softmax(alpha) weights (supernet only).
            transitions: ``(L, S, 3)`` beta transition probabilities (searched widths only);
                an edge without one has weight 1.
        """
        h0 = self.stem0(x)
        h1 = self.stem1(h0)
        prev2: Dict[int, torch.Tensor] = {0: h0}
        prev1: Dict[int, torch.Tensor] = {0: h1}
        for layer in range(self.lattice.num_layers):
            w = None if alphas is None else alphas[layer]
            cur: Dict[int, torch.Tensor] = {}
            for level in self.lattice.present[layer]:
                s0 = self.pre0[_key(layer, level)](prev2[self.lattice.prev_prev(layer, level)])
                inputs = []
                for s in self.lattice.sources(layer, level):
                    f = self.pre1[_key(layer, s, level)](prev1[s])
                    beta = None if transitions is None else transitions[layer, s, level - s + 1]
                    inputs.append((s, f, beta))
                if self.cell_sharing:
                    # Eq. 5: the beta-weighted levels are summed first, then one shared cell.
                    s1 = sum(f if b is None else b * f for _, f, b in inputs)
                    cur[level] = self.cells[_key(layer, level)](s0, s1, w)
                else:
                    # Eq. 6 (Auto-DeepLab): one cell per incoming level, summed after.
                    outs = [self.cells[_key(layer, level, s)](s0, f, w) for s, f, _ in inputs]
                    cur[level] = sum(o if b is None else b * o for o, (_, _, b) in zip(outs, inputs))
            prev2, prev1 = prev1, cur
        y = torch.cat([prev1[s] for s in sorted(prev1)], dim=1)
        y = self.end(y if self.aspp is None else self.aspp(y))
        if self.output == "sigmoid":
            return torch.sigmoid(y)
        if self.output == "residual":
            return x + y
        return y


class Supernet(nn.Module):
    """The HiNAS supernet: mixed-op cells on the full width lattice, with alpha and beta.

    ``alpha``: ``(E, K)`` (tied cells) or ``(L, E, K)`` (untied), E = edges per cell, K = ops.
    ``beta``: one logit per valid lattice move (:meth:`Lattice.moves`); per source cell a
    softmax over its valid moves gives the transition probabilities (Eq. 4-5).
    """

    def __init__(self, config: SpaceConfig = SpaceConfig()):
        super().__init__()
        self.config = config
        fixed = config.fixed_levels
        widths = config.widths
        self.lattice = Lattice.path(fixed, len(widths)) if fixed else Lattice.full(config.layers, len(widths))
        act = config.activation
        self.net = Topology(self.lattice, widths, config.nodes,
                            lambda layer, c: mixed_cell(c, config.nodes, config.ops, act),
                            cell_sharing=config.cell_sharing, in_channels=config.in_channels,
                            act=act, output=config.output)
        e, k = num_edges(config.nodes), len(config.ops)
        shape = (e, k) if config.tied_cells else (config.layers, e, k)
        self.alpha = nn.Parameter(1e-3 * torch.randn(shape))
        moves = self.lattice.moves() if fixed is None else []
        self.beta = nn.Parameter(1e-3 * torch.randn(len(moves))) if moves else None
        if moves:
            index = torch.tensor(moves, dtype=torch.long)
            self.register_buffer("_move_index", index, persistent=False)

    # ---- parameters --------------------------------------------------------------------
    def arch_parameters(self) -> List[nn.Parameter]:
        return [self.alpha] + ([self.beta] if self.beta is not None else [])

    def weight_parameters(self) -> List[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    # ---- architecture weights ----------------------------------------------------------
    def alpha_weights(self) -> List[torch.Tensor]:
        """softmax(alpha) over ops, one ``(E, K)`` tensor per layer."""
        w = torch.softmax(self.alpha, dim=-1)
        return [w] * self.config.layers if self.config.tied_cells else list(w.unbind(0))

    def transition_probs(self) -> Optional[torch.Tensor]:
        """``(L, S, 3)`` transition probabilities; 0 on invalid moves. None for fixed widths."""
        if self.beta is None:
            return None
        shape = (self.config.layers, self.lattice.num_levels, 3)
        idx = self._move_index
        logits = torch.full(shape, -1e9, dtype=self.beta.dtype, device=self.beta.device)
        logits = logits.index_put((idx[:, 0], idx[:, 1], idx[:, 2]), self.beta)
        mask = torch.zeros(shape, dtype=self.beta.dtype, device=self.beta.device)
        mask = mask.index_put((idx[:, 0], idx[:, 1], idx[:, 2]), torch.ones_like(self.beta))
        return torch.softmax(logits, dim=-1) * mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.alpha_weights(), self.transition_probs())

    # ---- derivation --------------------------------------------------------------------
    @torch.no_grad()
    def genotype(self, provenance: Optional[dict] = None) -> Genotype:
        """Derive the compact architecture: top-2 inputs per node, Viterbi width path."""
        cfg = self.config
        weights = self.alpha_weights()
        layers = weights[:1] if cfg.tied_cells else weights
        cells = [derive_cell(w, cfg.ops, cfg.nodes) for w in layers]
        probs = self.transition_probs()
        levels = cfg.fixed_levels if probs is None else viterbi_path(probs)
        return Genotype(cells=cells, levels=levels, widths=cfg.widths, provenance=provenance or {})


def build_network(genotype: Genotype, width: Optional[int] = None, in_channels: int = 1,
                  activation: str = "relu", output: str = "sigmoid", aspp: bool = False) -> Topology:
    """The retrainable denoiser of a genotype.

    Args:
        genotype: the cells and width path.
        width: channels per node at level 0; the other levels keep the genotype's ratios
            (e.g. ``width=20`` turns widths 10/20/40 into 20/40/80). None keeps the
            genotype's widths.
        aspp: an ASPP block in the end part (:class:`ASPP`).
    """
    widths = genotype.widths
    if width is not None:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width: expected a positive integer, got {width!r}")
        widths = tuple(max(1, round(w * width / genotype.widths[0])) for w in genotype.widths)
    lattice = Lattice.path(genotype.levels, len(widths))
    return Topology(lattice, widths, genotype.num_nodes,
                    lambda layer, c: derived_cell(c, genotype.cell(layer), activation),
                    cell_sharing=True, in_channels=in_channels, act=activation, output=output, aspp=aspp)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
