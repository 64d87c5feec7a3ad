"""Retraining a derived network (or a baseline) from scratch (paper Sec. 3.1, "Training settings").

Adam, batch 12 of random 64x64 crops with the 8 rotations/flips (the sampler's job), for a
number of iterations given by the config (paper: 600k). The paper prints an initial lr of
0.05 for Adam; the official code uses SGD 0.05 with poly decay. Both are switches here; the
default is Adam 1e-3 with poly decay, since Adam at 0.05 is far above its usual range.
:class:`Trainer` owns its full state so training resumes exactly from any checkpoint.

Validation: given a ``validate`` callable (the pipeline passes the search's Validation-V, held
out of the training patches), the trainer scores its model every ``validate_every``
iterations and at its last one, keeps the points as its *curve* (iteration, patches,
val_psnr, val_ssim) in its checkpointed state, and with ``plateau`` set stops early once the
curve has plateaued (:mod:`hinas_core.plateau`), recording why.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from .config import ConfigError, check_keys
from .loss import HiNASLoss
from .models import build_model
from .network import count_parameters
from .ops import configure_dcn
from .plateau import PlateauConfig, best_point, patches_text, plateau_reason
from .search import Sampler
from .steps import PRECISIONS, GradStep, autotune_convolutions, restore_rng, synchronize, to_device

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("poly", "cosine", "constant")


@dataclass(frozen=True)
class RetrainConfig:
    """Attributes:
        iterations: optimiser steps in total (paper: 600,000).
        batch_size: patches per step (paper: 12).
        optimizer: ``adam`` (paper) or ``sgd`` (official code, momentum 0.9).
        lr, lr_min: initial and final learning rate; ``schedule`` poly (power 0.9), cosine or constant.
        weight_decay: L2 on the weights.
        ssim_weight: lambda of Eq. 7 (0 = MSE only).
        grad_clip: clip the gradient norm (0 = off).
        report_every: iterations between two reports / checkpoints.
        seed: seeds the initialisation and every random draw.
        cuda_graph: on CUDA, replay each step's forward + backward as a CUDA graph
            (:mod:`hinas_core.steps`). Ignored on CPU.
        precision: ``fp32``, or ``bf16``: the forward pass under bf16 autocast (weights, gradients,
            optimiser and loss stay float32).
        channels_last: keep activations in NHWC, the layout cuDNN's tensor-core kernels use.
        compile: run the model through ``torch.compile`` (fused BatchNorm/activation passes and a
            compiled deformable sampling), captured in the CUDA graph like the eager model.
            precision, channels_last and compile are GPU speed switches, ignored on CPU (where
            compiling takes minutes and bf16 is slower), so one config serves both.
        warmup: iterations of linear learning-rate warm-up from 0 (0 = none).
        validate_every: iterations between two validations (None = ``report_every``; 0 = no
            validation); the last iteration is always validated. Needs a ``validate`` callable
            (the pipeline's: Validation-V, see ``hold_out_val``).
        plateau: stop early once the validation PSNR has plateaued
            (:class:`hinas_core.plateau.PlateauConfig`: ``min_gain_db``, ``window_patches``,
            and ``anneal_patches``: first bring the learning rate down to ``lr_min`` over that
            many patches); None (default) trains every iteration.
        hold_out_val: the pipeline trains on Train-W + Train-A only, leaving the search's
            Validation-V out of the training patches, and validates on V (the search's images,
            seeded noise and ``data.val_protocol``). False trains on every training image, V
            included (the behaviour before validation existed); V is still scored, but then it
            measures fit, not generalisation. Read by :mod:`hinas.pipeline.data`, not here.
    """

    iterations: int = 600_000
    batch_size: int = 12
    optimizer: str = "adam"
    lr: float = 1e-3
    lr_min: float = 1e-6
    schedule: str = "poly"
    weight_decay: float = 0.0
    ssim_weight: float = 0.5
    grad_clip: float = 0.0
    report_every: int = 1000
    seed: int = 0
    cuda_graph: bool = True
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    warmup: int = 0
    validate_every: Optional[int] = None
    plateau: Optional[PlateauConfig] = None
    hold_out_val: bool = True

    def __post_init__(self):
        v = self.validate_every
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ConfigError(f"retrain.validate_every: expected an integer >= 0 (0 = no validation) or null, got {v!r}")
        if self.plateau is not None and not isinstance(self.plateau, PlateauConfig):
            object.__setattr__(self, "plateau", PlateauConfig.from_dict(self.plateau))
        if self.plateau is not None and self.val_every == 0:
            raise ConfigError("retrain.plateau needs validation, but retrain.validate_every is 0")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", int):
                low = 0 if f.name in ("seed", "warmup") else 1
                if isinstance(v, bool) or not isinstance(v, int) or v < low:
                    raise ConfigError(f"retrain.{f.name}: expected an integer >= {low}, got {v!r}")
            elif f.type in ("float", float):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                    raise ConfigError(f"retrain.{f.name}: expected a non-negative number, got {v!r}")
                object.__setattr__(self, f.name, float(v))
            elif f.type in ("bool", bool) and not isinstance(v, bool):
                raise ConfigError(f"retrain.{f.name}: expected true or false, got {v!r}")
        if self.lr <= 0:
            raise ConfigError(f"retrain.lr: must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"retrain.optimizer: {self.optimizer!r} is not one of {list(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"retrain.schedule: {self.schedule!r} is not one of {list(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"retrain.precision: {self.precision!r} is not one of {list(PRECISIONS)}")

    @classmethod
    def from_dict(cls, data: Optional[Mapping[str, Any]]) -> "RetrainConfig":
        data = dict(data or {})
        check_keys("retrain", data, cls)
        return cls(**data)

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.plateau is not None:
            d["plateau"] = self.plateau.to_dict()
        return d

    @property
    def val_every(self) -> int:
        """Iterations between two validations (0 = none)."""
        return self.report_every if self.validate_every is None else self.validate_every


Validator = Callable[[Callable[[torch.Tensor], torch.Tensor]], Mapping[str, float]]

# Steps that rebuild an optimiser's moments after a compact checkpoint: Adam's second moment
# averages over about 1 / (1 - 0.999) = 1000 steps; 200 give it a bias-corrected estimate.
MOMENT_STEPS = 200


class Trainer:
    """Trains one model spec on one sampler; call :meth:`run` until :attr:`done`.

    ``validate``: scores a denoiser (``(B, C, H, W)`` in [0, 1] -> same) and returns at least
    ``{"psnr", "ssim"}``; None: no validation (then ``config.plateau`` is an error).
    """

    def __init__(self, spec: Mapping[str, Any], config: RetrainConfig, sampler: Sampler,
                 device: torch.device | str = "cpu", validate: Optional[Validator] = None):
        if config.plateau is not None and (validate is None or config.val_every == 0):
            raise ValueError("retrain.plateau needs validation: pass a validate callable and keep validate_every > 0")
        self.spec, self.config, self.sampler = dict(spec), config, sampler
        self.validate = validate
        self.curve: List[Dict[str, Any]] = []  # one point per validation: iteration, patches, val_psnr, val_ssim
        self.stop_reason: Optional[str] = None  # set when the plateau rule stopped the job early
        self.anneal_from: Optional[int] = None  # the iteration where the plateau rule began the anneal
        self.device = torch.device(device)
        autotune_convolutions(self.device)
        torch.manual_seed(config.seed)
        self.model = build_model(self.spec).to(self.device)
        self.fast = self.device.type == "cuda"  # the speed switches act on CUDA only
        self.channels_last = config.channels_last and self.fast
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.params = count_parameters(self.model)
        self.criterion = HiNASLoss(config.ssim_weight)
        if config.optimizer == "adam":
            self.opt = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                        fused=self.device.type == "cuda")
        else:
            self.opt = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
        self.step = GradStep(self._compiled() if config.compile and self.fast else self.model, self.criterion,
                             list(self.model.parameters()), config.cuda_graph,
                             autocast=PRECISIONS[config.precision] if self.fast else None)
        self.rng = np.random.Generator(np.random.PCG64(config.seed))
        self.iteration = 0

    def _compiled(self) -> torch.nn.Module:
        # The compiler needs one fixed DCNv2 kernel: the sampled one (grid_sample + 1x1 conv),
        # which it fuses; no recompute, since it plans the saved tensors itself.
        configure_dcn(self.model, impl="sampled", recompute=False)
        return torch.compile(self.model, dynamic=False)

    @property
    def done(self) -> bool:
        return self.iteration >= self.end or self.stop_reason is not None

    @property
    def end(self) -> int:
        """The iteration the job trains to: the budget's last, or the anneal's once it began."""
        if self.anneal_from is None:
            return self.config.iterations
        anneal = self.config.plateau.anneal_patches if self.config.plateau else 0
        steps = math.ceil(anneal / self.config.batch_size)
        return min(self.config.iterations, self.anneal_from + max(1, steps))

    @property
    def patches(self) -> int:
        """Training patches seen so far."""
        return self.iteration * self.config.batch_size

    def lr_at(self, it: int) -> float:
        if self.anneal_from is not None and it >= self.anneal_from:  # linear from the schedule's value down to lr_min
            start, low = self._scheduled_lr(self.anneal_from), self.config.lr_min
            return start + (low - start) * min(1.0, (it - self.anneal_from) / (self.end - self.anneal_from))
        return self._scheduled_lr(it)

    def _scheduled_lr(self, it: int) -> float:
        c = self.config
        if it < c.warmup:
            return c.lr * (it + 1) / c.warmup
        frac = min(1.0, it / c.iterations)
        if c.schedule == "poly":
            return c.lr_min + (c.lr - c.lr_min) * (1 - frac) ** 0.9
        if c.schedule == "cosine":
            return c.lr_min + (c.lr - c.lr_min) * 0.5 * (1 + math.cos(math.pi * frac))
        return c.lr

    def steps(self, n: int) -> List[torch.Tensor]:
        """``n`` training steps; returns their losses as device tensors, unread (no host sync)."""
        self.model.train()
        losses = []
        for _ in range(n):
            losses.append(self._update(self.rng, self.lr_at(self.iteration)))
            self.iteration += 1
        return losses

    def _update(self, rng: np.random.Generator, lr: float) -> torch.Tensor:
        """One optimiser step at ``lr`` on a batch drawn with ``rng``; returns its loss, unread."""
        for group in self.opt.param_groups:
            group["lr"] = lr
        noisy, clean = self.sampler.sample(rng, self.config.batch_size)
        loss = self.step(to_device(noisy, self.device, self.channels_last), to_device(clean, self.device, self.channels_last))
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.step.params, self.config.grad_clip)
        self.opt.step()
        return loss

    def _todo(self, iterations: Optional[int]) -> int:
        if self.stop_reason is not None:
            return 0
        return min(iterations or self.config.report_every, self.end - self.iteration)

    def _metrics(self, n: int, mean_loss: float, seconds: float) -> Dict[str, Any]:
        out = {"iteration": self.iteration, "train_loss": mean_loss,
               "lr": self.lr_at(self.iteration), "patches_per_s": n * self.config.batch_size / max(seconds, 1e-9),
               "seconds": seconds, "params": self.params, "done": self.done, "patches_seen": self.patches}
        if self.curve:
            out.update(val_psnr=self.curve[-1]["val_psnr"], val_ssim=self.curve[-1]["val_ssim"],
                       best_val_psnr=(best_point(self.curve) or {"val_psnr": math.nan})["val_psnr"])
        if self.stop_reason is not None:
            out["stop_reason"] = self.stop_reason
        return out

    def _validating(self) -> bool:
        return self.validate is not None and self.config.val_every > 0

    def _validation_due(self) -> bool:
        """At every multiple of ``validate_every`` and at the last iteration, once."""
        if not self._validating() or self.iteration == 0 or (self.curve and self.curve[-1]["iteration"] == self.iteration):
            return False
        return self.iteration % self.config.val_every == 0 or self.iteration >= self.end

    def validate_now(self) -> Dict[str, Any]:
        """Score the model on the validation data, add the point to :attr:`curve`, apply the
        plateau rule; returns the point.

        The eager model runs in eval mode under ``no_grad``, in float32 (no autocast, whatever
        ``precision`` says: the curve scores the weights as the saved model will be scored).
        Never the compiled model: it is compiled with ``dynamic=False`` for the training batch,
        so each validation batch shape (a remainder batch of tiles, every image size of the
        whole-image protocol) and eval-mode BatchNorm would recompile it (in NHWC too); and it
        runs outside the CUDA graph, which replays only the training step. The eager model
        shares the parameters, so it scores the very weights being trained. Validation draws no
        random numbers, so it leaves the training trajectory unchanged.

        A validation that raises is recorded as a NaN point with its ``error`` and a warning:
        the job trains on (a NaN point never stops it), since the job's product is the model and
        its budget may be hours of GPU time.
        """
        try:
            scores = self.validate(self.denoiser())
            point = {"iteration": self.iteration, "patches": self.patches,
                     "val_psnr": float(scores["psnr"]), "val_ssim": float(scores["ssim"])}
        except Exception as exc:  # noqa: BLE001 - a failed validation must not end hours of training
            point = {"iteration": self.iteration, "patches": self.patches, "val_psnr": math.nan, "val_ssim": math.nan,
                     "error": f"{type(exc).__name__}: {exc}"}
            warnings.warn(f"retraining: the validation at iteration {self.iteration} failed ({point['error']}); "
                          "training goes on, the curve records NaN there", RuntimeWarning, stacklevel=2)
        self.curve.append(point)
        self._apply_plateau_rule()
        return point

    def _apply_plateau_rule(self) -> None:
        """After a validation: stop (or begin the anneal) where the curve has plateaued; at the
        anneal's end, stop. The curve and ``anneal_from`` travel in the checkpoint, so a resumed
        job decides as an uninterrupted one."""
        rule = self.config.plateau
        if rule is None:
            return
        if self.anneal_from is not None:
            if self.iteration >= self.end:
                fired = [(p["patches"], p["val_psnr"]) for p in self.curve if p["iteration"] <= self.anneal_from]
                self.stop_reason = (f"{plateau_reason(fired, rule) or 'plateau'} at {patches_text(self.anneal_from * self.config.batch_size)}"
                                    f" patches, then the learning rate annealed from {self._scheduled_lr(self.anneal_from):.2g}"
                                    f" to {self.config.lr_min:.2g} over {patches_text(self.patches - self.anneal_from * self.config.batch_size)} patches")
            return
        if self.iteration >= self.config.iterations:  # the budget's end is no early stop
            return
        reason = plateau_reason([(p["patches"], p["val_psnr"]) for p in self.curve], rule)
        if reason is not None and rule.anneal_patches:
            self.anneal_from = self.iteration
        else:
            self.stop_reason = reason

    def run(self, iterations: Optional[int] = None) -> Dict[str, Any]:
        """Train ``iterations`` steps (default ``report_every``, never past the total), validating
        whenever one is due (see :meth:`validate_now`); return the metrics, with
        ``validations``: the curve points added by this call. A plateau stop ends the call early.
        ``seconds`` and ``patches_per_s`` count training only; ``val_seconds`` the validations."""
        t0 = time.perf_counter()
        todo, losses, points, val_seconds = self._todo(iterations), [], [], 0.0
        while todo > 0:
            n = todo
            if self._validating():  # stop at the next validation point
                n = min(n, self.config.val_every - self.iteration % self.config.val_every)
            losses += self.steps(n)
            todo -= n
            if self._validation_due():
                synchronize(self.device)  # the training steps' time is not the validation's
                v0 = time.perf_counter()
                points.append(self.validate_now())
                val_seconds += time.perf_counter() - v0
                if self.stop_reason is not None:
                    break
                todo = min(todo, self.end - self.iteration)  # an anneal that began here may end sooner
        mean_loss = _mean(losses)  # reading it waits for the GPU: the time covers its work
        metrics = self._metrics(len(losses), mean_loss, time.perf_counter() - t0 - val_seconds)
        return {**metrics, "val_seconds": val_seconds, "validations": points}

    def denoiser(self):
        """The model as an evaluation callable: ``(B, C, H, W)`` in [0, 1] -> same, on the CPU."""
        self.model.eval()

        @torch.no_grad()
        def denoise(batch: torch.Tensor) -> torch.Tensor:
            return self.model(batch.to(self.device)).float().cpu()

        return denoise

    def state_dict(self) -> Dict[str, Any]:
        return {"format": 1, "spec_kind": self.spec["kind"], "config": self.config.to_dict(), "iteration": self.iteration,
                "model": self.model.state_dict(), "opt": self.opt.state_dict(), "rng": self.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "curve": [dict(p) for p in self.curve],
                "stop_reason": self.stop_reason, "anneal_from": self.anneal_from}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != 1 or state.get("spec_kind") != self.spec["kind"]:
            raise ValueError("the checkpoint does not belong to this model")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.rng.bit_generator.state = state["rng"]
        restore_rng(state["torch_rng"])
        self.iteration = int(state["iteration"])
        # Checkpoints written before validation existed have neither: an empty curve, not stopped.
        self.curve = [dict(p) for p in state.get("curve", [])]
        self.stop_reason = state.get("stop_reason")
        self.anneal_from = state.get("anneal_from")
        if self.iteration and not state["opt"].get("state"):
            self.reestimate_moments()

    def reestimate_moments(self, steps: int = MOMENT_STEPS) -> None:
        """Rebuild the optimiser's moments (a compact checkpoint drops them, ``hinas state export
        --compact``) from ``steps`` gradient steps with the learning rate held at 0: Adam's (or
        SGD's) statistics fill up while the weights stay put. Without them, Adam's first steps
        after the cut would each move every weight by about the full learning rate. The batches
        come from a generator of their own, so the job's data order is the one it was cut with;
        the weights, iteration and curve are unchanged."""
        rng = np.random.Generator(np.random.PCG64([self.config.seed, self.iteration]))
        buffers = [b.detach().clone() for b in self.model.buffers()]  # BatchNorm statistics stay put too
        self.model.train()
        for _ in range(min(steps, self.iteration)):
            self._update(rng, 0.0)
        with torch.no_grad():
            for b, saved in zip(self.model.buffers(), buffers):
                b.copy_(saved)


def run_together(trainers: Sequence[Trainer], iterations: Optional[int] | Sequence[int] = None) -> List[Dict[str, Any]]:
    """Train several models at once on one GPU, each step of each model on its own CUDA stream.

    One model at batch 12 leaves most of an H100/H200 idle between its small kernels; with its
    steps (CUDA-graph replays) on separate streams, the GPU overlaps the models' kernels. Each
    trainer keeps its own sampler, RNG and state, so every model trains exactly as it would
    alone (same batches, same updates), and checkpoints stay per model. Off CUDA the models
    simply take turns. ``iterations``: one count for all, or one per trainer (e.g. equal patches
    at different batch sizes). Returns each trainer's metrics, as :meth:`Trainer.run` would,
    without validating (its callers, the benchmarks, score the models themselves).
    """
    counts = list(iterations) if isinstance(iterations, Sequence) else [iterations] * len(trainers)
    todo = [t._todo(n) for t, n in zip(trainers, counts)]
    cuda = all(t.device.type == "cuda" for t in trainers)
    streams = [torch.cuda.Stream(t.device) if cuda else None for t in trainers]
    losses: List[List[torch.Tensor]] = [[] for _ in trainers]
    t0 = time.perf_counter()
    for i in range(max(todo, default=0)):
        for k, (t, stream) in enumerate(zip(trainers, streams)):
            if i >= todo[k]:
                continue
            if stream is None:
                losses[k] += t.steps(1)
                continue
            stream.wait_stream(torch.cuda.current_stream(t.device))
            with torch.cuda.stream(stream):
                losses[k] += t.steps(1)
    for t, stream in zip(trainers, streams):
        if stream is not None:
            torch.cuda.current_stream(t.device).wait_stream(stream)
    means = [_mean(ls) for ls in losses]
    seconds = time.perf_counter() - t0
    return [t._metrics(len(ls), m, seconds) for t, ls, m in zip(trainers, losses, means)]


def _mean(losses: List[torch.Tensor]) -> float:
    return torch.stack(losses).mean().item() if losses else math.nan
