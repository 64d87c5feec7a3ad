"""The trials' own MLflow runs (pipeline/trial_run.py) and models as MLflow models, on a real
SQLite store and a real ``mlflow server`` on loopback that is killed and started again."""
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from hinas.pipeline import trial_run
from hinas.pipeline.mlflow_tracking import Tracker, artifact_location, ui_hint

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``mlflow server`` on loopback over one SQLite store, in its own session: stop() SIGKILLs it
    and its workers, start() again reuses the port and the store. tests/reliability/test_faults.py
    takes it from here (``make.sibling("../pipeline/test_tracking_live")``)."""

    def __init__(self, root: Path):
        self.root, self.port, self.proc = root, _free_port(), None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> "Server":
        mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
        self.proc = subprocess.Popen([mlflow_bin, "server", "--backend-store-uri", f"sqlite:///{self.root}/m.db",
                                      "--artifacts-destination", str(self.root / "art"), "--host", "127.0.0.1",
                                      "--port", str(self.port), "--workers", "1"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.uri + "/health", timeout=2)
                return self
            except OSError:
                if self.proc.poll() is not None:  # it died (the port taken?): no use waiting
                    break
                time.sleep(0.5)
        self.stop()
        pytest.fail(f"mlflow server did not answer in {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its session is its process group
        except ProcessLookupError:
            pass
        self.proc.wait()


def _trial(spec, out=None):
    return trial_run.TrialRun(spec, "search:sigma30-seed0", "search σ30 s0", {"hinas.stage": "search"}, {"seed": 0}, out=out)


def test_a_trial_run_is_reopened_by_its_restart_and_no_step_is_logged_twice(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    tracker = Tracker(uri, "live", artifact_location(uri, tmp_path))
    parent = tracker.start("pipe", "pipeline:x")
    spec = tracker.trial_spec(parent, {"hinas.dataset": "sample"})
    first = _trial(spec)
    first.log({"train_loss": 0.5, "levels": "0-1", "arch_loss": float("nan")}, step=1)
    first.log({"train_loss": 0.4}, step=2)  # the worker dies here, before its checkpoint of epoch 2
    again = _trial(spec)  # Tune's retry, from the checkpoint of epoch 1
    assert again.run_id == first.run_id
    assert tracker.client.get_run(first.run_id).info.status == "RUNNING"
    again.log({"train_loss": 0.45}, step=2)
    again.log({"train_loss": 0.3}, step=3)
    assert again.finish() and again.finish()  # a second finish (Tune stopping the trial) changes nothing
    run = tracker.client.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.info.end_time >= run.info.start_time
    assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["hinas.dataset"] == "sample"
    assert run.data.params == {"seed": "0"}
    history = tracker.client.get_metric_history(first.run_id, "train_loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.5), (2, 0.4), (3, 0.3)]
    assert set(run.data.metrics) == {"train_loss"}
    # SQLite store: artifacts beside it (absolute), never ./mlruns of the working directory.
    assert tracker.client.get_experiment(tracker.experiment_id).artifact_location == (tmp_path / "mlartifacts").as_uri()
    assert tracker.client.get_experiment(tracker.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert ui_hint("sqlite:///runs/m.db") == f"mlflow ui --backend-store-uri sqlite:///{Path('runs/m.db').resolve()}"
    assert ui_hint("http://127.0.0.1:5000", "7") == "open http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"


def test_stage_runs_hold_their_trials_and_a_resumed_pipeline_reuses_them(tmp_path):
    """pipeline run -> a run per stage -> the trials' runs. A driver killed in a stage leaves its
    run and its trials' RUNNING; the resumed pipeline closes them, continues that stage's run
    (and each trial its own) and keeps a completed stage's run as it was."""
    uri = f"sqlite:///{tmp_path}/m.db"
    tracker = Tracker(uri, "stages", artifact_location(uri, tmp_path))
    pipeline = tracker.start("pipe", "pipeline:x")
    with tracker.stage(pipeline, "search", {"hinas.dataset": "sample"}) as search:
        trial = _trial(tracker.trial_spec(search, {}))
        trial.log({"val_psnr": 20.0}, step=1)
        assert trial.finish()
    killed = tracker.stage(pipeline, "retrain")
    retrain = killed.__enter__()  # the driver dies in the stage: the block never ends
    job = trial_run.TrialRun(tracker.trial_spec(retrain, {}), "retrain:dncnn", "retrain dncnn σ30 s0", {})
    job.log({"train_loss": 0.5}, step=2)
    searched = tracker.client.get_run(search)

    tracker = Tracker(uri, "stages")  # the resumed driver
    assert tracker.start("pipe", "pipeline:x") == pipeline
    assert tracker.close_dangling(pipeline) == 2  # the retraining stage's run and its job's
    assert tracker.client.get_run(job.run_id).info.status == "FAILED"
    with tracker.stage(pipeline, "search") as again:
        assert again == search and tracker.client.get_run(search).info == searched.info  # kept as it was
    with tracker.stage(pipeline, "retrain") as again:
        assert again == retrain and tracker.client.get_run(retrain).info.status == "RUNNING"
        resumed = trial_run.TrialRun(tracker.trial_spec(again, {}), "retrain:dncnn", "retrain dncnn σ30 s0", {})
        assert resumed.run_id == job.run_id
        resumed.log({"train_loss": 0.4}, step=4)
        assert resumed.finish()
    with pytest.raises(KeyboardInterrupt):
        with tracker.stage(pipeline, "evaluate"):
            raise KeyboardInterrupt  # Ctrl-C

    runs = {r.info.run_id: r for r in tracker.client.search_runs([tracker.experiment_id])}
    stages = {r.info.run_name: r for r in runs.values() if r.data.tags.get("mlflow.parentRunId") == pipeline}
    assert {n: (r.data.tags["hinas.stage"], r.info.status) for n, r in stages.items()} == \
        {"search": ("search", "FINISHED"), "retrain": ("retrain", "FINISHED"), "evaluate": ("evaluate", "KILLED")}
    assert stages["search"].data.tags["hinas.dataset"] == "sample" and "hinas.ablation" not in stages["search"].data.tags
    assert runs[trial.run_id].data.tags["mlflow.parentRunId"] == search
    assert runs[job.run_id].data.tags["mlflow.parentRunId"] == retrain and runs[job.run_id].info.status == "FINISHED"
    assert len(runs) == 1 + 3 + 2


