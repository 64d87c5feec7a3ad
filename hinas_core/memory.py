"""Measuring what a training step keeps in memory (for the cell-sharing comparison, Table 4).

On any device, :func:`saved_activation_bytes` counts the bytes autograd saves for the backward
pass during a forward (unique storages, parameters excluded). On CUDA, :func:`cuda_step_peak`
also reads the allocator's peak over a whole forward + backward.
"""
from __future__ import annotations

import torch
from torch import nn


def saved_activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct tensors autograd saves in ``model(x)``, parameters excluded."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in params:
            seen[ptr] = max(seen.get(ptr, 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    return sum(seen.values())


def cuda_step_peak(model: nn.Module, x: torch.Tensor) -> int:
    """Peak bytes allocated on CUDA over one forward + backward, above what was allocated before."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    model(x).float().pow(2).mean().backward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    model.zero_grad(set_to_none=True)
    return peak
