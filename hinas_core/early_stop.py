"""The paper's early-stopping search rule (Sec. 2.3), as plain state that checkpoints.

"We stop the search procedure when the performance of supernet decreases for a
pre-determined number of evaluations. Then we choose the supernet which offers the highest
PSNR ... on validation dataset V." The paper does not give the number; it is ``patience``.

Two readings of "decreases for N evaluations" are offered:

* ``decrease`` (default, literal): N evaluations in a row, each lower than the one before.
* ``below_best``: N evaluations in a row without beating the best so far (classic patience).

Counting, and the choice of the best supernet, start with the first epoch that updates the
architecture: before that alpha and beta are untouched, and a "best" warm-up supernet would
derive an arbitrary genotype. The whole state is a small dict, saved in every checkpoint
and reported with every epoch's metrics, so a restored search continues the same count.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

RULES = ("decrease", "below_best")


@dataclass
class EarlyStopRule:
    patience: int = 5
    rule: str = "decrease"
    count: int = 0
    last_psnr: float = math.nan
    best_psnr: float = -math.inf
    best_ssim: float = math.nan
    best_epoch: int = -1
    stopped: bool = False

    def __post_init__(self):
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"patience (the early-stop N) must be a positive integer, got {self.patience!r}")
        if self.rule not in RULES:
            raise ValueError(f"early-stop rule {self.rule!r} is not one of {list(RULES)}")

    def update(self, epoch: int, psnr: float, ssim: float = math.nan, counting: bool = True) -> bool:
        """Record one evaluation; return True when this evaluation is the new best.

        ``counting`` is False during the weights-only warm-up: nothing is counted or kept.
        """
        if not counting:
            return False
        is_best = psnr > self.best_psnr
        if self.rule == "decrease":
            decreased = not math.isnan(self.last_psnr) and psnr < self.last_psnr
            self.count = self.count + 1 if decreased else 0
        else:
            self.count = 0 if is_best else self.count + 1
        self.last_psnr = psnr
        if is_best:
            self.best_psnr, self.best_ssim, self.best_epoch = psnr, ssim, epoch
        if self.count >= self.patience:
            self.stopped = True
        return is_best

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> "EarlyStopRule":
        return cls(**state)

    def metrics(self) -> dict:
        """What a trial reports each epoch so an external stopper can decide (``es_*`` keys)."""
        return {"es_count": self.count, "es_patience": self.patience, "es_best_psnr": self.best_psnr,
                "es_best_epoch": self.best_epoch, "es_stop": self.stopped}
