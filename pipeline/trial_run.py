"""A trial's own MLflow run: opened at its first step, logged as it trains, ended at its last.

The search and retraining trainables call :func:`open_trial_run` with the ``tracking`` entry
the driver put in their Tune config (store URI, experiment, the stage's run, tags) and get a
:class:`TrialRun`:

* the run is found by its key under its stage's run (the entry's parent, which a resumed
  pipeline reuses), so a trial that Tune retries from a checkpoint, or that ``hinas run
  --resume`` restores, continues *its* run (status back to RUNNING) instead of opening a
  second one; steps the run already holds are not logged again;
* every call is queued and sent in order; when the store cannot be reached the trial goes on,
  prints one warning, and retries every :data:`RETRY_S` seconds, sending what it kept (with
  the original timestamps) once the store is back. If it is still gone when the trial ends,
  the run is left RUNNING and the driver completes it from the trial's files on disk
  (:meth:`.mlflow_tracking.Tracker.complete`) once the store is back.

Written by hand because neither library has it: Ray Tune's ``setup_mlflow`` starts a new run
for every (re)start of a trial through MLflow's one-active-run fluent API, and MLflow's async
logging drops what fails to send instead of keeping it.
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

from ray import tune

KEY = "hinas.key"
PARENT = "mlflow.parentRunId"
RETRY_S = 10.0  # how often a trial retries a lost store
FINISH_WAIT_S = 20.0  # how long a finished trial waits for a lost store before leaving it to the driver
# The queue does the retrying: one request must not hold the training up for minutes.
TRIAL_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def numbers(metrics: Mapping[str, Any]) -> Dict[str, float]:
    """The finite numbers of ``metrics`` (bools, strings, NaN and inf are left out)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class TrialRun:
    """One trial's run; every method queues its call and returns at once, whatever the store."""

    def __init__(self, spec: Mapping[str, Any], key: str, name: str, tags: Mapping[str, Any],
                 params: Optional[Mapping[str, Any]] = None, out=None):
        from mlflow import MlflowClient

        for k, v in TRIAL_HTTP.items():
            os.environ[k] = v
        self.uri, self.experiment_id, self.parent = spec["uri"], spec["experiment_id"], spec["parent"]
        self.client = MlflowClient(self.uri)
        self.key, self.name = key, name
        self.tags = {**{k: str(v) for k, v in (spec.get("tags") or {}).items()},
                     **{k: str(v) for k, v in tags.items()}, KEY: key, PARENT: self.parent}
        self.params = {k: str(v)[:500] for k, v in (params or {}).items()}
        self.run_id: Optional[str] = None
        self.ended = False
        self.held: Optional[Dict[str, set]] = None  # metric key -> steps a reopened run holds
        self._queue: List[Callable[[], None]] = [self._open]
        self._lost_since: Optional[float] = None
        self._next_try = 0.0
        self._out = out or sys.stderr
        self.flush()

    # ---- what the trainables call -----------------------------------------------------------
    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """The finite numbers of ``metrics`` at ``step``, stamped now."""
        values, now = numbers(metrics), int(time.time() * 1000)
        self._queue.append(lambda: self._log(values, step, now))
        self.flush()

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        tags = {k: str(v) for k, v in tags.items()}
        self._queue.append(lambda: self._batch(tags=tags))
        self.flush()

    def finish(self, status: str = "FINISHED") -> bool:
        """End the run now (its real end time); True once the store holds everything.

        A lost store is waited for up to :data:`FINISH_WAIT_S`; after that the run is left
        RUNNING for the driver to complete and close. Only the first call counts (a trial that
        ended its run before its last report may see Tune stop it inside that report)."""
        if self.ended:
            return not self._queue
        self.ended = True
        end = int(time.time() * 1000)
        self._queue.append(lambda: self.client.set_terminated(self.run_id, status=status, end_time=end))
        deadline = time.time() + FINISH_WAIT_S
        while not self.flush(force=True) and time.time() < deadline:
            time.sleep(min(2.0, max(0.0, deadline - time.time())))
        if self._queue:
            self._say(f"still cannot reach {self.uri}: {len(self._queue)} tracking call(s) of '{self.name}' are "
                      "dropped; the run is left RUNNING and `hinas run --resume` completes it from the files on disk")
            return False
        return True

    @property
    def unsent(self) -> int:
        """Tracking calls kept because the store could not be reached (0 when all went)."""
        return len(self._queue) if self._lost_since is not None else 0

    # ---- the queue --------------------------------------------------------------------------
    def flush(self, force: bool = False) -> bool:
        """Send what is queued, in order; True when nothing is left. While the store is lost,
        only one attempt every :data:`RETRY_S` seconds (unless ``force``)."""
        if self._lost_since is not None and not force and time.time() < self._next_try:
            return False
        while self._queue:
            try:
                self._queue[0]()
            except Exception as exc:  # MlflowException, requests' and urllib3's errors
                if self._lost_since is None:
                    self._lost_since = time.time()
                    text = str(exc).strip().splitlines()
                    self._say(f"MLflow store {self.uri} failed ({text[0][:200] if text else type(exc).__name__}); "
                              f"the trial goes on and keeps its tracking calls, retrying every {RETRY_S:g} s")
                self._next_try = time.time() + RETRY_S
                return False
            self._queue.pop(0)
        if self._lost_since is not None:
            self._say(f"MLflow store {self.uri} is back after {time.time() - self._lost_since:.0f} s; "
                      "the kept tracking calls are sent")
            self._lost_since = None
        return True

    def _say(self, text: str) -> None:
        print(f"hinas trial {self.name}: {text}", file=self._out, flush=True)

    def _open(self) -> None:
        """Reopen this trial's run (a retry or a resume) or create it."""
        filt = f"tags.`{KEY}` = '{self.key}' and tags.`{PARENT}` = '{self.parent}'"
        found = self.client.search_runs([self.experiment_id], filter_string=filt, max_results=1)
        if found:
            run = found[0]
            self.run_id = run.info.run_id
            self.held = {k: {m.step for m in self.client.get_metric_history(self.run_id, k)} for k in run.data.metrics}
            if run.info.status != "RUNNING":
                self.client.update_run(self.run_id, status="RUNNING")
            new_params = {k: v for k, v in self.params.items() if k not in run.data.params}  # write-once
        else:
            self.run_id = self.client.create_run(self.experiment_id, tags=self.tags, run_name=self.name).info.run_id
            self.held, new_params = {}, self.params
        self._batch(params=new_params)

    def _log(self, values: Dict[str, float], step: int, timestamp: int) -> None:
        from mlflow.entities import Metric

        fresh = {k: v for k, v in values.items() if step not in self.held.get(k, ())}
        self._batch(metrics=[Metric(k, v, timestamp, step) for k, v in fresh.items()])
        for k in fresh:
            self.held.setdefault(k, set()).add(step)

    def _batch(self, metrics=(), params: Optional[Mapping[str, str]] = None, tags: Optional[Mapping[str, str]] = None) -> None:
        from mlflow.entities import Param, RunTag

        params = [Param(k, v) for k, v in (params or {}).items()]
        tags = [RunTag(k, v) for k, v in (tags or {}).items()]
        if metrics or params or tags:
            self.client.log_batch(self.run_id, metrics=list(metrics), params=params, tags=tags)


