"""The evaluate stage keeps each model's row (``<label>.row.json``, pipeline/evaluate_stage.py): a
run cut during its evaluation, or resumed elsewhere from its bundle, scores again only the models
whose row is missing or was computed from another model file, sigma, test data or settings."""
import json

import pytest
import torch

from hinas.pipeline import evaluate_stage
from hinas.pipeline.evaluate_stage import ROW, run_evaluate
from hinas.pipeline.experiment import load_experiment
from hinas_core.models import build_model, save_model

# Two 128 x 128 crops of the bundled sample photographs, no BM3D: a tiny DnCNN scores them in
# a fraction of a second.
SMALL = ["evaluate.max_images=2", "evaluate.crop=128", "evaluate.bm3d=false"]
SPEC = {"kind": "dncnn", "depth": 3, "width": 4, "in_channels": 1}


@pytest.fixture
def config(repo_root, tmp_path):
    def make(*overrides):
        return load_experiment(repo_root / "tune_configs/quickstart.yaml", [*SMALL, f"output_dir={tmp_path}", *overrides])
    return make


def tiny_model(path, seed):
    torch.manual_seed(seed)
    return save_model(path, SPEC, build_model(SPEC), {"sigma": 30.0, "iterations": 0})


@pytest.fixture
def scored(monkeypatch):
    """The labels :func:`evaluate_model` is called for, in order (it still scores them)."""
    calls = []
    real = evaluate_stage.evaluate_model

    def counting(exp, model_file, sigma, label, *args, **kwargs):
        calls.append(label)
        return real(exp, model_file, sigma, label, *args, **kwargs)
    monkeypatch.setattr(evaluate_stage, "evaluate_model", counting)
    return calls


def test_a_kept_row_is_reused_and_anything_that_decides_it_scores_again(config, tmp_path, scored, capsys):
    models = [{"label": "a", "sigma": 30, "model": tiny_model(tmp_path / "a.pt", 0)},
              {"label": "b", "sigma": 30, "model": tiny_model(tmp_path / "b.pt", 1)}]
    out = config().experiment_dir / "evaluation"
    first = run_evaluate(config(), models)
    assert scored == ["a", "b"] and (out / f"a{ROW}").is_file() and (out / f"b{ROW}").is_file()

    # the same models and settings again (bundle-imported paths differ, the bytes do not)
    moved = tmp_path / "elsewhere.pt"
    moved.write_bytes(models[0]["model"].read_bytes())
    again = run_evaluate(config("evaluate.bm3d=kept"), [{**models[0], "model": moved}, models[1]])
    assert scored == ["a", "b"], "a kept row was scored again"
    assert "hinas: a was scored earlier from this very model file and settings" in capsys.readouterr().err
    for r, s in zip(again, first):
        assert {k: v for k, v in r.items() if k not in ("model", "examples")} == \
               {k: v for k, v in s.items() if k not in ("model", "examples")}
    assert again[0]["model"] == str(moved) and again[1]["examples"] == str(out / "b-examples.png")

    # other weights under the same label, other test images, another sigma: scored again
    tiny_model(models[1]["model"], 2)
    run_evaluate(config(), models)
    assert scored[2:] == ["b"]
    run_evaluate(config("evaluate.crop=96"), models[:1])
    assert scored[3:] == ["a"]
    run_evaluate(config("evaluate.crop=96"), [{**models[0], "sigma": 50}])
    assert scored[4:] == ["a"]


def test_a_row_whose_tables_or_key_are_gone_is_scored_again(config, tmp_path, scored):
    models = [{"label": "a", "sigma": 30, "model": tiny_model(tmp_path / "a.pt", 0)}]
    out = config().experiment_dir / "evaluation"
    run_evaluate(config(), models)
    (out / "a.parquet").unlink()  # a row without its per-image table
    run_evaluate(config(), models)
    assert scored == ["a", "a"] and (out / "a.parquet").is_file()
    (out / f"a{ROW}").write_text(json.dumps({"row": {"label": "a"}}))  # no key: not trusted
    run_evaluate(config(), models)
    assert scored == ["a", "a", "a"]
