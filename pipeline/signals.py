"""Ctrl-C and SIGTERM (how a terminal, a cluster's scheduler and ``ray job stop`` end a job).

The first SIGINT or SIGTERM during a Tune stage lets every running trial reach its next
checkpoint (the end of its current search epoch or retraining interval), then stops Tune the
way Tune stops on its own interrupt: the experiment state is saved with those trials still
unfinished, their workers are ended, and ``fit()`` returns. The driver then raises
:class:`Interrupted`, so every open MLflow run is ended KILLED and the command prints one line;
``--resume`` continues each trial from the checkpoint it just wrote. A second signal stops at
once (trials lose the work since their last checkpoint); a third is not caught.

Outside a Tune stage (deriving, evaluating, logging) the first signal raises
:class:`Interrupted` where the driver is; every file it was writing goes through
:func:`hinas_core.fsutil.atomic_file`, so the previous complete file stays.

Tune's own SIGINT handler stops at once, before running trials checkpoint; it is turned off
(``TUNE_DISABLE_SIGINT_HANDLER``) and Tune's always-installed SIGUSR1 handler is what
:class:`GracefulStop` calls to end ``fit()``. ``ray.init`` installs a SIGTERM handler that exits
without a word, so the handlers are installed again just before each ``fit()``.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from typing import Optional, Set

from ray import tune

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; MLflow's runs are ended KILLED on the way out."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's code for "ended by this signal"


class _State:
    def __init__(self):
        self.signum: Optional[int] = None  # the first signal received
        self.count = 0
        self.in_fit = False
        self.stopped = False  # Tune was asked to stop


_state = _State()
_previous = {}


def _tune_stop() -> None:
    """End the current ``fit()`` as Tune's own interrupt does (its SIGUSR1 handler)."""
    if _state.stopped:
        return
    _state.stopped = True
    handler = signal.getsignal(signal.SIGUSR1)
    if callable(handler):
        handler(signal.SIGUSR1, None)


def _handler(signum, frame) -> None:
    _state.count += 1
    if _state.signum is None:
        _state.signum = signum
    name = signal.Signals(signum).name
    if not _state.in_fit or _state.count >= 3:
        raise Interrupted(_state.signum)
    if _state.count == 1:
        print(f"hinas: {name} received: the running trials stop at their next checkpoint; "
              "send it again (Ctrl-C) to stop at once", file=sys.stderr, flush=True)
    else:
        print(f"hinas: {name} received again: stopping now; the trials keep their last checkpoint",
              file=sys.stderr, flush=True)
        _tune_stop()


def install() -> None:
    """Catch SIGINT and SIGTERM in this (main) thread; idempotent. :func:`restore` undoes it."""
    if threading.current_thread() is not threading.main_thread():
        return
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    for s in SIGNALS:
        current = signal.getsignal(s)
        if current is not _handler:
            _previous.setdefault(s, current)
            signal.signal(s, _handler)


def restore() -> None:
    """Put back the handlers :func:`install` replaced, and forget any signal received."""
    global _state
    while _previous:
        s, h = _previous.popitem()
        signal.signal(s, h)
    _state = _State()


def raise_if_stopped() -> None:
    if _state.signum is not None:
        raise Interrupted(_state.signum)


def fit(tuner, folder):
    """``tuner.fit()`` of an experiment under ``folder``, under the handlers above; raises
    :class:`Interrupted` after a stop, and ``OSError(ENOSPC)`` when the disk under ``folder``
    filled up: a trial died of it (:func:`.retries.raise_if_disk_full`), or Tune failed on it
    (it cannot read back the error files it wrote on the full disk)."""
    from hinas_core.fsutil import no_space

    from .retries import raise_if_disk_full

    install()  # again: ray.init replaced the SIGTERM handler
    raise_if_stopped()  # a signal between two stages
    _state.in_fit, _state.stopped = True, False
    try:
        results = tuner.fit()
    except Exception as exc:
        if no_space(folder):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder)) from exc
        raise
    finally:
        _state.in_fit = False
    raise_if_stopped()
    raise_if_disk_full(results)
    return results


class GracefulStop(tune.Callback):
    """After the first signal, stop ``fit()`` once each trial that was running has checkpointed.

    Part of a stage's run config (so a restored experiment has it too); it does nothing until
    a signal arrives.
    """

    def __init__(self):
        self.waiting: Optional[Set[str]] = None
        self.saved: Set[str] = set()

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        if _state.signum is not None:
            self.saved.add(trial.trial_id)

    def on_step_end(self, iteration, trials, **info):
        if _state.signum is None or _state.stopped:
            return
        running = {t.trial_id for t in trials if t.status == "RUNNING"}
        if self.waiting is None:  # the trials at work when the signal came; later ones are not waited for
            self.waiting = set(running)
        if not (self.waiting & running) - self.saved:
            _tune_stop()
