"""scripts/gpu_lane.sh: a queue of runs across time-limited machines (issue #15's ablations).

Real processes: the script runs real `hinas run` stretches of two tiny CPU experiments, the
second retraining the genotype the first derived, and exports their bundles; a "fresh machine"
is the same state folder with every run folder deleted.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from .conftest import write_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[2]


def lane(tmp: Path, seconds_left: int, *configs: Path) -> tuple:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1", "PYTHON": sys.executable,
           "HINAS": f"{sys.executable} -m hinas.pipeline.cli", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
           "RAY_TMPDIR": tempfile.mkdtemp(prefix="hl", dir="/tmp")}
    env.pop("RAY_ADDRESS", None)
    try:
        out = subprocess.run(["bash", str(REPO / "scripts/gpu_lane.sh"), str(tmp / "state"),
                              str(int(time.time()) + seconds_left), *map(str, configs)],
                             cwd=tmp, env=env, capture_output=True, text=True, timeout=800)
    finally:
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    return out.returncode, out.stdout + out.stderr


def test_lane_runs_its_queue_in_order_and_continues_on_a_fresh_machine(tmp_path):
    runs = tmp_path / "runs"
    first = write_config(tmp_path / "first.yaml", runs)
    # the second retrains the genotype the first derives, as R1/R2 edit the ws run's cell
    second = write_config(tmp_path / "second.yaml", runs, name="t2",
                          derive={"from_genotype": str(runs / "t" / "derived" / "sigma30" / "genotype.json")})
    state = tmp_path / "state"

    code, log = lane(tmp_path, 30, first, second)
    assert code == 3 and "s left: first and the runs after it wait" in log, log[-3000:]
    assert not runs.exists()

    code, log = lane(tmp_path, 600, first)
    assert code == 0 and "[stretch] the run finished" in log and "[lane] first finished" in log, log[-4000:]
    assert (state / "first.done").is_file() and (state / "first" / "manifest.json").is_file()
    assert not (state / "first.new").exists()

    # a fresh machine: no run folders, only the bundles; the second run needs the first's genotype
    shutil.rmtree(runs)
    code, log = lane(tmp_path, 600, first, second)
    assert code == 0, log[-4000:]
    assert "[lane] first finished earlier: importing its products" in log
    assert "[lane] first: a stretch" not in log and "[lane] second finished" in log
    assert (runs / "t" / "derived" / "sigma30" / "genotype.json").is_file()
    assert (state / "second.done").is_file() and (state / "second" / "manifest.json").is_file()
    assert (runs / "t2" / "models" / "hinas-sigma30-seed0" / "model.pt").is_file() and (runs / "t2" / "report.md").is_file()