def test_a_lost_tracking_server_does_not_stop_the_trial_and_gets_everything_once_back(tmp_path, monkeypatch):
    monkeypatch.setattr(trial_run, "RETRY_S", 0.5)
    monkeypatch.setattr(trial_run, "FINISH_WAIT_S", 60.0)
    server = Server(tmp_path).start()
    try:
        tracker = Tracker(server.uri, "live")
        parent = tracker.start("pipe", "pipeline:x")
        out = io.StringIO()
        run = _trial(tracker.trial_spec(parent, {}), out=out)
        run.log({"val_psnr": 20.0}, step=1)
        server.stop()
        t0 = time.time()
        for epoch in (2, 3, 4):
            run.log({"val_psnr": 20.0 + epoch}, step=epoch)
            time.sleep(0.6)
        assert time.time() - t0 < 20, "logging to a lost server held the trial up"
        lost = [line for line in out.getvalue().splitlines() if "retrying every" in line]
        assert len(lost) == 1 and server.uri in lost[0], out.getvalue()
        # The driver hears of it through the trial's results (Ray keeps worker output apart).
        console = io.StringIO()
        watch = trial_run.TrackingWatch(out=console)
        assert run.unsent >= 3
        for unsent in (run.unsent, run.unsent + 1):
            watch.on_trial_result(0, [], "search_sigma30", {trial_run.UNSENT: unsent})
        server.start()
        assert run.finish()
        assert "is back" in out.getvalue() and run.unsent == 0
        watch.on_trial_result(0, [], "search_sigma30", {trial_run.UNSENT: run.unsent})
        said = console.getvalue().splitlines()
        assert len(said) == 2 and "search_sigma30 cannot reach the MLflow store" in said[0], said
        assert "reached the MLflow store again" in said[1]
        client = Tracker(server.uri, "live").client
        got = client.get_run(run.run_id)
        assert got.info.status == "FINISHED"
        steps = sorted((m.step, m.value) for m in client.get_metric_history(run.run_id, "val_psnr"))
        assert steps == [(1, 20.0), (2, 22.0), (3, 23.0), (4, 24.0)]
    finally:
        server.stop()


def test_report_times_keep_the_sub_second_clock_and_fall_back_to_tunes_whole_seconds():
    """A summary's start and end come from the reports' own clock; Tune's ``timestamp`` is
    whole seconds (a trial started 0.9 s into a second read as starting up to 1 s early)."""
    import pandas as pd

    fields = trial_run.report_fields(trial_run.NoRun())
    assert fields[trial_run.UNSENT] == 0 and abs(fields[trial_run.REPORTED_AT] - time.time()) < 5
    frame = pd.DataFrame({"timestamp": [100, 101, 102], trial_run.REPORTED_AT: [np.nan, 101.75, 102.5]})
    assert list(trial_run.reported_times(frame)) == [100.0, 101.75, 102.5]  # a resumed trial's older rows
    assert list(trial_run.reported_times(frame.drop(columns=[trial_run.REPORTED_AT]))) == [100.0, 101.0, 102.0]


def test_a_retrained_network_is_an_mlflow_model_that_denoises(tmp_path):
    """The shipped σ=30 network, logged as the pipeline logs a retrained one, loaded back with
    ``mlflow.pyfunc.load_model``: it lowers the error of a noisy photograph."""
    import mlflow
    from skimage import data

    uri = f"sqlite:///{tmp_path}/m.db"
    tracker = Tracker(uri, "models", artifact_location(uri, tmp_path))
    run_id = tracker.start("retrain", "retrain:x")
    model_uri = tracker.log_denoiser(run_id, ROOT / "models" / "hinas_sigma30.pt", 1, register="hinas-sigma30")
    clean = data.camera()[200:264, 200:296].astype(np.float32)[None, None] / 255
    noisy = clean + np.random.default_rng(0).normal(0, 30 / 255, clean.shape).astype(np.float32)
    with mlflow.tracking._tracking_service.utils._use_tracking_uri(uri):  # no global state left behind
        model = mlflow.pyfunc.load_model(model_uri)
        registered = mlflow.pyfunc.load_model("models:/hinas-sigma30/1")
    denoised = model.predict(noisy)
    assert denoised.shape == noisy.shape and denoised.dtype == np.float32
    assert np.mean((denoised - clean) ** 2) < 0.5 * np.mean((noisy - clean) ** 2)
    np.testing.assert_array_equal(registered.predict(noisy), denoised)
    assert str(model.metadata.signature.inputs.inputs[0].shape) == "(-1, 1, -1, -1)"
    files = {a.path for a in tracker.client.list_artifacts(run_id, "model")}
    assert {"model/MLmodel", "model/input_example.json", "model/pyfunc_denoiser.py"} <= files
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".pkl", ".pickle", ".cloudpickle")]
