"""Fault injection for the reliability tests: a process SIGKILLs itself at a named point.

``HINAS_FAULT_KILL_AT=POINT[:N][,POINT[:N]...]`` makes the process that reaches ``POINT`` for
the ``N``-th time (default 1) kill itself with SIGKILL: no ``finally``, no ``atexit``, no
flush - as the OOM killer or a lost node would. With ``HINAS_FAULT_ONCE_DIR=DIR`` a point fires
at most once across processes (a marker file ``DIR/POINT`` is created first), so a trial that
Tune restarts after the kill is not killed again. Unset, a point costs one environment lookup.

The points, in pipeline order:

* trial workers: ``search-step`` and ``retrain-step`` (a training batch is drawn, i.e. inside
  an epoch / between two reports; the worker's env comes from the driver with a local Ray);
* the driver, inside Tune's ``fit()``: ``search-begin`` and ``retrain-begin`` (the first step
  of ``fit()``: a new Tuner is saved, its trials not yet), ``search-result`` and
  ``retrain-result`` (a trial's result and checkpoint have arrived, the trial goes on);
* the driver, in :func:`hinas.pipeline.run.run_pipeline`: ``searched`` (summary written),
  ``search-logged``, ``derived``, ``retrained``, ``retrain-logged``, ``evaluate-model`` (one
  model scored), ``evaluated``, ``evaluate-logged`` (one evaluation run logged), ``report``
  (report written, parent run still open).
"""
from __future__ import annotations

import os
import signal
from typing import Dict

from ray import tune

KILL_AT = "HINAS_FAULT_KILL_AT"
ONCE_DIR = "HINAS_FAULT_ONCE_DIR"

_hits: Dict[str, int] = {}


def _targets(spec: str) -> Dict[str, int]:
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, n = item.partition(":")
        out[name] = int(n or 1)
    return out


def kill_point(name: str) -> None:
    """SIGKILL this process here if ``$HINAS_FAULT_KILL_AT`` names this point and hit count."""
    spec = os.environ.get(KILL_AT)
    if not spec:
        return
    n = _targets(spec).get(name)
    if n is None:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] != n:
        return
    once = os.environ.get(ONCE_DIR)
    if once:
        try:
            fd = os.open(os.path.join(once, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
    print(f"hinas: fault injection: SIGKILL at {name}:{n} (pid {os.getpid()})", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


class KillPointSampler:
    """A batch sampler that passes the kill point ``name`` before drawing each batch."""

    def __init__(self, sampler, name: str):
        self.sampler, self.name = sampler, name

    def sample(self, rng, batch_size: int):
        kill_point(self.name)
        return self.sampler.sample(rng, batch_size)


def with_kill_point(sampler, name: str):
    """``sampler`` itself unless fault injection is on (then every batch passes ``name``)."""
    return KillPointSampler(sampler, name) if os.environ.get(KILL_AT) else sampler


class KillPoints(tune.Callback):
    """Driver side, during ``Tuner.fit()``: passes ``<stage>-result`` on every trial result.

    It is part of the run config, so a restored experiment has it too; it reads the
    environment when called, so it does nothing in a run without fault injection.
    """

    def __init__(self, stage: str):
        self.stage = stage
        self.started = False

    def on_step_begin(self, iteration, trials, **info):
        if not self.started:  # the first step of fit() in this process (Tune's counter is restored)
            self.started = True
            kill_point(f"{self.stage}-begin")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        kill_point(f"{self.stage}-result")
