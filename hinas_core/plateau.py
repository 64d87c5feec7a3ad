"""Stopping a retraining job once its validation PSNR has plateaued (issue #12).

The paper trains every network for 600k iterations. Issue #12 allows a job to stop earlier
only where its validation curve shows it has stopped improving: less than 0.05 dB gained over
its last 1 M patches. Precisely, on the validation curve ``[(patches_i, psnr_i)]`` (patches
seen when validation ``i`` ran, in increasing order), after the validation at ``P`` patches:

* ``best(x)`` is the highest PSNR among the validations at ``patches_i <= x`` (a curve's best
  so far: it never decreases);
* the *gain over the window* is ``best(P) - best(P - window_patches)``;
* the job has plateaued when some validation lies at or before ``P - window_patches`` (so at
  least ``window_patches`` patches are covered by the curve) and that gain is below
  ``min_gain_db``.

Using the best so far on both sides makes the rule robust to a noisy curve: a single low
validation neither stops a job nor keeps it going, and a job still setting new highs by at
least ``min_gain_db`` per window never stops. The rule is a pure function of the curve, so a
resumed job that carries its curve decides exactly as an uninterrupted one.

A plateau under a slowly decaying schedule (the paper's poly over 600k iterations) comes while
the learning rate is still high: the weights then wander around the plateau from one validation
to the next, and stopping at once keeps wherever they happen to be. With ``anneal_patches`` the
job instead finishes with the learning rate brought down linearly to ``lr_min`` over that many
more patches, then stops (:class:`hinas_core.retrain.Trainer`); 0 stops at once.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Sequence, Tuple

from .config import ConfigError, check_keys


@dataclass(frozen=True)
class PlateauConfig:
    """Attributes:
        min_gain_db: the least validation-PSNR gain (dB) over the window that keeps a job going
            (issue #12: 0.05).
        window_patches: the window, in training patches (iterations x batch size; issue #12: 1 M).
        anneal_patches: once the rule fires, train this many more patches with the learning
            rate falling linearly to ``lr_min``, then stop (0: stop at once, the issue's rule).
    """

    min_gain_db: float = 0.05
    window_patches: int = 1_000_000
    anneal_patches: int = 0

    def __post_init__(self):
        g = self.min_gain_db
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g <= 0:
            raise ConfigError(f"retrain.plateau.min_gain_db: expected a number > 0, got {g!r}")
        object.__setattr__(self, "min_gain_db", float(g))
        w = self.window_patches
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise ConfigError(f"retrain.plateau.window_patches: expected an integer >= 1, got {w!r}")
        a = self.anneal_patches
        if isinstance(a, bool) or not isinstance(a, int) or a < 0:
            raise ConfigError(f"retrain.plateau.anneal_patches: expected an integer >= 0 (0 = stop at once), got {a!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PlateauConfig":
        if not isinstance(data, Mapping):
            raise ConfigError(f"retrain.plateau: expected a mapping (min_gain_db, window_patches) or null, got {data!r}")
        check_keys("retrain.plateau", data, cls)
        return cls(**data)

    def to_dict(self) -> dict:
        # No anneal is written as before the key existed, so the models and state bundles of
        # runs made then keep their config hashes.
        d = asdict(self)
        if not d["anneal_patches"]:
            del d["anneal_patches"]
        return d


def _psnr(v: float) -> float:
    return v if isinstance(v, (int, float)) and not math.isnan(v) else -math.inf


def best_point(curve: Sequence[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    """The validation point with the highest ``val_psnr``, NaN points (failed validations) left
    out; None when there is none."""
    scored = [p for p in curve if _psnr(p["val_psnr"]) > -math.inf]
    return max(scored, key=lambda p: p["val_psnr"]) if scored else None


def window_gain(curve: Sequence[Tuple[int, float]], window_patches: int) -> Optional[float]:
    """``best(P) - best(P - window_patches)`` at the curve's last point ``P`` (see the module
    doc), or None while no validation lies ``window_patches`` or more before it."""
    if not curve:
        return None
    now = curve[-1][0]
    before = [_psnr(v) for p, v in curve if p <= now - window_patches]
    if not before:
        return None
    return max(_psnr(v) for _, v in curve) - max(before)


def patches_text(n: int) -> str:
    """``1.0 M`` for a million patches and more than 100k; the plain count below."""
    return f"{n / 1e6:.1f} M" if n >= 100_000 else f"{n:,}"


def plateau_reason(curve: Sequence[Tuple[int, float]], config: PlateauConfig) -> Optional[str]:
    """Why the job stops now (``"plateau: +0.030 dB over the last 1.0 M patches"``), or None."""
    gain = window_gain(curve, config.window_patches)
    if gain is None or math.isnan(gain) or gain >= config.min_gain_db:
        return None  # NaN: no finite validation on either side, nothing to judge
    return f"plateau: {gain:+.3f} dB over the last {patches_text(config.window_patches)} patches"
