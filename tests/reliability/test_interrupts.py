"""One writer, Ctrl-C / SIGTERM, and a full disk (issue #16), with real `hinas run` drivers.

One chain of drivers of test_faults.py's small CPU pipeline (its processes, config and MLflow
checks), each in its own session with its own local Ray:

1. A runs; B, a retry of the same experiment with ``--resume``, is refused at once (exit 75)
   with one line naming A's pid and host, while A goes on;
2. A is SIGKILLed (its lock stays); C (``--resume``) takes the lock over by itself;
3. Ctrl-C - SIGINT to C's process group, as a terminal sends it - while a search epoch runs: the
   trial reaches its next checkpoint, C ends with one line and exit 130, MLflow holds no RUNNING
   run (the pipeline's is KILLED), the lock is released;
4. D (``--resume``) gets SIGTERM twice while its trial runs: it stops at once, exit 143;
5. E (``--resume``) finishes: every epoch reported once, in order, and MLflow as after an
   uninterrupted run;
6. the experiment folder moves onto a full tmpfs: F (``--resume``) fails at its first write (the
   derived genotype.json) with one line and exit 1, leaving the genotypes, models, evaluation and
   report as they were;
   with space freed, G (``--resume``) ends as E did.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
# More search epochs than test_faults.py's 3: A runs a few while B is refused, and C and D must
# still find the search trial at work.
MAX_EPOCHS = 5
LONGER = ("--set", f"search.max_epochs={MAX_EPOCHS}")


@pytest.fixture(scope="module")
def faults(make):
    return make.sibling("test_faults")


@pytest.fixture(autouse=True)
def _clean_sessions(faults):
    yield
    while faults.Hinas.sessions:
        faults.kill_session(faults.Hinas.sessions.pop())


def _epochs(exp_dir):
    files = list((exp_dir / "search").glob("sigma30-seed0-*/result.json"))
    if not files:
        return []
    return [json.loads(line)["epoch"] for line in files[0].read_text().splitlines() if line.strip()]


def _hinas_lines(log: str):
    """The lines `hinas run` ended with (not its start and lock-taking notes)."""
    return [line for line in log.splitlines()
            if line.startswith("hinas run: ") and not line.startswith(("hinas run: experiment '", "hinas run: took over", "hinas run: search results exist"))]


def _running(uri, faults):
    _, runs = faults.mlflow_runs(uri)
    return [(r.data.tags.get("hinas.key"), r.info.status) for r in runs if r.info.status == "RUNNING"]


def test_one_writer_ctrl_c_sigterm_and_a_full_disk_then_resume(faults, make, tmp_path):
    from hinas.pipeline.lock import lock_path

    env = faults.local_env(tmp_path)
    uri = env["MLFLOW_TRACKING_URI"]
    exp_dir = tmp_path / faults.NAME
    lock = lock_path(exp_dir)
    try:
        # 1. A holds the experiment; B is refused
        a = faults.Hinas(tmp_path, env, *LONGER, tag="a")
        faults.wait_for(lock.is_file, "A's lock", a)
        assert json.loads(lock.read_text())["pid"] == a.proc.pid
        code, log = faults.hinas(tmp_path, env, *LONGER, "--resume", tag="b")
        assert code == 75, log[-3000:]
        (line,) = [x for x in log.splitlines() if x.startswith("hinas run: ")]
        assert f"is in use by pid {a.proc.pid} on {socket.gethostname()}" in line and "--resume" in line
        assert a.proc.poll() is None and json.loads(lock.read_text())["pid"] == a.proc.pid

        # 2. A dies without a word; C takes its lock over
        a.kill_driver()
        ran = max(_epochs(exp_dir), default=0)  # by A
        c = faults.Hinas(tmp_path, env, *LONGER, "--resume", tag="c")
        faults.wait_for(lambda: f"took over the lock of pid {a.proc.pid}" in c.log, "the lock taken over", c)

        # 3. Ctrl-C while the search trial runs an epoch
        # An epoch of C's that the driver took in (its result file has it): the next epoch runs.
        faults.wait_for(lambda: max(_epochs(exp_dir), default=0) > ran, "a search epoch", c)
        done = max(_epochs(exp_dir))
        assert done < MAX_EPOCHS
        os.killpg(c.proc.pid, signal.SIGINT)
        assert c.wait() == 128 + signal.SIGINT, c.log[-3000:]
        assert max(_epochs(exp_dir)) == done + 1  # the running epoch reached its checkpoint, no further
        (line,) = _hinas_lines(c.log)
        assert line.startswith("hinas run: stopped by SIGINT") and "--resume" in line and "Traceback" not in c.log
        assert not _running(uri, faults)
        assert faults._parent_status(uri) == "KILLED"
        _, runs = faults.mlflow_runs(uri)  # and the run of the stage it stopped in, that stage's alone
        assert {r.data.tags["hinas.key"]: r.info.status for r in runs if faults.is_stage_run(r)} == {"stage:search": "KILLED"}
        assert not lock.exists()
        assert not faults._state(exp_dir)["summary"]

        # 4. SIGTERM twice: stop at once
        d = faults.Hinas(tmp_path, env, *LONGER, "--resume", tag="d")
        faults.wait_for(lambda: "started with configuration" in d.log, "the search trial running", d)
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        d.proc.send_signal(signal.SIGTERM)
        assert d.wait() == 128 + signal.SIGTERM, d.log[-3000:]
        assert "SIGTERM received again: stopping now" in d.log
        (line,) = _hinas_lines(d.log)
        assert line.startswith("hinas run: stopped by SIGTERM") and "Traceback" not in d.log
        assert not _running(uri, faults) and not lock.exists()

        # 5. the resumed run finishes as if uninterrupted
        code, log = faults.hinas(tmp_path, env, *LONGER, "--resume", tag="e")
        assert code == 0, log[-4000:]
        epochs = _epochs(exp_dir)
        assert epochs == sorted(set(epochs)) and epochs[-1] == MAX_EPOCHS, epochs  # continued, never redone
        finished = faults.outcome(exp_dir)
        faults.check_mlflow(uri, finished)

        # 6. a full disk under the experiment
        disk_full(faults, make, tmp_path, env, exp_dir, finished)
    finally:
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)


def disk_full(faults, make, tmp_path, env, exp_dir, finished):
    products = [exp_dir / "report.md", exp_dir / "evaluation" / "summary.json", *sorted(exp_dir.glob("*/*/genotype.json")),
                *sorted((exp_dir / "evaluation").glob("*.parquet")), *sorted((exp_dir / "models").glob("*/model.pt"))]
    saved = tmp_path / "saved"
    shutil.move(exp_dir, saved)
    disk = make.sibling("test_disk_full").Tmpfs(exp_dir, "64m")
    try:
        subprocess.run(["cp", "-a", f"{saved}/.", str(exp_dir)], check=True)
        before = {p: p.read_bytes() for p in products}
        disk.fill()
        code, log = faults.hinas(tmp_path, env, *LONGER, "--resume", tag="f")
        assert code == 1, log[-4000:]
        (line,) = _hinas_lines(log)
        assert line.startswith(f"hinas run: no space left on device writing {exp_dir}/"), line
        assert "--resume" in line and "Traceback" not in log
        assert {p: p.read_bytes() for p in products} == before  # the previous complete files
        assert not [p for p in exp_dir.rglob(".*.tmp")]
        assert not _running(env["MLFLOW_TRACKING_URI"], faults)
        disk.free()
        code, log = faults.hinas(tmp_path, env, *LONGER, "--resume", tag="g")
        assert code == 0, log[-4000:]
        assert faults.outcome(exp_dir) == finished
        faults.check_mlflow(env["MLFLOW_TRACKING_URI"], finished)
    finally:
        disk.unmount()
