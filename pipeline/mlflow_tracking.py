"""MLflow tracking for the pipeline, from the driver, through ``MlflowClient`` (no global state).

One parent run per pipeline; child runs (``mlflow.parentRunId``) per search trial, retraining
job and evaluation, tagged with stage, dataset, sigma, ablation and a stable key so a resumed
pipeline finds and reuses its runs instead of duplicating them. Every run is ended FINISHED,
or FAILED / KILLED when the work in it raises: none is left RUNNING. A resumed pipeline skips
the child runs that an earlier attempt finished, and logs into a reused run only the metric
steps it does not hold yet, so a crash and resume leave each curve as one uninterrupted run's.

Store: ``$MLFLOW_TRACKING_URI`` when set (e.g. an ``mlflow server``), else a SQLite file
``OUTPUT_DIR/mlflow.db`` (MLflow 3 refuses the old ``./mlruns`` file store).

A store that fails mid-run is one :class:`TrackingError` (one line, naming the URI), not a
traceback per open run: a server that went away is reported as unreachable, later calls fail
at once, and the runs left RUNNING are closed by the resumed pipeline. Against a server the
MLflow client retries a failed request for minutes by default; unless the user set them,
:data:`HTTP_DEFAULTS` bound that to seconds - the stages' products are on disk, so a resume
loses nothing.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional

STAGE = "hinas.stage"
KEY = "hinas.key"
DATASET = "hinas.dataset"
SIGMA = "hinas.sigma"
ABLATION = "hinas.ablation"
EXPERIMENT = "hinas.experiment"
PARENT = "mlflow.parentRunId"
MAX_PARAM = 500  # MLflow's limit on a param value's length
# MLflow's own defaults are 7 retries with a backoff factor of 2 and a 120 s timeout per request.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or written; the message names the URI."""


def tracking_uri(output_dir) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(output_dir).resolve() / 'mlflow.db'}"


def _is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def server_down(uri: str, timeout: float = 10.0) -> Optional[str]:
    """Why the tracking server at ``uri`` does not answer its health check, or None if it does."""
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).read()
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))
    return None


def check_tracking(uri: str, timeout: float = 10.0) -> None:
    """Fail fast, before any trial starts, when the store is unreachable."""
    if _is_server(uri):
        reason = server_down(uri, timeout)
        if reason is not None:
            raise TrackingError(f"MLflow tracking server {uri} is unreachable ({reason}); start it or unset "
                                "MLFLOW_TRACKING_URI to use a local SQLite store")
    elif uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///"):]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(f"MLflow store {uri}: cannot create {folder} ({exc})") from None
        if not os.access(folder, os.W_OK):
            raise TrackingError(f"MLflow store {uri}: {folder} is not writable")


def flatten(d: Mapping[str, Any], prefix: str = "") -> Dict[str, str]:
    """Nested config -> ``{"search.patience": "5", ...}``, values stringified and truncated."""
    out: Dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)[:MAX_PARAM]
    return out


class _Client:
    """An ``MlflowClient`` whose every failure is one :class:`TrackingError` naming the store.

    Once the server is found unreachable, every later call fails at once with the same message
    instead of retrying against a server that is gone.
    """

    def __init__(self, uri: str):
        from mlflow import MlflowClient

        self.uri, self._client, self.lost = uri, MlflowClient(uri), None

    def __getattr__(self, name: str):
        method = getattr(self._client, name)

        def call(*args, **kwargs):
            if self.lost:
                raise TrackingError(self.lost)
            try:
                return method(*args, **kwargs)
            except Exception as exc:  # MlflowException, requests' and urllib3's errors
                raise self._error(name, exc) from None

        return call

    def _error(self, what: str, exc: Exception) -> TrackingError:
        reason = server_down(self.uri, timeout=5.0) if _is_server(self.uri) else None
        if reason is not None:
            self.lost = (f"MLflow tracking server {self.uri} is unreachable ({reason}); the results on disk are "
                         "kept: once the server is back, resume with `hinas run CONFIG --resume`")
            return TrackingError(self.lost)
        text = str(exc).strip()
        return TrackingError(f"MLflow store {self.uri}: {what} failed ({text.splitlines()[0] if text else type(exc).__name__})")


