"""The Optuna study that spans jobs (pipeline/optuna_study.py), without Ray: a real study in a
real SQLite file in the run folder, the searcher Tune drives, the importances and their MLflow
artifacts, and what a bundle may carry of it. The end-to-end cut -> export -> delete -> import
-> resume is in tests/reliability/test_optuna_resume.py."""
from __future__ import annotations

import json
import shutil

import pytest

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def exp(tmp_path, repo_root):
    from hinas.pipeline.experiment import load_experiment

    return load_experiment(repo_root / "tune_configs/tiny_optuna.yaml",
                           [f"output_dir={tmp_path / 'runs'}", "optuna.storage=null", "optuna.num_samples=3"])


def a_study(exp, values):
    """The run folder's sigma-30 study with one finished trial per value (lambda decides it)."""
    import optuna

    from hinas.pipeline.optuna_study import load_study, storage_url, study_name

    load_study(exp, 30)  # makes the run folder's optuna/
    study = optuna.create_study(study_name=study_name(exp, 30), storage=storage_url(exp), direction="maximize")
    dists = {"hp/ssim_weight": optuna.distributions.FloatDistribution(0, 1),
             "hp/a_lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
             "hp/patience": optuna.distributions.IntDistribution(1, 3)}
    for i, v in enumerate(values):
        study.add_trial(optuna.trial.create_trial(params={"hp/ssim_weight": v, "hp/a_lr": 1e-3 * (1 + i % 2),
                                                          "hp/patience": 1 + i % 3},
                                                  distributions=dists, value=20 + 5 * v))
    return study


def a_cut_trial(study):
    """A trial the study holds as RUNNING: the job was cut during it."""
    cut = study.ask()
    cut.suggest_float("hp/ssim_weight", 0.0, 1.0)
    cut.suggest_float("hp/a_lr", 1e-4, 1e-2, log=True)
    cut.suggest_int("hp/patience", 1, 3)
    return cut


def checkpoints(exp, epochs):
    """An imported search checkpoint at ``epochs[n]`` for each study trial number ``n``."""
    import torch

    from hinas.pipeline.state import imported_file
    from hinas_core.early_stop import EarlyStopRule

    for number, epoch in epochs.items():
        path = imported_file(exp, "search", f"sigma30-seed0-trial{number}")
        path.parent.mkdir(parents=True)
        torch.save({"epoch": epoch, "rule": EarlyStopRule().state_dict(), "config": {"max_epochs": exp.search.max_epochs}}, path)


def test_a_resumed_search_replays_the_study_and_asks_only_for_what_is_missing(exp):
    import optuna

    from hinas.pipeline.optuna_study import optuna_searcher
    from hinas.pipeline.search_stage import OPTUNA_TRIAL, OptunaSpace

    study = a_study(exp, [0.3])
    cut = a_cut_trial(study)  # trial 1: running when the job was cut

    searcher = optuna_searcher(exp, 30, OptunaSpace(exp.optuna.space), "es_best_psnr")
    done, running, new = (searcher.suggest(t) for t in ("a", "b", "c"))
    assert done == {"hp": {"ssim_weight": 0.3, "a_lr": 1e-3, "patience": 1}, OPTUNA_TRIAL: 0}
    assert running == {"hp": {k.split("/")[1]: v for k, v in cut.params.items()}, OPTUNA_TRIAL: 1}
    assert new[OPTUNA_TRIAL] == 2 and new["hp"] not in (done["hp"], running["hp"])
    searcher.on_trial_result("b", {"es_best_psnr": 10.0, "training_iteration": 1})
    for trial_id, value in (("a", 99.0), ("b", 24.5), ("c", 23.0)):
        searcher.on_trial_complete(trial_id, {"es_best_psnr": value})
    trials = optuna.load_study(study_name=study.study_name, storage=study._storage).get_trials()
    assert [(t.number, t.state.name, t.value) for t in trials] == [(0, "COMPLETE", 21.5), (1, "COMPLETE", 24.5),
                                                                    (2, "COMPLETE", 23.0)]


def test_a_fresh_machine_does_not_draw_the_first_jobs_samples_again(exp):
    from hinas.pipeline.optuna_study import optuna_searcher
    from hinas.pipeline.search_stage import OptunaSpace

    searcher = optuna_searcher(exp, 30, OptunaSpace(exp.optuna.space), "es_best_psnr")
    first = searcher.suggest("x")
    searcher.on_trial_complete("x", {"es_best_psnr": 20.0})
    resumed = optuna_searcher(exp, 30, OptunaSpace(exp.optuna.space), "es_best_psnr")
    assert resumed.suggest("y") == first  # the replay
    second = resumed.suggest("z")  # a sampler seeded as the first job's would draw trial 0 again
    assert second["optuna_trial"] == 1 and second["hp"] != first["hp"]


