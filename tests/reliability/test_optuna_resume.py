"""An Optuna study that spans machines (issue #15): cut, export, delete, import, resume.

Real processes: ``hinas search`` of the tiny Optuna config with its study in the run folder,
one trial at a time, each "machine" its own local Ray. The driver SIGKILLs itself at its 6th
trial result (trial 0 has finished its 4 epochs, trial 1 has reported 2), as when a job's time
runs out; resumed on the same machine and cut again; then the state is exported, the run
folder deleted, the bundle imported and the search resumed on a new "machine". The study must
end with exactly ``num_samples`` trials, the finished ones unchanged, each cut trial continued
from its checkpoint (not started again), and the products there.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

NAME = "tiny-optuna"
# Storage unset: the study lives in the run folder and travels. One trial at a time, each of
# exactly 4 epochs (2 warm-up; the stop rule cannot fire before the cap), so the cut is exact.
SETS = ["optuna.storage=null", "optuna.num_samples=3", "optuna.max_concurrent=1", "search.max_epochs=4",
        "search.warmup_epochs=2", "resources.cpu=1"]


def cli(out: Path, *args: str, kill_at: str = "") -> tuple:
    """One hinas command on a fresh "machine": its own Ray; everything it started dies with it."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1", "RAY_memory_monitor_refresh_ms": "0",
           "MLFLOW_TRACKING_URI": f"sqlite:///{out}/mlflow.db", "RAY_TMPDIR": tempfile.mkdtemp(prefix="ho", dir="/tmp")}
    env.pop("RAY_ADDRESS", None)
    if kill_at:
        env["HINAS_FAULT_KILL_AT"] = kill_at
    config = Path(__file__).resolve().parents[2] / "tune_configs" / "tiny_optuna.yaml"
    sets = [x for s in [f"output_dir={out / 'runs'}", *SETS] for x in ("--set", s)]
    cmd = [args[0], *args[1:2], str(config), *sets, *args[2:]] if args[0] == "state" else [args[0], str(config), *sets, *args[1:]]
    proc = subprocess.Popen([sys.executable, "-m", "hinas.pipeline.cli", *cmd], cwd=out, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=600)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    return proc.returncode, log


def trials(db: Path) -> list:
    import optuna

    study = optuna.load_study(study_name=f"{NAME}-sigma30", storage=f"sqlite:///{db}")
    return [(t.number, t.state.name, t.params, t.value) for t in study.get_trials()]


def epochs_run(run: Path, trial: int) -> list:
    """``[(checkpoint index, epoch)]`` of a study trial in the last Tune experiment: its first
    checkpoint is index 0, so a trial that continued from epoch 2 starts with (0, 3). (Tune keeps
    the last 2; its result.json is no witness after a SIGKILL: lines may not have been written.)"""
    from hinas_core.models import load_tensors

    folder = next((run / "search-sigma30").glob(f"sigma30-seed0-trial{trial}-*"))
    return sorted((int(p.name.split("_")[1]), int(load_tensors(p / "search.pt", "search checkpoint")["epoch"]))
                  for p in folder.glob("checkpoint_*"))


def test_a_cut_optuna_study_resumes_here_and_on_a_fresh_machine_and_ends_with_num_samples_trials(tmp_path):
    run = tmp_path / "runs" / NAME
    code, log = cli(tmp_path, "search", kill_at="search-result:6")
    assert code == -signal.SIGKILL and "SIGKILL at search-result:6" in log, log[-3000:]
    first = trials(run / "optuna" / "studies.db")
    assert [(n, s) for n, s, _, _ in first] == [(0, "COMPLETE"), (1, "RUNNING")], first

    # The same machine: trial 0 replayed from its last checkpoint (one result), trial 1 goes on
    # from epoch 2 (two), trial 2 is new and cut after its second epoch. Tuner.restore would
    # have asked for trial 1 again.
    code, log = cli(tmp_path, "search", "--resume", kill_at="search-result:5")
    assert code == -signal.SIGKILL and "SIGKILL at search-result:5" in log, log[-3000:]
    second = trials(run / "optuna" / "studies.db")
    assert [(n, s) for n, s, _, _ in second] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "RUNNING")], second
    assert epochs_run(run, 0) == [(0, 4)] and epochs_run(run, 1) == [(0, 3), (1, 4)]

    # A fresh machine: export, delete the run folder, import, resume.
    bundle = tmp_path / "bundle"
    code, log = cli(tmp_path, "state", "export", "--out", str(bundle), "--compact")  # as scripts/gpu_stretch.sh
    assert code == 0, log[-3000:]
    assert "checkpoint: search sigma30-seed0-trial2: epoch 2" in log and "optuna-study" in log, log
    # the ended trials travel without their supernet (they are replayed, never continued)
    size = {f["path"].split("/")[2]: f["size"] for f in json.loads((bundle / "manifest.json").read_text())["files"]
            if f["path"].endswith("search.pt")}
    assert size["sigma30-seed0-trial0"] < size["sigma30-seed0-trial2"] / 3 > size["sigma30-seed0-trial1"], size
    shutil.rmtree(run)
    code, log = cli(tmp_path, "state", "import", "--from", str(bundle))
    assert code == 0, log[-3000:]

    code, log = cli(tmp_path, "search", "--resume")
    assert code == 0, log[-3000:]
    last = trials(run / "optuna" / "studies.db")
    assert [(n, s) for n, s, _, _ in last] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")], last
    assert last[:2] == second[:2] and last[0] == first[0]  # finished trials: same parameters, same values
    assert last[1][2] == first[1][2] and last[2][2] == second[2][2] != first[0][2]  # each kept its parameters
    assert epochs_run(run, 2) == [(0, 3), (1, 4)]  # trial 2 continued from its epoch-2 checkpoint

    rows = json.loads((run / "search_summary.json").read_text())["trials"]
    assert [r["trial"] for r in rows] == ["sigma30-seed0-trial0", "sigma30-seed0-trial1", "sigma30-seed0-trial2"]
    assert all(r["status"] == "OK" and r["epochs"] == 4 and Path(r["genotype"]).is_file() for r in rows)
    assert rows[0]["val_psnr"] == pytest.approx(first[0][3])  # its genotype is the first machine's
    importance = json.loads((run / "optuna" / "importance-sigma30.json").read_text())
    assert importance["trials"] == importance["complete"] == 3
    assert set(importance["importance"]) == {"hp/ssim_weight", "hp/a_lr", "hp/patience"}
    assert (run / "optuna" / "importance-sigma30.png").stat().st_size > 0
    assert (run / "optuna" / "trials-sigma30.csv").read_text().count("\n") == 4
