"""Pictures for MLflow: the genotype, alpha/beta over epochs, validation curves, examples.

Pure functions returning ``matplotlib.figure.Figure`` objects made without pyplot, so nothing
global is touched (safe in Ray workers and threads); :func:`save_png` writes one atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from hinas_core.fsutil import atomic_file  # noqa: E402
from hinas_core.genotype import Genotype  # noqa: E402


def save_png(fig: Figure, path) -> Path:
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def genotype_figure(genotype: Genotype) -> Figure:
    """Each distinct cell as a DAG (inputs, nodes, kept edges labelled by op) and the width path."""
    cells = genotype.cells
    fig = Figure(figsize=(4.5 * len(cells) + 4, 3.6))
    axes = fig.subplots(1, len(cells) + 1, squeeze=False)[0]
    for c, (ax, cell) in enumerate(zip(axes, cells)):
        n = len(cell)
        pos = {0: (0.0, 0.0), 1: (0.0, 1.0)}  # h_{l-2}, h_{l-1} on the left
        for i in range(n):
            pos[i + 2] = (1.0 + i, 0.5 + 0.35 * (-1) ** i)
        out = (n + 1.2, 0.5)
        for name, (x, y) in zip(["h(l-2)", "h(l-1)"] + [f"n{i}" for i in range(n)], pos.values()):
            ax.text(x, y, name, ha="center", va="center", fontsize=9,
                    bbox=dict(boxstyle="round", fc="#dbe9f6" if name.startswith("h") else "#fde8c8"))
        for i, node in enumerate(cell):
            for op, inp in node:
                (x0, y0), (x1, y1) = pos[inp], pos[i + 2]
                ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                            arrowprops=dict(arrowstyle="->", color="#555", connectionstyle="arc3,rad=0.15"))
                ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.06, op, ha="center", fontsize=8, color="#a33")
        for i in range(n):
            ax.annotate("", xy=out, xytext=pos[i + 2], arrowprops=dict(arrowstyle="->", color="#bbb"))
        ax.text(*out, "concat", ha="center", va="center", fontsize=9, bbox=dict(boxstyle="round", fc="#e4f3e4"))
        ax.set_xlim(-0.6, n + 1.8)
        ax.set_ylim(-0.5, 1.5)
        ax.axis("off")
        ax.set_title("cell" if len(cells) == 1 else f"cell of layer {c}", fontsize=10)
    ax = axes[-1]
    levels = list(genotype.levels)
    num_levels = len(genotype.widths)
    grid_x, grid_y = np.meshgrid(np.arange(-1, len(levels)), np.arange(num_levels))
    ax.scatter(grid_x, grid_y, s=30, color="#ccc")
    ax.plot(range(-1, len(levels)), [0] + levels, "-o", color="#c33", lw=2)
    for layer, level in enumerate(levels):
        ax.text(layer, level + 0.12, f"{genotype.widths[level]}", ha="center", fontsize=8)
    ax.set_xticks(range(-1, len(levels)))
    ax.set_xticklabels(["stem"] + [str(i) for i in range(len(levels))])
    ax.set_yticks(range(num_levels))
    ax.set_xlabel("layer")
    ax.set_ylabel("width level")
    ax.set_title("width path (channels per node)", fontsize=10)
    return fig


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def edge_names(num_edges: int) -> List[str]:
    """Names of a cell's edges in alpha's row order: node by node, input by input
    (``n1<-h(l-1)``: node 1 from the previous cell; ``n2<-n0``: node 2 from node 0)."""
    names, node = [], 0
    while len(names) < num_edges:
        names += [f"n{node}<-{src}" for src in ["h(l-2)", "h(l-1)"] + [f"n{j}" for j in range(node)]]
        node += 1
    return names[:num_edges]


def move_names(moves: Sequence[Sequence[int]]) -> List[str]:
    """Names of beta's lattice moves ``(layer, source level, k)``: ``L2 1->0`` (k 0/1/2 = down/same/up)."""
    return [f"L{layer} {s}->{s - 1 + k}" for layer, s, k in moves]


def _label_rows(ax, names: Sequence[str], fontsize: int = 6) -> None:
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=fontsize)


