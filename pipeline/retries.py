"""How a trial survives the death of its worker: Tune retries it from its last checkpoint.

``FailureConfig(max_failures=MAX_FAILURES)`` lets Tune restart a failed trial (its worker
killed, its node lost) from the trial's latest checkpoint, up to that many times. Tune counts
a trial's failures over its whole life, across ``Tuner.restore``: a trial that used up its
retries and is resumed by ``--resume`` (``resume_errored``) would fail for good at its next
worker death. :class:`RetryBudget` makes the limit a budget per run of the driver instead.
"""
from __future__ import annotations

import errno

from ray import tune

MAX_FAILURES = 2
FULL = (errno.ENOSPC, errno.EDQUOT)


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


def disk_full_error(error: BaseException | None) -> OSError | None:
    """The ENOSPC/EDQUOT OSError behind a failed trial's error (Ray wraps the worker's
    exception, keeping it as ``cause``), or None when the trial failed for another reason."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in FULL:
            return error
        if "[Errno 28] No space left on device" in str(error):
            return OSError(errno.ENOSPC, "No space left on device")
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
    return None


def raise_if_disk_full(results) -> None:
    """A trial that failed (after its retries) because the disk is full ends the run as the
    driver's own full-disk error does, instead of as a trial without a genotype or model."""
    from hinas_core.fsutil import no_space

    for i in range(len(results)):
        try:
            result = results[i]
        except Exception as exc:  # Tune cannot read back the error file it wrote on the full disk
            if no_space(results.experiment_path):
                raise OSError(errno.ENOSPC, "No space left on device", results.experiment_path) from exc
            raise
        full = disk_full_error(result.error)
        if full is not None:
            raise OSError(errno.ENOSPC, "No space left on device", full.filename or result.path)


def tune_state_whole(folder) -> bool:
    """Whether the newest experiment and searcher state files Tune wrote in ``folder`` (those a
    restore reads) are complete: the JSON parses, the searcher's pickle is whole (read with
    :mod:`pickletools`, which executes nothing). Tune writes them in place, so a full disk can
    leave them cut short."""
    import json
    import pickletools
    from pathlib import Path

    newest = {}
    for p in Path(folder).glob("*state-*.json"):  # experiment_state-*, basic-variant-state-*, ...
        if not p.name.startswith("."):  # Tune's own temporaries
            kind = p.name.split("state-")[0]
            newest[kind] = max(newest.get(kind, p), p)
    try:
        for kind, p in newest.items():
            if kind == "experiment_":
                json.loads(p.read_text())
            else:
                for _ in pickletools.genops(p.read_bytes()):
                    pass
    except (OSError, ValueError):
        return False
    return True
