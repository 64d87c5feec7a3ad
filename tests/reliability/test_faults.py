"""Faults (issue #7): a search must never be lost to a crash.

Real processes throughout: ``hinas run`` subprocesses of a small CPU pipeline (one sigma, three
search epochs with one warm-up, two retraining jobs of six iterations, two test images), a real
Ray head or the driver's own local Ray, a real ``mlflow server``. Faults are real SIGKILLs:

* the driver, at the named points of :mod:`hinas.pipeline.faults` (``HINAS_FAULT_KILL_AT``) and
  at seeded-random delays;
* trial workers, inside search epochs and between retraining checkpoints, once and until
  their retries run out;
* the MLflow tracking server, while the search runs.

After every fault ``hinas run CONFIG --resume`` must finish with the genotype, the search
decision, the evaluation and the report of one uninterrupted run of the same seed, and MLflow
must hold exactly one run per pipeline, search trial, retraining job and evaluation, none of
them left RUNNING.

Each driver runs in its own session. What a SIGKILLed driver leaves behind (the trial actors
it owned on the head until Ray reaps them; the agents of its own local Ray) stays up while the
resumed driver runs, as it would for a user, and every process of those sessions is killed
when the test ends. Ray's memory monitor is off in these runs: on a shared CI machine another
tenant's memory use must not get our trials killed, a fault this file does not inject.
"""
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "tune_configs" / "quickstart.yaml"
NAME = "quickstart"
# The quickstart made as small as it goes while every stage still runs: search (3 epochs, the
# first a warm-up) -> derive -> retrain (HiNAS + DnCNN, 3 checkpoints each) -> evaluate -> report.
TINY = ["--set", "data.sigmas=[30]", "--set", "search.max_epochs=3", "--set", "search.warmup_epochs=1",
        "--set", "retrain.iterations=6", "--set", "retrain.report_every=2", "--set", "resources.cpu=1",
        "--set", "evaluate.bm3d=false", "--set", "evaluate.max_images=2", "--set", "evaluate.crop=64",
        "--set", "evaluate.examples=1"]
MODELS = ("hinas-sigma30-seed0", "dncnn-sigma30-seed0")
TRIAL = "sigma30-seed0"
BASE_ENV = {"CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1", "RAY_memory_monitor_refresh_ms": "0"}
RUN_TIMEOUT = 600
# An exception escaping the driver shows its frames; Tune logs each trial failure with Ray's frames.
DRIVER_TRACEBACK = re.compile(r'File ".*/pipeline/(cli|run|search_stage|retrain_stage)\.py", line')