class Tracker:
    def __init__(self, uri: str, experiment: str, artifact_location: Optional[str] = None):
        check_tracking(uri)
        if _is_server(uri):
            for key, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
        self.uri = uri
        self.client = _Client(uri)
        self._reused: Dict[str, Dict[str, set]] = {}  # run id -> metric key -> steps it holds
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(
            experiment, artifact_location=artifact_location)

    # ---- runs ----------------------------------------------------------------------------
    def find(self, key: str, parent: Optional[str] = None) -> Optional[str]:
        """The run tagged with this key (under ``parent``), if one exists."""
        filt = f"tags.`{KEY}` = '{key}'" + (f" and tags.`{PARENT}` = '{parent}'" if parent else "")
        runs = self.client.search_runs([self.experiment_id], filter_string=filt, max_results=1)
        return runs[0].info.run_id if runs else None

    def start(self, name: str, key: str, parent: Optional[str] = None, tags: Optional[Mapping[str, Any]] = None,
              params: Optional[Mapping[str, Any]] = None) -> str:
        """Reuse the run with this key (resumed pipelines) or create it; status RUNNING."""
        run_id = self.find(key, parent)
        if run_id is None:
            all_tags = {KEY: key, **{k: str(v) for k, v in (tags or {}).items()}}
            if parent:
                all_tags[PARENT] = parent
            run_id = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags).info.run_id
            if params:
                self.log_params(run_id, params)
        else:
            self.client.update_run(run_id, status="RUNNING")
            self._reused[run_id] = {}
        return run_id

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    @contextmanager
    def run(self, name: str, key: str, parent: Optional[str] = None, tags=None, params=None) -> Iterator[str]:
        run_id = self.start(name, key, parent, tags, params)
        try:
            yield run_id
        except KeyboardInterrupt:  # Ctrl-C / SIGTERM (pipeline/signals.py)
            if parent is None:  # the runs of trials that were stopped with it, too
                self._end_failed(run_id, "KILLED", children=True)
            self._end_failed(run_id, "KILLED")
            raise
        except BaseException:
            self._end_failed(run_id, "FAILED")
            raise
        self.end(run_id, "FINISHED")

    def _end_failed(self, run_id: str, status: str, children: bool = False) -> None:
        """End a run (or its RUNNING ``children``) whose work raised, never masking that error:
        with the store gone the run stays RUNNING, and the resumed pipeline closes it
        (:meth:`close_dangling`)."""
        try:
            if children:
                self.close_dangling(run_id, status)
            else:
                self.end(run_id, status)
        except TrackingError:
            pass

    def close_dangling(self, parent: str, status: str = "FAILED") -> int:
        """Mark children of ``parent`` still RUNNING (a crashed driver's) as ``status``."""
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{PARENT}` = '{parent}' and "
                                       "attributes.status = 'RUNNING'")
        for r in runs:
            self.end(r.info.run_id, status)
        return len(runs)

    def finished(self, parent: str) -> set:
        """The keys of the children of ``parent`` that an earlier attempt finished (logged in full)."""
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{PARENT}` = '{parent}' and "
                                       "attributes.status = 'FINISHED'")
        return {r.data.tags.get(KEY) for r in runs}

    # ---- data ----------------------------------------------------------------------------
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        flat = flatten(params)
        existing = self.client.get_run(run_id).data.params
        for k, v in flat.items():
            if k not in existing:  # params are write-once in MLflow
                self.client.log_param(run_id, k, v)

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
        """Numbers only; non-finite values (e.g. -inf before the first best) are skipped."""
        for k, v in metrics.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            if run_id in self._reused:  # a crashed attempt may have logged this step already
                held = self._reused[run_id]
                if k not in held:
                    held[k] = {m.step for m in self.client.get_metric_history(run_id, k)}
                if (step or 0) in held[k]:
                    continue
            self.client.log_metric(run_id, k, float(v), step=step or 0)

    def log_artifact(self, run_id: str, path, artifact_path: Optional[str] = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_json(self, run_id: str, obj: Any, name: str) -> None:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / name
            p.write_text(json.dumps(obj, indent=2, default=str))
            self.log_artifact(run_id, p)

    def log_figure(self, run_id: str, fig, name: str) -> None:
        from .figures import save_png

        with tempfile.TemporaryDirectory() as d:
            self.log_artifact(run_id, save_png(fig, Path(d) / name), "figures")