def test_the_study_importances_and_plot_go_to_the_search_stage_run(exp, tmp_path):
    from mlflow import MlflowClient

    from hinas.pipeline.mlflow_tracking import Tracker
    from hinas.pipeline.optuna_study import log_study, write_study_products

    a_study(exp, [0.1, 0.9, 0.5, 0.2, 0.7, 0.4])
    written = write_study_products(exp)
    assert sorted(p.name for p in written) == ["importance-sigma30.json", "importance-sigma30.png", "trials-sigma30.csv"]
    info = json.loads((exp.experiment_dir / "optuna" / "importance-sigma30.json").read_text())
    assert info["complete"] == 6 and info["best"]["params"]["hp/ssim_weight"] == 0.9
    assert max(info["importance"], key=info["importance"].get) == "hp/ssim_weight"  # lambda alone decides

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, exp.name, f"file://{tmp_path / 'artifacts'}")
    with tracker.run("p", "pipeline:x") as parent, tracker.stage(parent, "search") as stage:
        log_study(tracker, stage, exp)
    names = sorted(a.path for a in MlflowClient(uri).list_artifacts(stage, "optuna"))
    assert names == ["optuna/importance-sigma30.json", "optuna/importance-sigma30.png", "optuna/trials-sigma30.csv"]


def test_too_few_trials_give_no_importance_but_say_why(exp):
    from hinas.pipeline.optuna_study import write_study_products

    a_study(exp, [0.5])
    names = [p.name for p in write_study_products(exp)]
    info = json.loads((exp.experiment_dir / "optuna" / "importance-sigma30.json").read_text())
    assert "importance-sigma30.png" not in names and info["importance"] == {} and info["importance_note"]


def test_a_bundle_carries_the_study_and_refuses_a_file_that_is_no_study(exp, tmp_path):
    from hinas.pipeline.state import StateError, export_state, import_state

    a_study(exp, [0.1, 0.9])
    bundle = tmp_path / "bundle"
    manifest = export_state(exp, bundle)
    assert {f["path"]: f["kind"] for f in manifest["files"]} == {"optuna/studies.db": "optuna-study"}
    db = exp.experiment_dir / "optuna" / "studies.db"
    db.write_bytes(b"not a database at all, but the right name")
    export_state(exp, bundle)
    shutil.rmtree(exp.experiment_dir)
    with pytest.raises(StateError, match="optuna/studies.db is not an SQLite database"):
        import_state(exp, bundle)
    assert not exp.experiment_dir.exists()


def test_ended_trials_are_replayed_after_the_cut_ones_and_take_no_gpu(exp):
    """On one GPU a replay of an ended trial (it only reports its last result) would hold the GPU
    for ~15 s of Tune's trial start and stop: cut trials go first, ended ones take no GPU."""
    from hinas.pipeline.optuna_study import optuna_searcher
    from hinas.pipeline.search_stage import ENDED_TRIAL, OPTUNA_TRIAL, OptunaSpace, TrialResources

    study = a_study(exp, [0.3, 0.6])  # trials 0 and 1 complete; 1 has no checkpoint here
    for _ in range(2):  # trials 2 and 3: running when the job was cut, 3 before its first checkpoint
        a_cut_trial(study)
    checkpoints(exp, {0: exp.search.max_epochs, 2: 1})

    searcher = optuna_searcher(exp, 30, OptunaSpace(exp.optuna.space), "es_best_psnr")
    order = [searcher.suggest(t) for t in "abcd"]
    # the one continuing a checkpoint, the ended one, then those without a checkpoint
    assert [(c[OPTUNA_TRIAL], c.get(ENDED_TRIAL, False)) for c in order] == [(2, False), (0, True), (1, False), (3, False)]
    resources = TrialResources(cpu=4, gpu=1)
    assert resources(order[0]).required_resources == {"CPU": 4, "GPU": 1}
    assert resources(order[1]).required_resources == {"CPU": 1}


def test_replays_of_ended_trials_hold_no_slot_of_max_concurrent(tmp_path, repo_root):
    """Slots go to trials that search: with one slot taken by a cut trial, the ended ones are
    replayed beside it, and a new trial is sampled only when the cut one leaves its slot."""
    import optuna

    from hinas.pipeline.experiment import load_experiment
    from hinas.pipeline.search_stage import ENDED_TRIAL, OPTUNA_TRIAL, _optuna_searcher

    exp = load_experiment(repo_root / "tune_configs/tiny_optuna.yaml", [f"output_dir={tmp_path / 'runs'}", "optuna.storage=null",
                                                                        "optuna.num_samples=4", "optuna.max_concurrent=1"])
    study = a_study(exp, [0.3, 0.6])  # trials 0 and 1 ended
    a_cut_trial(study)  # trial 2: cut mid-search
    checkpoints(exp, {0: exp.search.max_epochs, 1: exp.search.max_epochs, 2: 1})

    limit = _optuna_searcher(exp, 30)
    suggested = [limit.suggest(t) for t in "abcd"]
    assert [(c[OPTUNA_TRIAL], c.get(ENDED_TRIAL, False)) for c in suggested[:3]] == [(2, False), (0, True), (1, True)]
    assert suggested[3] is None  # the one slot is the cut trial's
    limit.on_trial_complete("b", {"es_best_psnr": 99.0})  # replays leave no slot free...
    limit.on_trial_complete("c", {"es_best_psnr": 99.0})
    assert limit.suggest("e") is None
    limit.on_trial_complete("a", {"es_best_psnr": 24.5})  # ...the searching trial does
    assert limit.suggest("f")[OPTUNA_TRIAL] == 3
    trials = optuna.load_study(study_name=study.study_name, storage=study._storage).get_trials()
    assert [(t.number, t.state.name, t.value) for t in trials[:3]] == [(0, "COMPLETE", 21.5), (1, "COMPLETE", 23.0),
                                                                        (2, "COMPLETE", 24.5)]
