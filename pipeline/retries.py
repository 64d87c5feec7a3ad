"""How a trial survives the death of its worker: Tune retries it from its last checkpoint.

``FailureConfig(max_failures=MAX_FAILURES)`` lets Tune restart a failed trial (its worker
killed, its node lost) from the trial's latest checkpoint, up to that many times. Tune counts
a trial's failures over its whole life, across ``Tuner.restore``: a trial that used up its
retries and is resumed by ``--resume`` (``resume_errored``) would fail for good at its next
worker death. :class:`RetryBudget` makes the limit a budget per run of the driver instead.
"""
from __future__ import annotations

from ray import tune

MAX_FAILURES = 2


class RetryBudget(tune.Callback):
    """At the first step of ``fit()``, allow each known trial ``max_failures`` more failures.

    In a new experiment there are no trials yet (Tune's limit applies as is); in a restored one
    each trial's limit becomes its failures so far plus the budget. (Tune's step counter goes on
    from the saved experiment, so "first" is this object's own flag; it is unpickled anew from
    the Tuner's saved run config by every ``Tuner.restore``.)
    """

    def __init__(self, max_failures: int = MAX_FAILURES):
        self.max_failures = max_failures
        self.started = False

    def on_step_begin(self, iteration, trials, **info):
        if not self.started:
            self.started = True
            for trial in trials:
                trial.max_failures = trial.num_failures + self.max_failures


def failure_config():
    return tune.FailureConfig(max_failures=MAX_FAILURES)
