"""One writer per experiment (issue #16): the experiment lock of pipeline/lock.py, with real processes.

* a live holder (another process) makes `hinas run/search/retrain` of the same experiment exit at
  once, non-zero, with one line naming the holder's pid, host and start, and what to do;
* a holder that was SIGKILLed leaves its lock, which the next driver takes over by itself;
* a lock of another host is honoured while its lease is renewed and taken over once it expired;
* drivers that find the same stale lock at the same moment: exactly one of them gets it.
(The whole path with real `hinas run` drivers - one refused, one SIGKILLed and taken over by
`--resume` - is in test_interrupts.py, which shares its runs.)
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

HOLDER = """
import sys, time
from hinas.pipeline.lock import hold
assert hold(sys.argv[1], "run")
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def exp_dir(tmp_path, make):
    from hinas.pipeline.experiment import load_experiment

    config = make.config(tmp_path / "c.yaml", tmp_path / "runs")
    return config, load_experiment(config).experiment_dir


@pytest.fixture
def holder(exp_dir):
    """A real process holding the experiment's lock (as a driver would), ended after the test."""
    procs = []

    def start():
        p = subprocess.Popen([sys.executable, "-c", HOLDER, str(exp_dir[1])], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "held"
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


@pytest.fixture(autouse=True)
def _release():
    from hinas.pipeline import lock

    yield
    lock.release_all()


@pytest.mark.parametrize("command", ["run", "search", "retrain"])
def test_a_live_holder_refuses_a_second_driver_with_one_line(cli, exp_dir, holder, command):
    from hinas.pipeline.lock import lock_path

    config, folder = exp_dir
    p = holder()
    before = lock_path(folder).read_text()
    extra = {"run": ["--resume"], "search": ["--overwrite"], "retrain": ["--genotype", "example_denoise"]}[command]
    code, out, err = cli(command, config, *extra)
    assert code == 75, (out, err)
    (line,) = err.strip().splitlines()
    assert line.startswith(f"hinas {command}: experiment {folder} is in use by pid {p.pid} on {socket.gethostname()}")
    assert "`hinas run`, since 20" in line and "--resume" in line and "Traceback" not in err
    assert lock_path(folder).read_text() == before  # the holder keeps it
    assert not folder.exists()  # nothing was started (nor deleted, with --overwrite)


def test_a_sigkilled_holders_lock_is_taken_over(exp_dir, holder, capsys):
    from hinas.pipeline.lock import hold, lock_path

    _, folder = exp_dir
    p = holder()
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert json.loads(lock_path(folder).read_text())["pid"] == p.pid  # left behind
    assert hold(folder, "run")
    assert f"took over the lock of pid {p.pid} on {socket.gethostname()}" in capsys.readouterr().out
    assert json.loads(lock_path(folder).read_text())["pid"] == os.getpid()


def test_a_reused_pid_is_not_mistaken_for_the_holder(exp_dir):
    """The lock records the pid's start time: a new process under the old pid is not the holder."""
    from hinas.pipeline.lock import hold, lock_path

    _, folder = exp_dir
    path = lock_path(folder)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid(), "started": "1", "command": "run",
                                "since": "2020-01-01 00:00:00 UTC"}))
    assert hold(folder, "run")


def test_another_hosts_lock_holds_while_its_lease_is_renewed(exp_dir, monkeypatch, capsys):
    from hinas.pipeline.lock import hold, lock_path

    _, folder = exp_dir
    monkeypatch.setenv("HINAS_LOCK_LEASE_S", "30")
    path = lock_path(folder)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": "node-7", "pid": 4242, "command": "run", "since": "2026-01-01 00:00:00 UTC",
                                "lease_s": 30}))
    assert not hold(folder, "search")  # touched just now: the holder on node-7 is alive
    assert "in use by pid 4242 on node-7" in capsys.readouterr().err
    old = time.time() - 31
    os.utime(path, (old, old))  # node-7 stopped renewing 31 s ago: its 30 s lease expired
    assert hold(folder, "search")
    assert "took over the lock of pid 4242 on node-7" in capsys.readouterr().out
    assert json.loads(path.read_text())["pid"] == os.getpid()


def test_the_holder_renews_its_lease(exp_dir, monkeypatch):
    from hinas.pipeline.lock import ExperimentLock, lock_path

    _, folder = exp_dir
    monkeypatch.setenv("HINAS_LOCK_LEASE_S", "0.4")
    lock = ExperimentLock(folder, "run").acquire()
    try:
        old = time.time() - 100
        os.utime(lock_path(folder), (old, old))
        deadline = time.time() + 10
        while lock_path(folder).stat().st_mtime < old + 50:  # renewed every lease / 4
            assert time.time() < deadline, "the lease was not renewed"
            time.sleep(0.05)
    finally:
        lock.release()
    assert not lock_path(folder).exists()


def _race(folder, barrier, wins):
    from hinas.pipeline.lock import ExperimentLock, LockHeld

    barrier.wait()
    try:
        ExperimentLock(Path(folder), "run").acquire()
        wins.put(os.getpid())
        time.sleep(2)  # hold it while the others decide
    except LockHeld:
        pass


def test_drivers_racing_for_a_stale_lock_one_wins(exp_dir):
    from hinas.pipeline.lock import lock_path

    _, folder = exp_dir
    path = lock_path(folder)
    path.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "command": "run"}))
    ctx = multiprocessing.get_context("fork")
    barrier, wins = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(folder), barrier, wins)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    winners = []
    while not wins.empty():
        winners.append(wins.get())
    assert len(winners) == 1, winners


def test_an_empty_lock_is_taken_over_once_its_creator_is_surely_gone(exp_dir, capsys):
    """A creator that died between creating the lock and writing it (or a full disk) leaves it
    empty: honoured for a few seconds, then taken over."""
    from hinas.pipeline.lock import EMPTY_GRACE_S, hold, lock_path

    _, folder = exp_dir
    path = lock_path(folder)
    path.parent.mkdir(parents=True)
    path.write_text("")
    assert not hold(folder, "run")
    old = time.time() - EMPTY_GRACE_S - 1
    os.utime(path, (old, old))
    assert hold(folder, "run")
    assert "left empty or damaged" in capsys.readouterr().out
