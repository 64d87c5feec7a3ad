"""A run that spans machines (issue #12): cut, export, delete, import, resume -> the same results.

Real processes: ``hinas run`` of a small CPU pipeline (the quickstart cut to one sigma, three
search epochs, two retraining jobs of six iterations), each "machine" its own local Ray, its own
MLflow store and nothing left of the one before. The driver SIGKILLs itself at a named point
(``HINAS_FAULT_KILL_AT``) and its whole session is killed with it, as when a job's time runs
out; then ``hinas state export``, the run folder deleted, ``hinas state import``, and
``hinas run --resume`` on the next one. Cut once in the search and once in retraining, the
run must end with the genotype, models (weights), evaluation and report of an uninterrupted
run, and the last machine's MLflow store must hold the whole search curve and no RUNNING run.
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

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


# test_faults (loaded in the test as ``faults``) gives the run: CONFIG, NAME, TINY (the quickstart
# made as small as it goes), MODELS, and kill_session.
def machine(faults, out: Path, tag: str, *args: str, kill_at: str = "") -> tuple:
    """``hinas run`` on a fresh "machine": its own Ray and MLflow store; everything it started
    dies with it. Returns (exit code, log, MLflow URI)."""
    uri = f"sqlite:///{out}/mlflow-{tag}.db"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1", "RAY_memory_monitor_refresh_ms": "0",
           "MLFLOW_TRACKING_URI": uri, "RAY_TMPDIR": tempfile.mkdtemp(prefix="hs", dir="/tmp")}
    env.pop("RAY_ADDRESS", None)
    if kill_at:
        env["HINAS_FAULT_KILL_AT"] = kill_at
    log_path = out / f"{tag}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "hinas.pipeline.cli", "run", str(faults.CONFIG),
                                 "--set", f"output_dir={out / 'runs'}", *faults.TINY, *args],
                                cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        code = proc.wait(timeout=600)
    finally:
        faults.kill_session(proc.pid)
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    return code, log_path.read_text(), uri


def outcome(faults, exp_dir: Path) -> dict:
    """What a run decided and measured (test_faults' ``outcome``), plus its search history and
    the trained weights."""
    import torch

    from hinas_core.models import load_tensors

    from hinas.pipeline.retrain_curves import model_meta

    return {
        **faults.outcome(exp_dir),
        # Each job's validation curve (and early stop) as the model file keeps it: a job cut,
        # moved and resumed must end with the whole curve of an uninterrupted one.
        "curves": {m: {k: model_meta(exp_dir / "models" / m / "model.pt")[k] for k in ("validation", "stop_reason")}
                   for m in faults.MODELS},
        "history": [{k: h[k] for k in ("epoch", "train_loss", "val_psnr", "val_ssim", "alpha", "beta", "genotype")}
                    for h in json.loads((exp_dir / "genotypes" / "sigma30-seed0" / "history.json").read_text())],
        "models": {m: {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in
                       load_tensors(exp_dir / "models" / m / "model.pt")["state_dict"].items()} for m in faults.MODELS},
    }


def move(faults, cli, out: Path, tag: str) -> str:
    """Export the run's state, delete the run folder (and the machine's MLflow store), import."""
    bundle = out / "bundle"
    config, tiny = faults.CONFIG, faults.TINY
    code, text, err = cli("state", "export", config, "--set", f"output_dir={out / 'runs'}", *tiny, "--out", bundle)
    assert code == 0, err
    assert all(p.stat().st_size <= 16 * 2**20 for p in bundle.iterdir())
    shutil.rmtree(out / "runs")
    code, _, err = cli("state", "import", config, "--set", f"output_dir={out / 'runs'}", *tiny, "--from", bundle)
    assert code == 0, err
    return text


def test_a_run_cut_twice_and_moved_each_time_ends_as_an_uninterrupted_run(cli, make, tmp_path):
    from mlflow import MlflowClient

    faults = make.sibling("test_faults")  # the run, and its outcome(): what a run decided, without timings
    NAME, MODELS = faults.NAME, faults.MODELS

    ref = tmp_path / "reference"
    ref.mkdir()
    code, log, _ = machine(faults, ref, "reference")
    assert code == 0, log[-4000:]
    reference = outcome(faults, ref / "runs" / NAME)

    out = tmp_path / "moved"
    out.mkdir()
    code, log, _ = machine(faults, out, "first", kill_at="search-result:1")
    assert code == -signal.SIGKILL and "SIGKILL at search-result:1" in log, log[-3000:]
    text = move(faults, cli, out, "first")
    assert "checkpoint: search sigma30-seed0: epoch 1" in text  # the search resumes mid-way

    code, log, _ = machine(faults, out, "second", "--resume", kill_at="retrain-result:1")
    assert code == -signal.SIGKILL and "SIGKILL at retrain-result:1" in log, log[-3000:]
    text = move(faults, cli, out, "second")
    assert "search-summary" in text and "checkpoint: retrain " in text  # a job that had reported

    code, log, uri = machine(faults, out, "third", "--resume")
    assert code == 0, log[-4000:]
    assert outcome(faults, out / "runs" / NAME) == reference

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(NAME).experiment_id])
    assert runs and all(r.info.status == "FINISHED" for r in runs)
    faults.check_mlflow(uri, reference)  # the last machine's store: one run per stage, each trial's under it
    search = next(r for r in runs if r.data.tags.get("hinas.key") == f"search:{faults.TRIAL}")
    assert sorted(m.step for m in client.get_metric_history(search.info.run_id, "val_psnr")) == [1, 2, 3]
    assert [p["iteration"] for p in reference["curves"][MODELS[0]]["validation"]] == [2, 4, 6]
    for m in MODELS:  # the retraining curves too, though the jobs began on the machine before
        job = next(r for r in runs if r.data.tags.get("hinas.key") == f"retrain:{m}")
        assert sorted(x.step for x in client.get_metric_history(job.info.run_id, "val_psnr")) == [2, 4, 6], m
