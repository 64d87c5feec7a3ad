"""One training step's forward, loss and backward, run eagerly or replayed as a CUDA graph.

At batch 12 of 64x64 patches every kernel of the supernet is tiny, so an eager step is
bound by the CPU launching a few thousand of them. :class:`GradStep` captures forward, loss
and backward once into a CUDA graph and afterwards replays it with one launch; the
optimiser step stays eager (a handful of multi-tensor kernels), so learning-rate schedules,
gradient clipping and checkpoint restores keep working unchanged.

Contract (both modes): after ``loss = step(noisy, clean)`` every tensor in ``params`` holds
this batch's gradient in ``.grad``, no other parameter's ``.grad`` is touched, and ``loss``
is a detached 0-d tensor on the model's device (reading it is the caller's choice, so the
host need not wait for the GPU every step). Never call ``optimizer.zero_grad()`` on these
parameters: in graph mode ``.grad`` must stay the tensor the graph writes into.

With ``autocast`` (e.g. ``torch.bfloat16``) the model's forward runs under
``torch.autocast``: convolutions take bf16 operands on the tensor cores while parameters,
gradients and the optimiser stay float32; the model's output is cast back to float32 before
the loss, so the SSIM term is always computed in float32.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import nn

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}  # config name -> autocast dtype


def autotune_convolutions(device: torch.device) -> None:
    """On CUDA, let cuDNN time its algorithms for each convolution shape once and keep the
    fastest (training shapes are fixed, so this is paid once, during a graph's warm-up)."""
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA; nothing to wait for on the CPU): what a wall-clock
    timing of GPU work needs on both ends."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def restore_rng(torch_rng: torch.Tensor, cuda_rng: Sequence[torch.Tensor] = ()) -> None:
    """Set torch's CPU (and, when there is a GPU, CUDA) generator states from a checkpoint.

    A checkpoint loaded with ``map_location`` on a GPU brings its RNG states there too, and the
    generators take only CPU byte tensors, so they are moved back first.
    """
    torch.set_rng_state(torch_rng.to("cpu", torch.uint8))
    if len(cuda_rng) and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.to("cpu", torch.uint8) for s in cuda_rng])


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """A batch on ``device`` (asynchronously), in NHWC when ``channels_last``."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class GradStep:
    """``loss = step(noisy, clean)``: forward + loss + backward into ``params``' gradients.

    Args:
        model, criterion: the step computes ``criterion(model(noisy), clean)``.
        params: the leaves whose gradients are wanted (e.g. only the weights, or only alpha
            and beta): backward computes nothing for the others.
        cuda_graph: capture and replay a CUDA graph (CUDA only; otherwise eager). The graph
            is captured on the first call, after a few eager warm-up passes on a side stream
            whose effect on BatchNorm's running statistics is undone; a new batch shape
            captures again.
        pool: a graph memory pool shared with other steps that are never replayed at the same
            time (e.g. the weight and architecture steps of one search).
        autocast: a lower-precision dtype for the forward pass (``torch.bfloat16``), or None.
    """

    WARMUP = 3

    def __init__(self, model: nn.Module, criterion: Criterion, params: Sequence[torch.Tensor],
                 cuda_graph: bool = False, pool=None, autocast: Optional[torch.dtype] = None):
        self.model, self.criterion, self.params = model, criterion, list(params)
        self.cuda_graph = cuda_graph
        self.autocast = autocast
        self.pool = pool
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self._x = self._y = self._loss = None

    def loss(self, noisy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """The step's loss, with autograd recording (no backward)."""
        if self.autocast is None:
            return self.criterion(self.model(noisy), clean)
        with torch.autocast(noisy.device.type, dtype=self.autocast):
            estimate = self.model(noisy)
        return self.criterion(estimate.float(), clean)

    def _eager(self, noisy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        for p in self.params:
            p.grad = None
        loss = self.loss(noisy, clean)
        loss.backward(inputs=self.params)
        return loss.detach()

    def __call__(self, noisy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        if not (self.cuda_graph and noisy.is_cuda):
            return self._eager(noisy, clean)
        if self.graph is None or noisy.shape != self._x.shape or clean.shape != self._y.shape:
            self.warm_up(noisy, clean)
            self.capture()
        self._x.copy_(noisy, non_blocking=True)
        self._y.copy_(clean, non_blocking=True)
        self.graph.replay()
        return self._loss.clone()

    def warm_up(self, noisy: torch.Tensor, clean: torch.Tensor) -> None:
        """Eager passes on a side stream before :meth:`capture` (cuDNN autotuning, lazy
        allocations). Steps that share a pool should all warm up before any captures, so
        the eager passes' memory is returned before the pool grows."""
        self._x, self._y = noisy.clone(), clean.clone()
        buffers = [b.detach().clone() for b in self.model.buffers()]
        side = torch.cuda.Stream(device=noisy.device)
        side.wait_stream(torch.cuda.current_stream(noisy.device))
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                self._eager(self._x, self._y)
        torch.cuda.current_stream(noisy.device).wait_stream(side)
        with torch.no_grad():  # the warm-up passes were not training steps: undo BN statistics
            for b, saved in zip(self.model.buffers(), buffers):
                b.copy_(saved)
        for p in self.params:
            p.grad = None
        torch.cuda.empty_cache()  # give the warm-up's cached blocks back for the graph pool

    def capture(self) -> None:
        """Record forward + loss + backward on the warmed-up static batch."""
        for p in self.params:
            p.grad = None  # the graph allocates them from its pool and writes (not adds) into them
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=self.pool):
            loss = self.loss(self._x, self._y)
            loss.backward(inputs=self.params)
            self._loss = loss.detach()


def graph_pool(device: torch.device):
    """A CUDA graph memory pool handle for ``device`` (None off CUDA)."""
    if torch.device(device).type != "cuda":
        return None
    with torch.cuda.device(device):
        return torch.cuda.graph_pool_handle()