# ---- processes ---------------------------------------------------------------------------------
def session_pids(sid: int):
    """Live processes of session ``sid`` (zombies excluded)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def kill_session(sid: int) -> None:
    for _ in range(20):
        pids = session_pids(sid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Hinas:
    """``hinas run`` of the tiny config under ``out``, in its own session, logging to a file.

    Whatever the driver leaves behind (its local Ray's processes, when it is SIGKILLed) stays
    up while the test goes on, as it would for a user; :func:`_clean_sessions` ends it after.
    """

    sessions = []

    def __init__(self, out: Path, env: dict, *args: str, tag: str = "run"):
        self.log_path = out / f"{tag}.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "hinas.pipeline.cli", "run", str(CONFIG),
                                          "--set", f"output_dir={out}", *TINY, *args],
                                         cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        Hinas.sessions.append(self.proc.pid)

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_session(self.proc.pid)
            pytest.fail(f"hinas run did not end in {timeout} s:\n{self.log[-3000:]}")

    def kill_driver(self) -> None:
        """SIGKILL the driver process alone, as the OOM killer would."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture(autouse=True)
def _clean_sessions():
    yield
    while Hinas.sessions:
        kill_session(Hinas.sessions.pop())


def hinas(out: Path, env: dict, *args: str, tag: str = "run"):
    h = Hinas(out, env, *args, tag=tag)
    return h.wait(), h.log


def wait_for(condition, what: str, proc: Hinas = None, timeout: float = RUN_TIMEOUT) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc is not None and proc.proc.poll() is not None:
            pytest.fail(f"hinas run ended (code {proc.proc.returncode}) before {what}:\n{proc.log[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"no {what} in {timeout} s")


def local_env(tmp: Path) -> dict:
    """The driver starts its own Ray, with its files in a private folder (short: socket paths)."""
    env = {**os.environ, **BASE_ENV, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
           "RAY_TMPDIR": tempfile.mkdtemp(prefix="hf", dir="/tmp")}
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture(scope="module")
def ray_head():
    """One real Ray head on loopback for the module, as on a cluster: drivers die, it lives."""
    names = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
             "runtime-env-agent-port", "ray-client-server-port", "node-manager-port", "object-manager-port")
    port, *others = free_ports(1 + len(names))
    temp_dir = tempfile.mkdtemp(prefix="hf", dir="/tmp")
    ray_bin = str(Path(sys.executable).with_name("ray"))
    env = {**os.environ, **BASE_ENV}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([ray_bin, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
                             "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}",
                             *[f"--{n}={p}" for n, p in zip(names, others)]],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 180
        while not (Path(temp_dir) / "ray_current_cluster").is_file():  # written once the head is up
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("the Ray head did not come up")
            time.sleep(0.5)
        yield {**os.environ, **BASE_ENV, "RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_MODE": "token"}
    finally:
        kill_session(proc.pid)
        proc.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


# ---- what a run produced -----------------------------------------------------------------------
def _without_timings(report: str) -> str:
    """The report with its timing columns (inference seconds and their ratio) removed."""
    out, drop, in_table = [], set(), False
    for line in report.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not in_table:  # the table's header names the columns
                drop = {i for i, c in enumerate(cells) if "inference" in c}
            in_table = True
            line = "|".join(c for i, c in enumerate(cells) if i not in drop)
        else:
            in_table = False
        out.append(line)
    return "\n".join(out)


def outcome(exp_dir: Path) -> dict:
    """Everything a run decided and measured, except wall-clock times and paths."""
    trials = json.loads((exp_dir / "search_summary.json").read_text())["trials"]
    evaluation = json.loads((exp_dir / "evaluation" / "summary.json").read_text())
    return {
        "search": [{k: r.get(k) for k in ("trial", "status", "epochs", "stop", "best_epoch", "val_psnr", "val_ssim", "levels")}
                   for r in trials],
        "genotypes": {str(p.relative_to(exp_dir)): json.loads(p.read_text())
                      for p in sorted(exp_dir.glob("*/*/genotype.json"))},
        "evaluation": [{k: v for k, v in r.items() if k not in ("inference_s", "model", "examples")} for r in evaluation],
        "report": _without_timings((exp_dir / "report.md").read_text()),
    }


def mlflow_runs(uri: str):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(NAME)
    return client, (client.search_runs([exp.experiment_id], max_results=200) if exp else [])


def is_stage_run(run) -> bool:
    """A stage's run (``search``, ``derive``...), not a trial's, job's or evaluation's."""
    return run.data.tags.get("hinas.key", "").startswith("stage:")


def check_mlflow(uri: str, reference: dict) -> None:
    """One parent, under it one run per stage, under those one per trial/job/evaluation, none
    RUNNING, curves not logged twice."""
    client, runs = mlflow_runs(uri)
    assert not [r.data.tags.get("hinas.key") for r in runs if r.info.status != "FINISHED"]
    parents = [r for r in runs if r.data.tags.get("hinas.stage") == "pipeline"]
    assert len(parents) == 1, [r.data.tags.get("hinas.key") for r in parents]
    stages = {r.data.tags.get("hinas.key"): r.info.run_id for r in runs
              if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert sorted(stages) == [f"stage:{s}" for s in ("derive", "evaluate", "retrain", "search")], stages
    under = Counter((r.data.tags.get("mlflow.parentRunId"), r.data.tags.get("hinas.key")) for r in runs
                    if not is_stage_run(r) and r.info.run_id != parents[0].info.run_id)
    expected = {(stages["stage:search"], f"search:{TRIAL}")} | \
        {(stages[f"stage:{stage}"], f"{stage}:{m}") for stage in ("retrain", "evaluate") for m in MODELS}
    assert under == Counter(expected), under
    assert len(runs) == 1 + len(stages) + len(expected)
    search = next(r for r in runs if r.data.tags.get("hinas.key") == f"search:{TRIAL}")
    steps = [m.step for m in client.get_metric_history(search.info.run_id, "val_psnr")]
    assert sorted(steps) == list(range(1, reference["search"][0]["epochs"] + 1)), steps
    for row in reference["evaluation"]:
        run = next(r for r in runs if r.data.tags.get("hinas.key") == f"evaluate:{row['label']}")
        assert run.data.metrics["psnr_whole"] == row["psnr_whole"]


@pytest.fixture(scope="module")
def reference(ray_head, tmp_path_factory):
    """One uninterrupted run of the same config and seed."""
    out = tmp_path_factory.mktemp("reference")
    env = {**ray_head, "MLFLOW_TRACKING_URI": f"sqlite:///{out}/mlflow.db"}
    code, log = hinas(out, env)
    assert code == 0, log[-4000:]
    result = outcome(out / NAME)
    check_mlflow(env["MLFLOW_TRACKING_URI"], result)
    return result


# ---- 1. the driver is SIGKILLed at every stage ---------------------------------------------------
def _ckpts(folder: Path):
    return list(folder.glob("*/checkpoint_*"))


def _state(e: Path):
    return {"summary": (e / "search_summary.json").is_file(), "derived": (e / "derived").exists(),
            "models": sum((e / "models" / m / "model.pt").is_file() for m in MODELS),
            "parquets": len(list((e / "evaluation").glob("*.parquet"))),
            "evaluation": (e / "evaluation" / "summary.json").is_file(), "report": (e / "report.md").is_file()}


def _finished(uri: str, stage: str) -> int:
    """Runs of ``stage`` the driver has completed (a trial ends its own run FINISHED before that)."""
    _, runs = mlflow_runs(uri)
    return sum(r.info.status == "FINISHED" and r.data.tags.get("hinas.complete") == "true"
               for r in runs if r.data.tags.get("hinas.stage") == stage and not is_stage_run(r))


def _parent_status(uri: str) -> str:
    _, runs = mlflow_runs(uri)
    return next(r.info.status for r in runs if r.data.tags.get("hinas.stage") == "pipeline")


# Each kill point, in pipeline order, with what must hold at the moment of the kill: it proves
# that the kill came at that point (and that the run had not finished). One chain of drivers:
# each resumes the state the previous one was killed in, and is killed at the next point.
KILLS = [
    ("search-begin", "search Tuner saved, no trial state yet",
     lambda e, uri: (e / "search" / "tuner.pkl").is_file() and not list((e / "search").glob("experiment_state-*"))),
    ("search-result:1", "search epoch 1 reported, epoch 2 running",
     lambda e, uri: not _state(e)["summary"] and len(_ckpts(e / "search")) >= 1),
    ("search-result:1", "resumed search: next epoch reported, the last one running",
     lambda e, uri: not _state(e)["summary"] and len(_ckpts(e / "search")) >= 1),
    ("searched", "search finished and summarised, not yet in MLflow",
     lambda e, uri: _state(e)["summary"] and not _state(e)["derived"] and _finished(uri, "search") == 0),
    ("derived", "search logged in MLflow, genotype derived, retraining not started",
     lambda e, uri: (e / "derived" / "sigma30" / "genotype.json").is_file() and _finished(uri, "search") == 1
     and not (e / "retrain").exists()),
    ("retrain-begin", "retraining Tuner saved, no trial state yet",
     lambda e, uri: (e / "retrain" / "tuner.pkl").is_file() and not list((e / "retrain").glob("experiment_state-*"))),
    ("retrain-result:1", "retraining: a first checkpoint reported, both jobs running",
     lambda e, uri: len(_ckpts(e / "retrain")) >= 1 and _state(e)["models"] < 2),
    ("retrain-result:2", "resumed retraining: two more results, jobs running",
     lambda e, uri: len(_ckpts(e / "retrain")) >= 1 and _state(e)["models"] < 2),
    ("retrained", "both models written, not yet in MLflow",
     lambda e, uri: _state(e)["models"] == 2 and _finished(uri, "retrain") == 0 and not (e / "evaluation").exists()),
    ("evaluate-model:1", "evaluation: one model scored, the other not",
     lambda e, uri: _state(e)["parquets"] == 1 and not _state(e)["evaluation"]),
    ("evaluated", "evaluation written, not yet in MLflow",
     lambda e, uri: _state(e)["evaluation"] and _finished(uri, "evaluate") == 0 and not _state(e)["report"]),
    ("evaluate-logged:1", "one evaluation run logged, the other not",
     lambda e, uri: _finished(uri, "evaluate") == 1 and not _state(e)["report"]),
    ("report", "report written, parent run still open",
     lambda e, uri: _state(e)["report"] and _parent_status(uri) == "RUNNING"),
]


def test_driver_killed_at_every_stage_resumes_to_the_reference(ray_head, reference, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**ray_head, "MLFLOW_TRACKING_URI": uri}
    exp_dir = tmp_path / NAME
    for i, (point, state, holds) in enumerate(KILLS):
        code, log = hinas(tmp_path, {**env, "HINAS_FAULT_KILL_AT": point}, *(["--resume"] if i else []), tag=f"kill{i}")
        assert code == -signal.SIGKILL, f"kill {i} at {point}: exit {code}\n{log[-3000:]}"
        assert f"SIGKILL at {point if ':' in point else point + ':1'}" in log
        assert "report written" not in log
        assert holds(exp_dir, uri), f"kill {i} at {point}: the run was not in the state '{state}': {_state(exp_dir)}"
        if i and KILLS[i - 1][0] == "evaluate-model:1":  # the model scored before that kill is not scored again
            assert [m for m in MODELS if f"hinas: {m} was scored earlier" in log] == [MODELS[0]], log[-3000:]
    code, log = hinas(tmp_path, env, "--resume", tag="final")
    assert code == 0, log[-4000:]
    assert outcome(exp_dir) == reference
    check_mlflow(uri, reference)


def _new_checkpoint(folder: Path):
    before = set(_ckpts(folder))
    return lambda: bool(set(_ckpts(folder)) - before)


def test_driver_killed_at_random_moments_resumes_to_the_reference(reference, tmp_path):
    """SIGKILL at seeded-random delays; the driver runs its own local Ray (left to die with it).

    Each kill comes a random time after a sign of progress, but no later than the next sign,
    so that every kill lands in its stage whatever the speed of the machine."""
    rng = random.Random(20240607)
    env = local_env(tmp_path)
    exp_dir = tmp_path / NAME

    def searched():
        return _state(exp_dir)["summary"]

    def retrained():
        return _state(exp_dir)["models"] == len(MODELS)

    def last_search_epoch():  # the search's final checkpoint (3 epochs): its summary follows at once
        return any(p.name >= "checkpoint_000002" for p in _ckpts(exp_dir / "search")) or searched()

    # (after what, watched from the driver's start; random delay; at the latest when)
    moments = [("its start", lambda: lambda: True, rng.uniform(5, 30), lambda: bool(_ckpts(exp_dir / "search"))),
               ("a new search checkpoint", lambda: _new_checkpoint(exp_dir / "search"), rng.uniform(0, 3), last_search_epoch),
               ("the search summary", lambda: searched, rng.uniform(0, 4), lambda: bool(_ckpts(exp_dir / "retrain"))),
               ("a new retraining checkpoint", lambda: _new_checkpoint(exp_dir / "retrain"), rng.uniform(0, 1.5), retrained)]
    try:
        for i, (what, watch, delay, latest) in enumerate(moments):
            seen = watch()
            assert i == 0 or not seen(), f"{what} came before the driver that should be killed after it"
            h = Hinas(tmp_path, env, *(["--resume"] if i else []), tag=f"random{i}")
            wait_for(seen, what, h)
            t0 = time.time()
            while time.time() - t0 < delay and not latest():
                time.sleep(0.05)
            assert h.proc.poll() is None, f"the run ended before the kill after {what}:\n{h.log[-3000:]}"
            h.kill_driver()
            assert "report written" not in h.log
            print(f"random kill {i}: {time.time() - t0:.1f} s (drawn {delay:.1f}) after {what}: {_state(exp_dir)}")
        code, log = hinas(tmp_path, env, "--resume", tag="final")
        assert code == 0, log[-4000:]
    finally:
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    assert outcome(exp_dir) == reference
    check_mlflow(env["MLFLOW_TRACKING_URI"], reference)


# ---- 2. a trial worker dies mid-epoch ------------------------------------------------------------
def _reported(trial_dir: Path, key: str):
    return [json.loads(line)[key] for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]


def _worker_kills(ray_tmp: str, point: str) -> int:
    """How many trial workers of this local Ray killed themselves at ``point`` (from their logs)."""
    return sum(p.read_text(errors="replace").count(f"SIGKILL at {point}") for p in Path(ray_tmp).rglob("worker-*.out"))


def test_trial_workers_killed_mid_epoch_are_retried_from_their_checkpoints(reference, tmp_path):
    """Trial workers SIGKILL themselves (the driver's local Ray passes them its environment).

    First run: the search worker dies at its 5th batch, i.e. in the middle of epoch 2 (3 batches
    an epoch), and its restart, resumed from epoch 1's checkpoint, again at its 5th batch (in
    epoch 3); Tune's FailureConfig(max_failures=2) allows both, the search finishes. Every
    retraining worker dies at its first batch, three times: the jobs fail, and the run must say
    so in one line, with no MLflow run left RUNNING. The resumed run: one retraining worker dies
    at iteration 3, between its checkpoints at 2 and 4, once - its trial used up its retries
    before the resume and must have them again - and all finish as the reference.
    """
    env = local_env(tmp_path)
    exp_dir = tmp_path / NAME
    try:
        code, log = hinas(tmp_path, {**env, "HINAS_FAULT_KILL_AT": "search-step:5,retrain-step:1"}, tag="first")
        assert code == 1, log[-4000:]
        assert f"hinas run: retraining produced no model for {list(MODELS)}" in log.splitlines()
        assert not DRIVER_TRACEBACK.search(log), "the driver crashed instead of reporting the failed jobs"
        assert _worker_kills(env["RAY_TMPDIR"], "search-step:5") == 2
        assert _worker_kills(env["RAY_TMPDIR"], "retrain-step:1") == 3 * len(MODELS)
        _, runs = mlflow_runs(env["MLFLOW_TRACKING_URI"])
        assert sorted((r.data.tags["hinas.key"].split(":")[0], r.data.tags["hinas.stage"], r.info.status) for r in runs) == \
            [("pipeline", "pipeline", "FAILED"), ("retrain", "retrain", "FAILED"), ("retrain", "retrain", "FAILED"),
             ("search", "search", "FINISHED"), ("stage", "derive", "FINISHED"), ("stage", "retrain", "FAILED"),
             ("stage", "search", "FINISHED")]
        retrain_ids = {r.data.tags["hinas.key"]: r.info.run_id for r in runs
                       if r.data.tags["hinas.stage"] == "retrain" and not is_stage_run(r)}

        once = tmp_path / "killed"
        once.mkdir()
        code, log = hinas(tmp_path, {**env, "HINAS_FAULT_KILL_AT": "retrain-step:3", "HINAS_FAULT_ONCE_DIR": str(once)},
                          "--resume", tag="resume")
        assert code == 0, log[-4000:]
        assert [p.name for p in once.iterdir()] == ["retrain-step"]
        assert _worker_kills(env["RAY_TMPDIR"], "retrain-step:3") == 1
    finally:
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    # Each restart continued from the last checkpoint, not from scratch: no epoch or iteration
    # was reported twice. (Whether Tune's result file keeps the attempts before a restore
    # depends on when it was flushed, so only order and uniqueness are checked.)
    def continued(reported, last):
        return reported == sorted(set(reported)) and reported[-1] == last

    (search_trial,) = (exp_dir / "search").glob(f"{TRIAL}-*")
    assert continued(_reported(search_trial, "epoch"), 3), _reported(search_trial, "epoch")
    for m in MODELS:
        (trial,) = (exp_dir / "retrain").glob(f"{m}-*")
        assert continued(_reported(trial, "iteration"), 6), (m, _reported(trial, "iteration"))
    assert outcome(exp_dir) == reference
    check_mlflow(env["MLFLOW_TRACKING_URI"], reference)
    # Each restarted trial continued its own MLflow run, logging live (``a_lr`` and the retraining
    # loss come only from the trials): the same run ids before and after the resume, and every
    # epoch / report once although its worker died and was restarted.
    client, runs = mlflow_runs(env["MLFLOW_TRACKING_URI"])
    assert {r.data.tags["hinas.key"]: r.info.run_id for r in runs
            if r.data.tags["hinas.stage"] == "retrain" and not is_stage_run(r)} == retrain_ids
    search = next(r for r in runs if r.data.tags["hinas.key"] == f"search:{TRIAL}")
    assert sorted(m.step for m in client.get_metric_history(search.info.run_id, "a_lr")) == [1, 2, 3]
    for run_id in retrain_ids.values():
        assert sorted(m.step for m in client.get_metric_history(run_id, "train_loss")) == [2, 4, 6]


# ---- 3. the MLflow tracking server goes away -----------------------------------------------------
def test_lost_tracking_server_is_one_clear_error_and_the_run_resumes_once_it_is_back(ray_head, reference, tmp_path, make):
    from hinas.pipeline.search_stage import restorable

    server = make.sibling("../pipeline/test_tracking_live").Server(tmp_path).start()  # stop() is a SIGKILL
    try:
        env = {**ray_head, "MLFLOW_TRACKING_URI": server.uri}
        exp_dir = tmp_path / NAME
        h = Hinas(tmp_path, env, tag="lost")
        wait_for(lambda: len(_ckpts(exp_dir / "search")) >= 1, "search checkpoint", h)
        server.stop()  # SIGKILL, mid-search: the next MLflow call is the search's logging
        assert h.proc.poll() is None, "the run ended before the server went away"
        code = h.wait()
        log = h.log
        assert code == 1, log[-4000:]
        errors = [line for line in log.splitlines() if line.startswith("hinas run: ") and "experiment" not in line]
        assert len(errors) == 1 and errors[0].startswith(f"hinas run: MLflow tracking server {server.uri} is unreachable"), errors
        assert "--resume" in errors[0] and "Traceback" not in log
        # What the search produced is on disk and intact; nothing after it ran.
        assert _state(exp_dir)["summary"] and not _state(exp_dir)["derived"]
        row = json.loads((exp_dir / "search_summary.json").read_text())["trials"][0]
        assert row["status"] == "OK" and json.loads(Path(row["genotype"]).read_text())["provenance"]["epochs_run"] == 3
        assert restorable(exp_dir / "search") and _ckpts(exp_dir / "search")

        server.start()  # the same store, the same port
        code, log = hinas(tmp_path, env, "--resume", tag="resume")
        assert code == 0, log[-4000:]
        assert "search results exist" in log  # the search was reused, not redone
        assert outcome(exp_dir) == reference
        check_mlflow(server.uri, reference)
    finally:
        server.stop()
