"""Issue #15's GPU runs at one equal reduced budget (tune_configs/reduced_budget.args): every
config loads and validates with it, the budget sets the same search and retraining lengths for
all, and changes nothing else - each variant keeps its own widths, sigmas, loss and preset."""
from pathlib import Path

import pytest

from hinas.pipeline.experiment import load_experiment
from hinas.pipeline.state import config_identity

# The runs of docs/ABLATION_PLAN.md and the sigmas each must cover (the paper's Tables 2 and 4
# at all three; SIM and Rain are pairs, without a sigma).
RUNS = {"bsd500.yaml": (30, 50, 70), "ablation_table1_ws.yaml": (30,), "ablation_table1_w40.yaml": (30,),
        "ablation_table1_wm.yaml": (30,), "ablation_table2_mse.yaml": (30, 50, 70),
        "ablation_table3_r1.yaml": (30,), "ablation_table3_r2.yaml": (30,),
        "ablation_table4_unshared.yaml": (30, 50, 70), "ablation_aspp.yaml": (30,), "ablation_journal.yaml": (30,),
        "sim.yaml": (0,), "rain800.yaml": (0,), "optuna_sigma50.yaml": (50,)}
BUDGET = {"search.max_epochs": 10, "search.warmup_epochs": 3, "retrain.iterations": 5000,
          "retrain.report_every": 1000, "model.baselines": [], "evaluate.bm3d": "kept", "resources.gpu": 1}


def budget(repo_root):
    """The --set overrides, read as the documented shell line does: `grep -v '^#'`, split on space."""
    text = (repo_root / "tune_configs/reduced_budget.args").read_text()
    words = " ".join(line for line in text.splitlines() if not line.startswith("#")).split()
    assert words[::2] == ["--set"] * (len(words) // 2)
    return words[1::2]


def _at(d, dotted):
    for key in dotted.split("."):
        d = d[key]
    return d


def test_the_budget_file_sets_exactly_the_stated_budget(repo_root):
    from hinas.pipeline.overrides import parse_override

    assert dict(parse_override(s) for s in budget(repo_root)) == BUDGET


@pytest.mark.parametrize("config", sorted(RUNS))
def test_every_issue15_run_validates_with_the_budget_which_changes_only_its_own_keys(config, repo_root, tmp_path):
    path = repo_root / "tune_configs" / config
    out = f"output_dir={tmp_path}"
    plain, budgeted = load_experiment(path, [out]), load_experiment(path, [out, *budget(repo_root)])
    assert budgeted.data.sigmas == tuple(float(s) for s in RUNS[config])
    a, b = config_identity(plain), config_identity(budgeted)
    for key, value in BUDGET.items():
        if not key.startswith("resources."):  # machine keys: not part of a run's identity
            assert _at(b, key) == value, key
            _at(a, key.rsplit(".", 1)[0])[key.rsplit(".", 1)[1]] = value
    assert a == b  # nothing else moved: the variant's own size, sigmas, loss and preset stay
    assert budgeted.resources.gpu == 1


def test_the_optuna_study_is_already_at_the_budget(repo_root, tmp_path):
    path, out = repo_root / "tune_configs/optuna_sigma50.yaml", f"output_dir={tmp_path}"
    exp = load_experiment(path, [out])
    assert exp.to_dict() == load_experiment(path, [out, *budget(repo_root)]).to_dict()
    assert exp.optuna.num_samples >= 12 and exp.optuna.storage is None  # the study travels with the run
    assert set(exp.optuna.space) == {"search.ssim_weight", "search.a_lr"}
    lam, lr = exp.optuna.space["search.ssim_weight"], exp.optuna.space["search.a_lr"]
    assert (lam["low"], lam["high"]) == (0.0, 1.0) and lr["log"] and lr["low"] < exp.search.a_lr < lr["high"]


def test_the_plan_names_every_run(repo_root):
    plan = (repo_root / "docs/ABLATION_PLAN.md").read_text()
    assert [c for c in RUNS if f"tune_configs/{c}" not in plan] == []
    assert "reduced_budget.args" in plan
    assert Path(repo_root / "tune_configs/reduced_budget.args").is_file()


def test_hinas_run_dry_run_checks_a_budgeted_run_as_a_run_would_and_runs_nothing(repo_root, tmp_path):
    import os
    import subprocess
    import sys

    root = os.environ.get("HINAS_BSDS500_ROOT", "/work/shared/datasets/BSDS500")
    if not (Path(root) / "images" / "train").is_dir():
        pytest.skip("BSDS500 images not available (set HINAS_BSDS500_ROOT)")

    def dry(config):
        sets = [x for s in [*budget(repo_root), "resources.gpu=0", f"output_dir={tmp_path}", f"data.root={root}"]
                for x in ("--set", s)]
        out = subprocess.run([sys.executable, "-m", "hinas.pipeline.cli", "run", str(repo_root / "tune_configs" / config),
                              "--dry-run", *sets], capture_output=True, text=True, cwd=tmp_path,
                             env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
        return out.returncode, out.stdout, out.stderr

    code, out, err = dry("ablation_table1_w40.yaml")
    assert code == 0 and "search <= 10 epochs, retraining 5000 iterations x 12; nothing was run" in out, err
    # R1 edits the ws run's genotype: before that run, the dry run says so in one line.
    code, out, err = dry("ablation_table3_r1.yaml")
    assert code == 2 and err.count("\n") == 1 and "bsd500-table1_ws/derived/sigma30/genotype.json does not exist" in err
    assert list(tmp_path.iterdir()) == []  # nothing made: no run folder, no lock
