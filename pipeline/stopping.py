"""The paper's early-stopping rule as a Ray Tune stopper.

The counting itself is :class:`hinas_core.early_stop.EarlyStopRule`, which lives inside each
trial, is saved in its checkpoints and is reported with every result (``es_count``,
``es_patience``). Tune does not save a stopper's or scheduler's state across
``Tuner.restore``; since this stopper keeps none and decides from the reported counters, a
restored experiment continues the very same count. Each trial carries its own N, so Optuna
can search over it.
"""
from __future__ import annotations

from typing import Dict, Optional

from ray import tune


class PSNRDecreaseStopper(tune.Stopper):
    """Stop a trial when its validation PSNR has decreased for N evaluations, or at the epoch cap.

    Args:
        max_epochs: the second condition (paper: 100); None leaves it to the trial.
    """

    def __init__(self, max_epochs: Optional[int] = None):
        self.max_epochs = max_epochs

    def __call__(self, trial_id: str, result: Dict) -> bool:
        count, patience = result.get("es_count"), result.get("es_patience")
        if count is not None and patience is not None and count >= patience:
            return True
        return self.max_epochs is not None and result.get("epoch", 0) >= self.max_epochs

    def stop_all(self) -> bool:
        return False

    @staticmethod
    def reason(result: Dict, max_epochs: Optional[int] = None) -> str:
        """Why a trial with this last result ended: ``early-stop``, ``epoch-cap`` or ``running``."""
        if result.get("es_count", 0) >= result.get("es_patience", float("inf")):
            return "early-stop"
        if max_epochs is not None and result.get("epoch", 0) >= max_epochs:
            return "epoch-cap"
        return "running"