class NoRun:
    """What a trial logs to when its stage runs without MLflow (``hinas search`` on its own)."""

    run_id = None
    unsent = 0

    def log(self, metrics, step) -> None:
        pass

    def set_tags(self, tags) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> bool:
        return True


def open_trial_run(config: Mapping[str, Any], key: str, name: str, tags: Mapping[str, Any],
                   params: Optional[Mapping[str, Any]] = None):
    """The trial's run, from the ``tracking`` entry of its Tune config (none: :class:`NoRun`)."""
    spec = config.get("tracking")
    return TrialRun(spec, key, name, tags, params) if spec else NoRun()


UNSENT = "mlflow_unsent"  # in a trial's Tune results: its tracking calls kept while the store is lost
# In a trial's Tune results: the wall clock of the report, to the sub-second (Tune's own
# ``timestamp`` is whole seconds, so a summary's start and end read from it were up to 1 s off).
REPORTED_AT = "reported_at"


def report_fields(run) -> Dict[str, float]:
    """What a trainable adds to every Tune report: the run's unsent calls and the report's time."""
    return {UNSENT: run.unsent, REPORTED_AT: time.time()}


def reported_times(frame):
    """The report times (seconds) of a trial's metrics dataframe: :data:`REPORTED_AT`, or Tune's
    whole-second ``timestamp`` for results reported before it existed."""
    if REPORTED_AT in frame:
        return frame[REPORTED_AT].fillna(frame["timestamp"]).astype(float)
    return frame["timestamp"].astype(float)


class TrackingWatch(tune.Callback):
    """Says on the driver's console when a trial loses the MLflow store and when it has it back.

    The trials' own warnings go to their worker logs (Ray does not forward them); each trial
    reports :data:`UNSENT` with its results, and this Tune callback turns a change of it into
    one line."""

    def __init__(self, out=None):
        self.lost: Dict[str, int] = {}
        self._out = out

    def on_trial_result(self, iteration, trials, trial, result, **info):
        unsent, name = int(result.get(UNSENT) or 0), str(trial)
        if unsent and name not in self.lost:
            self._say(f"trial {name} cannot reach the MLflow store: it trains on, keeps its tracking calls "
                      f"({unsent} so far) and sends them once the store is back")
        elif not unsent and name in self.lost:
            self._say(f"trial {name} reached the MLflow store again; its kept tracking calls are sent")
        if unsent:
            self.lost[name] = unsent
        else:
            self.lost.pop(name, None)

    def _say(self, text: str) -> None:
        print(f"hinas: {text}", file=self._out or sys.stderr, flush=True)


def memory_metrics(device) -> Dict[str, float]:
    """GPU memory in MiB on CUDA (allocated now and the peak); nothing on the CPU."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return {}
    return {"gpu_memory_mb": torch.cuda.memory_allocated(device) / 2**20,
            "gpu_peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20}
