"""A search is continued or reused only with the settings it was started with
(``search_inputs.json`` in the run folder): Tune restores a cut search with its own settings and
a finished one would be taken as it is, so a resume with others would silently ignore them."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hinas.pipeline.experiment import load_experiment
from hinas.pipeline.search_stage import INPUTS_FILE, SearchSettingsChanged, check_search_inputs, record_search_inputs


@pytest.fixture
def started(tmp_path, repo_root):
    """A run folder whose search was started from tiny_search.yaml (nothing else in it)."""
    exp = load_experiment(repo_root / "tune_configs/tiny_search.yaml", [f"output_dir={tmp_path}"])
    exp.experiment_dir.mkdir(parents=True)
    record_search_inputs(exp)
    return exp


def load(repo_root, tmp_path, *sets):
    return load_experiment(repo_root / "tune_configs/tiny_search.yaml", [f"output_dir={tmp_path}", *sets])


def test_other_search_settings_are_refused_and_named(started, repo_root, tmp_path):
    exp = load(repo_root, tmp_path, "search.max_epochs=12", "space.base_width=6", "data.sigmas=[30]")
    with pytest.raises(SearchSettingsChanged) as err:
        check_search_inputs(exp)
    said = str(err.value)
    assert "search.max_epochs: 8 -> 12" in said and "data.sigmas: [30.0, 50.0, 70.0] -> [30.0]" in said
    assert "space.base_width: 4 -> 6" in said and "--overwrite" in said and str(exp.experiment_dir) in said


def test_the_same_search_elsewhere_or_faster_is_accepted(started, repo_root, tmp_path):
    check_search_inputs(started)
    # another data root (a bundle moved to another machine), resources, the step's speed switches
    check_search_inputs(load(repo_root, tmp_path, "data.root=/elsewhere", "resources.cpu=2",
                             "search.cuda_graph=false", "search.channels_last=true", "retrain.iterations=7"))


def test_a_run_folder_without_the_record_is_not_checked(started, repo_root, tmp_path):
    (started.experiment_dir / INPUTS_FILE).unlink()
    check_search_inputs(load(repo_root, tmp_path, "search.max_epochs=12"))


@pytest.mark.parametrize("command, code", [("run", 1), ("search", 2)])
def test_resume_with_other_settings_is_one_clear_error_before_any_work(started, repo_root, tmp_path, command, code):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    before = sorted(p.name for p in started.experiment_dir.iterdir())
    out = subprocess.run([sys.executable, "-m", "hinas.pipeline.cli", command, str(repo_root / "tune_configs/tiny_search.yaml"),
                          "--set", f"output_dir={tmp_path}", "--set", "search.patience=3", "--resume"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == code, out.stdout + out.stderr
    assert "started with other settings (search.patience: 2 -> 3)" in out.stderr and "Traceback" not in out.stderr
    assert sorted(p.name for p in started.experiment_dir.iterdir()) == before  # no Tune experiment begun
