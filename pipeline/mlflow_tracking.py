"""MLflow tracking for the pipeline's driver, through ``MlflowClient`` (no global state).

One parent run per pipeline, one run per stage under it (:meth:`Tracker.stage`: ``search``,
``derive``, ``retrain``, ``evaluate``), and under each stage's run (``mlflow.parentRunId``) one
run per search trial, retraining job and evaluation, tagged with stage, model kind, dataset,
sigma, ablation (and the genotype's hash). Every run has a stable key, so a resumed pipeline
finds and reuses its runs instead of duplicating them. The search and retraining trials own
their runs and log into them while they train (:mod:`.trial_run`, given
:meth:`Tracker.trial_spec` in their config); the driver sequences
the stages, runs the evaluations, and *completes* each trial's run with the stage's products
(:meth:`Tracker.complete`: artifacts, figures, and any step a trial could not send). A
completed run carries ``hinas.complete = true``; a resumed pipeline skips those. Every run is
ended FINISHED, or FAILED / KILLED when the work in it raises: none is left RUNNING. Into a
reused run only the metric steps it does not hold yet are logged, so a crash and resume leave
each curve as one uninterrupted run's.

Store: ``$MLFLOW_TRACKING_URI`` when set (e.g. an ``mlflow server``), else a SQLite file
``OUTPUT_DIR/mlflow.db`` (MLflow 3 refuses the old ``./mlruns`` file store). With a SQLite
store the experiment's artifacts go beside it, ``OUTPUT_DIR/mlartifacts`` (absolute), not to
``./mlruns`` of whatever folder the command ran in.

A store that fails mid-run is one :class:`TrackingError` (one line, naming the URI), not a
traceback per open run: a server that went away is reported as unreachable, later calls fail
at once, and the runs left RUNNING are closed by the resumed pipeline. Against a server the
MLflow client retries a failed request for minutes by default; unless the user set them,
:data:`HTTP_DEFAULTS` bound that to seconds - the stages' products are on disk, so a resume
loses nothing.
"""
from __future__ import annotations

import hashlib
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
KIND = "hinas.kind"  # hinas, dncnn or bm3d: what the run's model is
GENOTYPE = "hinas.genotype"  # the genotype's hash (see genotype_hash)
COMPLETE = "hinas.complete"  # "true" once the driver has logged the run's stage products
PARENT = "mlflow.parentRunId"
STAGE_KEY = "stage:"  # the key of a stage's run: ``stage:search``
# MLflow 3's UI opens an experiment in its model-training view, not the GenAI one, with this tag
# (the values are the UI's ExperimentKind enum; MLflow has no Python API that sets it).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
MAX_PARAM = 500  # MLflow's limit on a param value's length
# MLflow's own defaults are 7 retries with a backoff factor of 2 and a 120 s timeout per request.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or written; the message names the URI."""


def tracking_uri(output_dir) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(output_dir).resolve() / 'mlflow.db'}"


def artifact_location(uri: str, output_dir) -> Optional[str]:
    """Beside a SQLite store, ``OUTPUT_DIR/mlartifacts`` as an absolute file URI; a server keeps its own."""
    if uri.startswith("sqlite:///"):
        return (Path(output_dir).resolve() / "mlartifacts").as_uri()
    return None


def ui_hint(uri: str, experiment_id: Optional[str] = None) -> str:
    """How to open this store in MLflow's UI (absolute paths: it works from any folder), at the
    experiment's runs in the model-training view (MLflow 3 opens GenAI's otherwise)."""
    page = f"#/experiments/{experiment_id}/runs?workflowType=machine_learning" if experiment_id else ""
    if _is_server(uri):
        return f"open {uri.rstrip('/')}/{page}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    return f"mlflow ui --backend-store-uri {uri}" + (f", then open http://127.0.0.1:5000/{page}" if page else "")


