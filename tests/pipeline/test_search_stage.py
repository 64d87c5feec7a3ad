"""The search stage end to end: real Ray Tune trials on real images, on CPU."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hinas_core import Genotype, build_network

pytestmark = pytest.mark.slow

# The tiny preset, made to stop early: the first decrease of validation PSNR ends a trial.
OVERRIDES = ["--set", "search.patience=1", "--set", "search.stop_rule=decrease", "--set", "search.max_epochs=8"]


def hinas(*args, cwd, env=None, **kw):
    env = {**(env or os.environ), "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "hinas.pipeline.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def finish(proc, timeout=600):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


@pytest.fixture(scope="module")
def tiny_search(tmp_path_factory, repo_root):
    out = tmp_path_factory.mktemp("search")
    code, log = finish(hinas("search", str(repo_root / "tune_configs/tiny_search.yaml"),
                             "--set", f"output_dir={out}", *OVERRIDES, cwd=out))
    assert code == 0, log[-3000:]
    summary = json.loads((out / "tiny-search" / "search_summary.json").read_text())
    return out / "tiny-search", summary, log


def test_three_sigma_trials_run_concurrently_and_each_yields_a_valid_genotype(tiny_search):
    exp_dir, summary, _ = tiny_search
    rows = {r["sigma"]: r for r in summary["trials"]}
    assert sorted(rows) == [30.0, 50.0, 70.0]
    assert summary["max_concurrent"] >= 2, "the sigma trials did not overlap in time"
    for sigma, row in rows.items():
        g = Genotype.load(row["genotype"])
        assert g.provenance["sigma"] == sigma and g.provenance["epoch"] == row["best_epoch"]
        assert g.provenance["val_psnr"] == pytest.approx(row["val_psnr"])
        assert g.provenance["epoch"] > 2, "the best supernet must come from an architecture epoch"
        net = build_network(g)
        assert net(torch.rand(1, 1, 16, 16)).shape == (1, 1, 16, 16)
    assert (exp_dir / "search_summary.md").read_text().count("sigma") >= 3


def test_the_rule_stops_trials_before_the_epoch_cap(tiny_search):
    _, summary, _ = tiny_search
    assert all(r["stop"] in ("early-stop", "epoch-cap") and r["epochs"] <= 8 for r in summary["trials"])
    assert any(r["stop"] == "early-stop" and r["epochs"] < 8 for r in summary["trials"]), \
        "no trial was stopped by the rule before the cap"


def test_killed_search_resumes_to_the_same_decision(tiny_search, tmp_path, repo_root):
    """SIGKILL the driver mid-run, resume with --resume: same stop epoch, best epoch, genotype."""
    _, summary, _ = tiny_search
    reference = next(r for r in summary["trials"] if r["sigma"] == 30.0)
    args = ["search", str(repo_root / "tune_configs/tiny_search.yaml"), "--set", f"output_dir={tmp_path}",
            "--set", "data.sigmas=[30]", "--set", "resources.cpu=1", *OVERRIDES]
    proc = hinas(*args, cwd=tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(list((tmp_path / "tiny-search" / "search").glob("*/checkpoint_*"))) >= 2:
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the search ended before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (tmp_path / "tiny-search" / "search_summary.json").exists()
    code, log = finish(hinas(*args, "--resume", cwd=tmp_path))
    assert code == 0, log[-3000:]
    resumed = json.loads((tmp_path / "tiny-search" / "search_summary.json").read_text())["trials"][0]
    for key in ("epochs", "stop", "best_epoch", "val_psnr", "levels"):
        assert resumed[key] == reference[key], key
    assert Genotype.load(resumed["genotype"]) == Genotype.load(reference["genotype"])


def test_a_search_trial_that_keeps_failing_stops_the_pipeline_before_derive(tmp_path, repo_root):
    """A trial that fails after Tune's retries has the genotype of an unfinished search: `hinas
    run` must say so and stop, not derive and retrain it (it went on, on an H200)."""
    env = {**os.environ, "HINAS_FAULT_KILL_AT": "search-step:7"}  # every attempt dies 7 batches in
    args = ["run", str(repo_root / "tune_configs/tiny_search.yaml"), "--set", f"output_dir={tmp_path}",
            "--set", "data.sigmas=[30]", "--set", "resources.cpu=1", "--set", "search.warmup_epochs=1",
            "--set", "search.max_epochs=30", "--set", "search.patience=30", "--set", "retrain.iterations=2",
            "--set", "model.baselines=[]", "--set", "evaluate.max_images=1"]
    code, log = finish(hinas(*args, cwd=tmp_path, env=env))
    assert code == 1 and "search trial(s) failed" in log and "sigma30-seed0" in log, log[-3000:]
    exp_dir = tmp_path / "tiny-search"
    row = json.loads((exp_dir / "search_summary.json").read_text())["trials"][0]
    assert row["status"] == "ERROR" and row["genotype"]  # it had a genotype, and it was not used
    assert not (exp_dir / "derived").exists() and not (exp_dir / "retrain").exists()


def test_resume_without_an_experiment_is_a_clear_error(tmp_path, repo_root):
    code, log = finish(hinas("search", str(repo_root / "tune_configs/tiny_search.yaml"),
                             "--set", f"output_dir={tmp_path}", "--resume", cwd=tmp_path))
    assert code == 2 and "nothing to resume" in log


def test_an_existing_experiment_is_not_clobbered(tmp_path, repo_root):
    (tmp_path / "tiny-search" / "search").mkdir(parents=True)
    code, log = finish(hinas("search", str(repo_root / "tune_configs/tiny_search.yaml"),
                             "--set", f"output_dir={tmp_path}", cwd=tmp_path))
    assert code == 2 and "--resume" in log and "--overwrite" in log
    assert (tmp_path / "tiny-search" / "search").is_dir()


def test_search_on_real_bsd500_images(tmp_path, repo_root):
    root = os.environ.get("HINAS_BSDS500_ROOT") or repo_root.parent / "shared" / "datasets" / "BSDS500"
    if not (Path(root) / "images" / "train").is_dir():
        pytest.skip("BSDS500 images not available (set HINAS_BSDS500_ROOT)")
    args = ["search", str(repo_root / "tune_configs/tiny_search.yaml"), "--set", f"output_dir={tmp_path}",
            "--set", "data.dataset=bsd500", "--set", f"data.root={root}", "--set", "data.max_images=30",
            "--set", "data.sigmas=[50]", "--set", "data.val_fraction=0.05", "--set", "resources.cpu=1",
            "--set", "search.max_epochs=4"]
    env_cache = {"HINAS_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "hinas.pipeline.cli", *args], cwd=tmp_path,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": "", **env_cache},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    code, log = finish(proc)
    assert code == 0, log[-3000:]
    row = json.loads((tmp_path / "tiny-search" / "search_summary.json").read_text())["trials"][0]
    g = Genotype.load(row["genotype"])
    assert g.provenance["data"]["dataset"] == "bsd500" and g.provenance["sigma"] == 50.0
    assert row["epochs"] <= 4 and row["val_psnr"] > 10


def test_optuna_explores_search_hyperparameters_in_a_persistent_study(tmp_path, repo_root):
    import optuna

    db = tmp_path / "studies.db"
    code, log = finish(hinas("search", str(repo_root / "tune_configs/tiny_optuna.yaml"), "--set", f"output_dir={tmp_path}",
                             "--set", "optuna.num_samples=2", "--set", f"optuna.storage=sqlite:///{db}",
                             "--set", "search.max_epochs=4", cwd=tmp_path))
    assert code == 0, log[-3000:]
    rows = json.loads((tmp_path / "tiny-optuna" / "search_summary.json").read_text())["trials"]
    assert len(rows) == 2 and len({r["trial"] for r in rows}) == 2
    assert rows[0]["hp"] != rows[1]["hp"]
    for r in rows:
        assert set(r["hp"]) == {"ssim_weight", "a_lr", "patience"}
        g = Genotype.load(r["genotype"])
        assert g.provenance["hp"] == r["hp"] and g.provenance["config"]["patience"] == r["hp"]["patience"]
    study = optuna.load_study(study_name="tiny-optuna-sigma30", storage=f"sqlite:///{db}")
    assert len(study.trials) == 2
