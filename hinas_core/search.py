"""The single-device HiNAS search loop (paper Sec. 2.3 and 3.1), in plain PyTorch.

Per epoch: weight steps (SGD) on Train-W batches and, once the warm-up is over, an
alternating first-order architecture step (Adam on alpha and beta) on a Train-A batch after
each weight step; then the supernet is scored on Validation-V, the genotype of the moment
is derived, and the early-stop rule is updated. :class:`Searcher` owns all of its state
(weights, alpha/beta, both optimisers, the schedule, the epoch, every RNG, the rule) so a
search saved after any epoch and restored continues exactly as if never interrupted.

Data comes in through two small interfaces so this module stays free of any dataset code:

* a *sampler* has ``sample(rng: numpy.random.Generator, batch_size) -> (noisy, clean)``,
  both ``(B, C, P, P)`` float32 tensors in [0, 1] (noisy unclipped);
* ``evaluate(denoise) -> {"psnr": float, "ssim": float}`` scores a denoiser
  (``denoise((B, C, H, W) in [0, 1]) -> same``) on the validation images.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Tuple

import numpy as np
import torch

from .config import ConfigError, SpaceConfig, check_keys
from .early_stop import RULES, EarlyStopRule
from .loss import HiNASLoss
from .metrics import VAL_PSNR, VAL_SSIM
from .network import Supernet
from .ops import NONE
from .steps import PRECISIONS, GradStep, autotune_convolutions, graph_pool, restore_rng, to_device


class Sampler(Protocol):
    def sample(self, rng: np.random.Generator, batch_size: int) -> Tuple[torch.Tensor, torch.Tensor]: ...


Evaluate = Callable[[Callable[[torch.Tensor], torch.Tensor]], Mapping[str, float]]


@dataclass(frozen=True)
class SearchConfig:
    """Search hyperparameters; defaults are the paper's (Sec. 3.1) where it gives them.

    Attributes:
        max_epochs: the epoch cap (paper: 100), a second stopping condition.
        warmup_epochs: epochs 1..warmup update weights only (paper: 20).
        batch_size: patches per step (paper: 12).
        steps_per_epoch: weight steps per epoch; 0 means one random crop per Train-W image.
        w_lr, w_lr_min, w_momentum, w_weight_decay: SGD, lr cosine-annealed w_lr -> w_lr_min.
        a_lr, a_weight_decay: Adam on alpha and beta.
        grad_clip: clip the weights' gradient norm (DARTS uses 5; 0 turns it off). Not in the paper.
        ssim_weight: lambda of Eq. 7 (0 = MSE only, Table 2).
        loss_average: average the two loss terms, as the official journal code does.
        patience: the early-stop N. stop_rule: ``decrease`` or ``below_best`` (see early_stop).
        seed: seeds the supernet's initialisation and every random draw of the search.
        cuda_graph: on CUDA, replay each step's forward + backward as a CUDA graph
            (:mod:`hinas_core.steps`); the same computation, launched once instead of
            thousands of times. Ignored on CPU.
        precision: ``fp32``, or ``bf16`` (the forward passes under bf16 autocast; alpha, beta,
            weights, optimisers and the loss stay float32).
        channels_last: keep the supernet's activations in NHWC. precision and channels_last
            act on CUDA only.
    """

    max_epochs: int = 100
    warmup_epochs: int = 20
    batch_size: int = 12
    steps_per_epoch: int = 0
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    a_lr: float = 1e-3
    a_weight_decay: float = 1e-3
    grad_clip: float = 5.0
    ssim_weight: float = 0.5
    loss_average: bool = False
    patience: int = 5
    stop_rule: str = "decrease"
    seed: int = 0
    cuda_graph: bool = True
    precision: str = "fp32"
    channels_last: bool = False

    def __post_init__(self):
        positive_ints = ("max_epochs", "batch_size", "patience")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", int):
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ConfigError(f"search.{f.name}: expected an integer, got {v!r}")
                if v < (1 if f.name in positive_ints else 0):
                    raise ConfigError(f"search.{f.name}: must be {'>= 1' if f.name in positive_ints else '>= 0'}, got {v}")
            elif f.type in ("float", float):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                    raise ConfigError(f"search.{f.name}: expected a non-negative number, got {v!r}")
                object.__setattr__(self, f.name, float(v))
            elif f.type in ("bool", bool) and not isinstance(v, bool):
                raise ConfigError(f"search.{f.name}: expected true or false, got {v!r}")
        if self.w_lr <= 0 or self.a_lr <= 0:
            raise ConfigError("search.w_lr and search.a_lr must be > 0")
        if self.stop_rule not in RULES:
            raise ConfigError(f"search.stop_rule: {self.stop_rule!r} is not one of {list(RULES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"search.precision: {self.precision!r} is not one of {list(PRECISIONS)}")

    @classmethod
    def from_dict(cls, data: Optional[Mapping[str, Any]]) -> "SearchConfig":
        data = dict(data or {})
        check_keys("search", data, cls)
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


def _rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


ARCH_KEYS = ("alpha", "beta")  # the supernet's architecture parameters in its state_dict
SUPERNET, DROPPED = "supernet", "dropped"  # a checkpoint's mark: made by without_supernet


def search_ended(state: Mapping[str, Any], max_epochs: Optional[int] = None) -> bool:
    """Whether a search checkpoint (:meth:`Searcher.state_dict`) is of a search that has ended:
    stopped by its rule, or at its epoch cap (the checkpoint's own, or ``max_epochs``)."""
    cap = int(state["config"]["max_epochs"] if max_epochs is None else max_epochs)
    return EarlyStopRule.from_state(state["rule"]).stopped or int(state["epoch"]) >= cap


def check_search_state(state: Mapping[str, Any], space: SpaceConfig) -> None:
    """Raise ValueError unless ``state`` is a search checkpoint of this format made for ``space``."""
    if state.get("format") != 1:
        raise ValueError(f"unsupported search checkpoint format {state.get('format')!r}")
    if state.get("space") != space.to_dict():
        raise ValueError("the checkpoint was made for a different search space")


def without_supernet(state: Mapping[str, Any], max_epochs: Optional[int] = None) -> Dict[str, Any]:
    """An ended search's checkpoint without what only a search that goes on needs: the supernet's
    weights (alpha and beta stay) and both optimisers' moments. Its products (the best epoch's
    alpha, beta and genotype, the history) are whole, and :meth:`Searcher.load_state_dict` takes
    it back as a search that cannot run more epochs. The paper-space supernet's checkpoint goes
    from about 12 MB (bf16 weights) to tens of KB: an Optuna study's ended trials then travel
    in its state bundle at almost no cost."""
    if not search_ended(state, max_epochs):
        raise ValueError(f"the search is at epoch {state['epoch']} and has not ended: its supernet's weights are "
                         "needed to continue it")
    return {**state, "model": {k: v for k, v in state["model"].items() if k in ARCH_KEYS},
            "w_opt": {**state["w_opt"], "state": {}}, "a_opt": {**state["a_opt"], "state": {}}, SUPERNET: DROPPED}


class Searcher:
    """One HiNAS search. Call :meth:`run_epoch` until :attr:`done`."""

    def __init__(self, space: SpaceConfig, config: SearchConfig, train_w: Sampler, train_a: Sampler,
                 evaluate: Evaluate, steps_per_epoch: int, device: torch.device | str = "cpu"):
        self.space, self.config = space, config
        self.train_w, self.train_a, self.evaluate = train_w, train_a, evaluate
        self.steps_per_epoch = config.steps_per_epoch or steps_per_epoch
        if self.steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be >= 1 (is Train-W empty?)")
        self.device = torch.device(device)
        autotune_convolutions(self.device)
        torch.manual_seed(config.seed)
        self.model = Supernet(space).to(self.device)
        cuda = self.device.type == "cuda"  # the speed switches act on CUDA only
        self.channels_last = config.channels_last and cuda
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.criterion = HiNASLoss(config.ssim_weight, average=config.loss_average)
        self.w_opt = torch.optim.SGD(self.model.weight_parameters(), lr=config.w_lr,
                                     momentum=config.w_momentum, weight_decay=config.w_weight_decay)
        self.a_opt = torch.optim.Adam(self.model.arch_parameters(), lr=config.a_lr, weight_decay=config.a_weight_decay)
        pool = graph_pool(self.device) if config.cuda_graph else None
        dtype = PRECISIONS[config.precision] if cuda else None
        self.w_step = GradStep(self.model, self.criterion, self.model.weight_parameters(), config.cuda_graph, pool, dtype)
        self.a_step = GradStep(self.model, self.criterion, self.model.arch_parameters(), config.cuda_graph, pool, dtype)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, T_max=config.max_epochs, eta_min=config.w_lr_min)
        self.rng = np.random.Generator(np.random.PCG64(config.seed))
        self.rule = EarlyStopRule(patience=config.patience, rule=config.stop_rule)
        self.epoch = 0  # completed epochs
        self.history: List[Dict[str, Any]] = []
        self.best: Dict[str, Any] = {}
        self.supernet_dropped = False  # loaded from an ended search's checkpoint without its weights

    # ---- the loop ------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.rule.stopped or self.epoch >= self.config.max_epochs

    def _batch(self, sampler: Sampler) -> Tuple[torch.Tensor, torch.Tensor]:
        noisy, clean = sampler.sample(self.rng, self.config.batch_size)
        return to_device(noisy, self.device, self.channels_last), to_device(clean, self.device, self.channels_last)

    def _step(self, step: GradStep, optimizer, batch: Tuple[torch.Tensor, torch.Tensor], clip: bool = False) -> torch.Tensor:
        loss = step(*batch)
        if clip and self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(step.params, self.config.grad_clip)
        optimizer.step()
        return loss

    def train_steps(self, steps: int, arch_active: bool) -> Tuple[List[float], List[float]]:
        """``steps`` weight steps, each followed by an architecture step when ``arch_active``.

        Returns the losses of both. The host reads them once at the end, so it can run ahead
        of the GPU; the order of random draws is the same in every mode.
        """
        w_losses, a_losses = [], []
        first = None
        if self.config.cuda_graph and self.device.type == "cuda" and self.w_step.graph is None:
            # Warm both steps up (on the first weight batch) before either is captured: the
            # pool they share then grows into memory the eager passes have given back.
            first = self._batch(self.train_w)
            self.w_step.warm_up(*first)
            self.a_step.warm_up(*first)
            self.w_step.capture()
            self.a_step.capture()
        for i in range(steps):
            batch = first if i == 0 and first is not None else self._batch(self.train_w)
            w_losses.append(self._step(self.w_step, self.w_opt, batch, clip=True))
            if arch_active:  # first-order: alpha/beta step on Train-A with the weights as they are
                a_losses.append(self._step(self.a_step, self.a_opt, self._batch(self.train_a)))
        return torch.stack(w_losses).tolist(), \
        (torch.stack(a_losses).tolist() if a_losses else [])

    def run_epoch(self) -> Dict[str, Any]:
        """Train one epoch, validate, derive, update the rule; return the epoch's metrics."""
        if self.done:
            raise RuntimeError("the search is already finished")
        epoch = self.epoch + 1  # 1-based, as the paper counts ("from epoch 21")
        arch_active = epoch > self.config.warmup_epochs
        t0 = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.model.train()
        lr = self.w_opt.param_groups[0]["lr"]
        w_losses, a_losses = self.train_steps(self.steps_per_epoch, arch_active)
        self.schedule.step()
        train_seconds = time.perf_counter() - t0
        val = self.validate()
        genotype = self.model.genotype()
        is_best = self.rule.update(epoch, val["psnr"], val["ssim"], counting=arch_active)
        alpha = self.model.alpha.detach().cpu().clone()
        beta = None if self.model.beta is None else self.model.beta.detach().cpu().clone()
        if is_best:
            self.best = {"epoch": epoch, "alpha": alpha, "beta": beta, "genotype": genotype.to_dict(),
                         VAL_PSNR: val["psnr"], VAL_SSIM: val["ssim"]}
        self.epoch = epoch
        metrics = {
            "epoch": epoch,
            "arch_active": arch_active,
            "train_loss": float(np.mean(w_losses)),
            "arch_loss": float(np.mean(a_losses)) if a_losses else math.nan,
            "w_lr": lr,
            VAL_PSNR: val["psnr"],
            VAL_SSIM: val["ssim"],
            "n_skip": genotype.ops_used().count("skip"),
            "none_dominant_edges": self.none_dominant_edges(),
            "levels": "-".join(map(str, genotype.levels)),
            "train_seconds": train_seconds,
            "epoch_seconds": time.perf_counter() - t0,
            "peak_memory_bytes": self.peak_memory(),
            **self.rule.metrics(),
            "done": self.done,
        }
        self.history.append({**metrics, "alpha": alpha.tolist(), "beta": None if beta is None else beta.tolist(),
                             "genotype": genotype.to_dict()})
        return metrics

    @torch.no_grad()
    def validate(self) -> Dict[str, float]:
        self.model.eval()

        def denoise(batch: torch.Tensor) -> torch.Tensor:
            return self.model(batch.to(self.device)).float().cpu()

        out = self.evaluate(denoise)
        return {"psnr": float(out["psnr"]), "ssim": float(out["ssim"])}

    def none_dominant_edges(self) -> int:
        """Edges whose strongest op is `none` (a collapse signal; `none` is never derived)."""
        if NONE not in self.space.ops:
            return 0
        k = self.space.ops.index(NONE)
        return int((self.model.alpha.argmax(dim=-1) == k).sum())

    def peak_memory(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        import resource  # CPU: the process's peak resident set (a coarse upper bound)
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

    def best_genotype(self, provenance: Optional[dict] = None):
        """The genotype of the best validated supernet (after warm-up); None before one exists."""
        from .genotype import Genotype
        if not self.best:
            return None
        g = Genotype.from_dict(self.best["genotype"])
        return Genotype(g.cells, g.levels, g.widths, provenance=provenance or {})

    # ---- state ---------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to continue the search exactly (plain types and tensors only); for
        a search loaded from a checkpoint without its supernet, that checkpoint again."""
        state = {
            "format": 1,
            "space": self.space.to_dict(),
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "w_opt": self.w_opt.state_dict(),
            "a_opt": self.a_opt.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": _rng_state(self.rng),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "rule": self.rule.state_dict(),
            "history": self.history,
            "best": self.best,
        }
        return without_supernet(state, self.config.max_epochs) if self.supernet_dropped else state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_search_state(state, self.space)
        dropped = state.get(SUPERNET) == DROPPED
        if dropped:  # an ended search's checkpoint: alpha and beta only (without_supernet)
            missing, unexpected = self.model.load_state_dict(state["model"], strict=False)
            if unexpected or any(k in ARCH_KEYS for k in missing):
                raise ValueError("the checkpoint's architecture parameters do not fit this supernet")
        else:
            self.model.load_state_dict(state["model"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.schedule.load_state_dict(state["schedule"])
        self.rng.bit_generator.state = state["rng"]
        restore_rng(state["torch_rng"], state["cuda_rng"])
        self.rule = EarlyStopRule.from_state(state["rule"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.best = dict(state["best"])
        self.supernet_dropped = dropped
        if dropped and not self.done:
            raise ValueError(f"the checkpoint holds a search that ended at epoch {self.epoch} without its supernet's "
                             f"weights (hinas state export --compact), so it cannot run to {self.config.max_epochs} "
                             "epochs; continue from an uncompacted checkpoint, or keep the epoch cap it ended under")