def arch_figure(history: Sequence[Dict[str, Any]], op_names: Sequence[str],
                moves: Optional[Sequence[Sequence[int]]] = None) -> Figure:
    """softmax(alpha) per edge at the last epoch, the strongest op's weight per edge over
    epochs, and the raw beta logits over epochs; rows named by edge and by lattice move
    (``moves``: ``Lattice.moves()``, beta's order; without it, move indices)."""
    alphas = [np.asarray(h["alpha"], dtype=float) for h in history]
    last = _softmax(alphas[-1])
    if last.ndim == 3:  # untied cells: show layer 0
        last, alphas = last[0], [a[0] for a in alphas]
    edges = edge_names(last.shape[0])
    betas = [h.get("beta") for h in history]
    has_beta = betas[-1] is not None
    fig = Figure(figsize=(14 if has_beta else 10, max(4.2, 0.16 * len(edges) + 1.5)))
    axes = fig.subplots(1, 3 if has_beta else 2)
    im = axes[0].imshow(last, aspect="auto", cmap="viridis")
    axes[0].set_xticks(range(len(op_names)))
    axes[0].set_xticklabels(op_names, rotation=45, fontsize=8)
    axes[0].set_xlabel("op")
    _label_rows(axes[0], edges)
    axes[0].set_ylabel("edge (node <- input)")
    axes[0].set_title(f"softmax(alpha), epoch {history[-1]['epoch']}", fontsize=10)
    fig.colorbar(im, ax=axes[0])
    epochs = [h["epoch"] for h in history]
    strongest = np.stack([_softmax(a).max(axis=-1) for a in alphas])  # (T, E)
    im = axes[1].imshow(strongest.T, aspect="auto", cmap="magma", extent=(epochs[0] - 0.5, epochs[-1] + 0.5, strongest.shape[1] - 0.5, -0.5))
    axes[1].set_xlabel("epoch")
    _label_rows(axes[1], edges)
    axes[1].set_ylabel("edge (node <- input)")
    axes[1].set_title("strongest op weight per edge", fontsize=10)
    fig.colorbar(im, ax=axes[1])
    if has_beta:
        b = np.asarray([x for x in betas], dtype=float)
        im = axes[2].imshow(b.T, aspect="auto", cmap="coolwarm", extent=(epochs[0] - 0.5, epochs[-1] + 0.5, b.shape[1] - 0.5, -0.5))
        axes[2].set_xlabel("epoch")
        if moves is not None and len(moves) == b.shape[1]:
            _label_rows(axes[2], move_names(moves))
            axes[2].set_ylabel("lattice move (layer, level -> level)")
        else:
            axes[2].set_ylabel("lattice move (index)")
        axes[2].set_title("beta logits per move", fontsize=10)
        fig.colorbar(im, ax=axes[2])
    fig.tight_layout()
    return fig


def psnr_figure(history: Sequence[Dict[str, Any]]) -> Figure:
    """Validation PSNR (and SSIM) per epoch; warm-up shaded; the kept (best) epoch marked."""
    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["val_psnr"] for h in history], "-o", ms=3, label="val PSNR")
    warm = [h["epoch"] for h in history if not h.get("arch_active")]
    if warm:
        ax.axvspan(min(warm) - 0.5, max(warm) + 0.5, color="#eee", label="warm-up (weights only)")
    best = history[-1].get("es_best_epoch", -1)
    if best and best > 0:
        ax.axvline(best, color="#c33", ls="--", label=f"kept supernet (epoch {best})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("PSNR (dB)")
    twin = ax.twinx()
    twin.plot(epochs, [h["val_ssim"] for h in history], color="#999", lw=1)
    twin.set_ylabel("SSIM", color="#999")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _example_titles(title) -> tuple:
    """Titles of one (noisy, denoised, clean) row; ``title`` is a name or a dict with
    ``name``, ``model``, ``sigma`` (None for stored pairs), ``psnr_noisy`` and ``psnr`` (dB
    against the clean image)."""
    if not isinstance(title, dict):
        return "noisy", "denoised" if title is None else f"denoised - {title}", "clean"
    sigma = title.get("sigma")
    degraded = "input" if sigma is None else f"noisy (sigma {sigma:g})"  # None: stored pairs (rain, SIM)
    model = title.get("model") or "denoised"
    return (f"{degraded}: {title['psnr_noisy']:.2f} dB", f"{model}: {title['psnr']:.2f} dB",
            f"clean - {title['name']}")


def examples_figure(triples: List[tuple], titles: Optional[List[Any]] = None) -> Figure:
    """Rows of (noisy, denoised, clean) images, grey ``(H, W)`` or RGB ``(H, W, 3)``, on the 0-255 scale, titled by
    :func:`_example_titles` (a name per row, or a dict with the model, sigma and PSNRs)."""
    fig = Figure(figsize=(9, 3 * len(triples)))
    axes = fig.subplots(len(triples), 3, squeeze=False)
    for r, images in enumerate(triples):
        names = _example_titles(titles[r] if titles else None)
        for c, (img, name) in enumerate(zip(images, names)):
            img = np.clip(np.asarray(img, dtype=float), 0, 255)
            if img.ndim == 3:  # RGB: imshow takes floats in [0, 1] (vmin/vmax apply to grey only)
                axes[r, c].imshow(img / 255.0)
            else:
                axes[r, c].imshow(img, cmap="gray", vmin=0, vmax=255)
            axes[r, c].set_title(name, fontsize=9)
            axes[r, c].axis("off")
    return fig


def retrain_curve_figure(curves: Dict[str, Sequence[Dict[str, Any]]], stops: Optional[Dict[str, Optional[str]]] = None) -> Figure:
    """Retraining validation PSNR against training patches, one line per job (``curves``:
    label -> points with ``patches`` and ``val_psnr``, as in a model file's ``validation``); a
    job that the plateau rule stopped early ends in an X, its reason in the legend."""
    stops = stops or {}
    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.subplots()
    top = max((p["patches"] for c in curves.values() for p in c), default=0)
    scale, unit = (1e6, "M patches") if top >= 1e5 else (1.0, "patches")
    for label, curve in curves.items():
        if not curve:
            continue
        x = [p["patches"] / scale for p in curve]
        reason = stops.get(label)
        line, = ax.plot(x, [p["val_psnr"] for p in curve], "-o", ms=3,
                        label=f"{label}: stopped early ({reason})" if reason else label)
        if reason:
            ax.plot(x[-1], curve[-1]["val_psnr"], "x", ms=9, mew=2, color=line.get_color())
    ax.set_xlabel(f"training {unit} seen")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title("retraining: validation PSNR on Validation-V", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return fig