def genotype_hash(genotype: Mapping[str, Any]) -> str:
    """12 hex digits that name an architecture (cells, levels, widths; not its provenance)."""
    key = {k: genotype[k] for k in ("cells", "levels", "widths")}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def run_name(stage: str, kind: str, sigma: float, seed: Optional[int] = None, extra: str = "") -> str:
    """A name that fits the UI's run column: ``search σ30 s0``, ``retrain dncnn σ50 s1``."""
    parts = [stage, "" if stage == "search" else kind, f"σ{sigma:g}",
             "" if seed is None else f"s{seed}", extra]
    return " ".join(p for p in parts if p)


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
        create_sqlite_store(Path(uri[len("sqlite:///"):]))


def create_sqlite_store(path: Path) -> None:
    """Create a new SQLite store whole or not at all.

    Opening a missing store makes MLflow create its tables and run its schema migrations in
    place, a few seconds on a busy machine; a process killed meanwhile (Ctrl-C, SIGKILL, a
    time limit) leaves a half-migrated file that MLflow can never open again ("duplicate
    column name" on every later run). So the tables are made in a temporary file beside it and
    the finished file is linked into place, which fails harmlessly when another process got
    there first. MLflow has no option for this; written by hand.
    """
    if path.exists():
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")  # this process's; MLflow creates it
    tmp.unlink(missing_ok=True)  # a killed process's of the same pid, half made
    try:
        store = SqlAlchemyStore(f"sqlite:///{tmp}", (path.parent / "mlartifacts").as_uri())
        store.engine.dispose()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it meanwhile: theirs is whole too
    finally:
        tmp.unlink(missing_ok=True)


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
        """``artifact_location`` applies to a new experiment (an existing one keeps its own)."""
        check_tracking(uri)
        if _is_server(uri):
            for key, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
        self.uri = uri
        self.client = _Client(uri)
        self._reused: Dict[str, Dict[str, set]] = {}  # run id -> metric key -> steps it holds
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(
            experiment, artifact_location=artifact_location, tags=EXPERIMENT_KIND)
        if found and not set(EXPERIMENT_KIND.items()) <= set(found.tags.items()):
            for k, v in EXPERIMENT_KIND.items():
                self.client.set_experiment_tag(self.experiment_id, k, v)

    def trial_spec(self, parent: str, tags: Mapping[str, Any]) -> Dict[str, Any]:
        """What a trial needs to open its own run under ``parent`` (:func:`.trial_run.open_trial_run`)."""
        return {"uri": self.uri, "experiment_id": self.experiment_id, "parent": parent,
                "tags": {k: str(v) for k, v in tags.items()}}

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
        except KeyboardInterrupt:  # Ctrl-C / SIGTERM (pipeline/signals.py): it and its trials' runs
            self._end_failed(run_id, "KILLED")
            raise
        except BaseException:
            self._end_failed(run_id, "FAILED")
            raise
        self.client.set_tag(run_id, COMPLETE, "true")
        self.end(run_id, "FINISHED")

    @contextmanager
    def stage(self, parent: str, stage: str, tags: Optional[Mapping[str, Any]] = None) -> Iterator[str]:
        """The run of one stage of the pipeline run ``parent``, named ``stage`` and tagged
        ``hinas.stage``; it spans the work in the block and holds the runs of the stage's trials,
        jobs and evaluations. Ended as :meth:`run` ends a run (FINISHED and complete, FAILED, or
        KILLED by Ctrl-C / SIGTERM).

        A resumed pipeline reuses it: a stage an earlier attempt completed keeps its run as it
        was (its times are that stage's, the block only finds its products on disk); an
        interrupted one continues its run. It has no ``hinas.kind``, ``hinas.sigma`` or
        ``hinas.ablation`` tag: it holds several models and σ, and MLflow's UI shows a matching
        run's parent beside it, so an ablation tag would put it into the group of its children.
        """
        key = STAGE_KEY + stage
        run_id = self.find(key, parent)
        if run_id is not None and self.client.get_run(run_id).data.tags.get(COMPLETE) == "true":
            yield run_id
            return
        with self.run(stage, key, parent, {STAGE: stage, **(tags or {})}) as run_id:
            yield run_id

    @contextmanager
    def complete(self, name: str, key: str, parent: str, tags=None, params=None,
                 end_time: Optional[float] = None, failed: bool = False) -> Iterator[str]:
        """The run a trial opened (or, if it never could, a new one), for the driver to log the
        stage's products into; then tagged complete and, if the trial could not end it, ended
        FINISHED (FAILED for a ``failed`` trial) at ``end_time`` (seconds, the trial's end) -
        FAILED if this work raises."""
        run_id = self.find(key, parent)
        if run_id is None:
            run_id = self.start(name, key, parent, tags, params)
        else:
            self._reused[run_id] = {}
            if tags:
                for k, v in tags.items():
                    self.client.set_tag(run_id, k, str(v))
        try:
            yield run_id
        except BaseException:
            if self.client.get_run(run_id).info.status == "RUNNING":
                self._end_failed(run_id, "FAILED")
            raise
        self.client.set_tag(run_id, COMPLETE, "true")
        status, target = self.client.get_run(run_id).info.status, "FAILED" if failed else "FINISHED"
        if status != target and (status == "RUNNING" or not failed):
            self.client.set_terminated(run_id, target, end_time=int(end_time * 1000) if end_time else None)

    def _end_failed(self, run_id: str, status: str) -> None:
        """End a run whose work raised, and its children still RUNNING, never masking that
        error: with the store gone they stay RUNNING, and the resumed pipeline closes them
        (:meth:`close_dangling`)."""
        try:
            self.close_dangling(run_id, status)
            self.end(run_id, status)
        except TrackingError:
            pass

    def close_dangling(self, parent: str, status: str = "FAILED") -> int:
        """Mark runs under ``parent`` still RUNNING (a crashed driver's or trial's) as ``status``:
        its children, and the children of its stage runs."""
        stages = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{PARENT}` = '{parent}' and "
                                         f"tags.`{KEY}` LIKE '{STAGE_KEY}%'")
        closed = 0
        for run_id in (parent, *(r.info.run_id for r in stages)):
            runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{PARENT}` = '{run_id}' and "
                                           "attributes.status = 'RUNNING'")
            for r in runs:
                self.end(r.info.run_id, status)
            closed += len(runs)
        return closed

    def end_if_running(self, key: str, parent: str, status: str = "FAILED") -> None:
        """End the run with this key if it is still RUNNING (a trial that failed for good)."""
        run_id = self.find(key, parent)
        if run_id is not None and self.client.get_run(run_id).info.status == "RUNNING":
            self.end(run_id, status)

    def finished(self, parent: str) -> set:
        """The keys of the children of ``parent`` that an earlier attempt completed (logged in full)."""
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{PARENT}` = '{parent}' and "
                                       f"tags.`{COMPLETE}` = 'true'")
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

    # ---- models ----------------------------------------------------------------------------
    def log_denoiser(self, run_id: str, model_file, in_channels: int = 1, register: Optional[str] = None) -> str:
        """Log a weights-only model file as an MLflow model at ``model/`` of the run, so that
        ``mlflow.pyfunc.load_model(uri).predict(noisy)`` denoises (:mod:`.pyfunc_denoiser`);
        with ``register``, also as a new version of that registered model. Returns the model URI.

        Saved by ``mlflow.pyfunc.save_model`` from code (nothing pickled) and uploaded with the
        client, which keeps the run's store and needs no active run; MLflow's ``log_model``
        does both only through its global active run.
        """
        import mlflow
        import numpy as np
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        example = np.random.default_rng(0).uniform(0, 1, (1, in_channels, 32, 32)).astype(np.float32)
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "model"
            # Batch, height and width vary (a fully convolutional net); values in [0, 1].
            images = Schema([TensorSpec(np.dtype(np.float32), (-1, in_channels, -1, -1))])
            signature = ModelSignature(inputs=images, outputs=images)
            mlflow.pyfunc.save_model(path, python_model=str(Path(__file__).with_name("pyfunc_denoiser.py")),
                                     artifacts={"weights": str(model_file)}, signature=signature,
                                     input_example=example, pip_requirements=["hinas", "torch", "numpy"])
            self.client.log_artifacts(run_id, str(path), "model")
        uri = f"runs:/{run_id}/model"
        if register:
            if self.client.search_registered_models(filter_string=f"name = '{register}'") == []:
                self.client.create_registered_model(register)
            self.client.create_model_version(register, f"{self.client.get_run(run_id).info.artifact_uri}/model", run_id)
        return uri
