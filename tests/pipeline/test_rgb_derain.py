"""De-raining in colour end to end (paper Sec. 3.4, issue #15): ``data.channels: 3`` carries RGB
through the search step, the derived network, retraining and both evaluation protocols (scored on
Y); model files record their channels and `hinas denoise` refuses a photo a model cannot take;
grey configs are as before (same config hash, same networks)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hinas.datasets import evaluate
from hinas.datasets.images import write_png
from hinas.datasets.rain_standin import add_rain
from hinas.pipeline.cli import main
from hinas.pipeline import data as pipeline_data
from hinas.pipeline.evaluate_stage import evaluate_model
from hinas.pipeline.experiment import experiment_from_dict, load_experiment
from hinas.pipeline.report import report_markdown
from hinas.pipeline.retrain_curves import validation_set
from hinas.pipeline.run import baseline_spec
from hinas.pipeline.state import config_hash
from hinas_core.config import ConfigError
from hinas_core.models import build_model, hinas_spec, load_model, save_model
from hinas_core.retrain import RetrainConfig, Trainer
from hinas_core.search import Searcher

TINY = ["data.root={root}", "space.preset=tiny", "data.patch_size=24", "data.val_fraction=0.25", "data.eval_patch=24",
        "search.batch_size=2", "search.steps_per_epoch=1", "search.max_epochs=2", "search.warmup_epochs=1",
        "model.width=4", "evaluate.examples=1"]


@pytest.fixture(scope="module")
def rain_root(tmp_path_factory, bsds_root):
    """A tiny rain set in the input/target layout: 48x56 crops of real BSDS500 colour photos with
    stand-in streaks (6 train, 2 test pairs)."""
    root = tmp_path_factory.mktemp("rain")
    rng = np.random.default_rng(0)
    files = sorted((bsds_root / "images" / "test").glob("*.jpg"))
    for split, picks in (("train", files[:6]), ("test", files[6:8])):
        for side in ("input", "target"):
            (root / split / side).mkdir(parents=True)
        for p in picks:
            clean = np.asarray(Image.open(p).convert("RGB"))[60:108, 80:136].copy()
            rainy, _ = add_rain(clean, rng)
            write_png(root / split / "input" / f"{p.stem}.png", rainy)
            write_png(root / split / "target" / f"{p.stem}.png", clean)
    return root


@pytest.fixture(autouse=True)
def _cache(monkeypatch, session_cache):
    monkeypatch.setenv("HINAS_CACHE_DIR", str(session_cache))


def _rain_exp(repo_root, root, *extra):
    return load_experiment(repo_root / "tune_configs" / "rain800.yaml", [s.format(root=root) for s in TINY] + list(extra))


def test_rain800_config_is_colour_hflip_and_y(repo_root, rain_root):
    exp = _rain_exp(repo_root, rain_root)
    assert (exp.data.channels, exp.space.in_channels, exp.data.augment, exp.data.metric) == (3, 3, "hflip", "y")
    assert (exp.space.layers, exp.space.nodes) == (2, 2)  # the tiny preset for this test (derain: 3 x 4)
    again = experiment_from_dict(exp.to_dict())  # what a Ray trial rebuilds
    assert again.space.in_channels == 3 and again.data == exp.data
    assert "(RGB); PSNR/SSIM on the Y channel of YCbCr" in report_markdown(exp, [])
    # its retraining validates on held-out rain pairs, not on noise the report would say it adds
    assert "seeded noise" not in validation_set(exp.data) and "pairs held out" in validation_set(exp.data)
    assert "seeded noise" in validation_set(load_experiment(repo_root / "tune_configs" / "bsd500.yaml").data)


@pytest.mark.filterwarnings("ignore:Rain800 .* pairs")
def test_rgb_goes_through_search_derivation_retraining_and_evaluation(repo_root, rain_root, tmp_path):
    exp = _rain_exp(repo_root, rain_root, f"output_dir={tmp_path}")
    data = pipeline_data.search_data(exp.data, 0.0, exp.search.batch_size)
    rainy, clean = data.train_w.sample(np.random.default_rng(0), 2)
    assert rainy.shape == clean.shape == (2, 3, 24, 24) and data.train_w.augment == "hflip"
    searcher = Searcher(exp.space, exp.search, data.train_w, data.train_a, data.evaluate, data.steps_per_epoch)
    assert searcher.model(rainy).shape == (2, 3, 24, 24)
    while not searcher.done:
        metrics = searcher.run_epoch()
    assert np.isfinite(metrics["val_psnr"])
    genotype = searcher.best_genotype()

    spec = hinas_spec(genotype, width=exp.model.width, in_channels=exp.space.in_channels,
                      activation=exp.space.activation, output=exp.space.output)
    sampler = pipeline_data.training_sampler(exp.data, 0.0)
    rows = []
    for label, s in (("hinas", spec), ("dncnn", {**baseline_spec(exp, "dncnn"), "depth": 3, "width": 4})):
        assert s["in_channels"] == 3
        trainer = Trainer(s, RetrainConfig(iterations=2, batch_size=2, report_every=2), sampler)
        trainer.run()
        path = save_model(tmp_path / f"{label}.pt", s, trainer.model, {"sigma": 0.0, "iterations": 2})
        _, saved, _ = load_model(path)
        assert saved["in_channels"] == 3  # the model file says what it takes
        rows.append(evaluate_model(exp, path, 0.0, label, tmp_path / "evaluation"))

    pairs = pipeline_data.test_pairs(exp.data, 0.0)
    assert pairs[0].input.shape == (48, 56, 3)
    model, _, _ = load_model(tmp_path / "dncnn.pt")
    with torch.no_grad():
        on_y = evaluate(model, pairs, protocol="whole", metric="y")
        on_rgb = evaluate(model, pairs, protocol="whole", metric="image")
    dncnn = rows[1]
    assert dncnn["psnr_whole"] == pytest.approx(on_y.psnr) and dncnn["psnr_whole"] != pytest.approx(on_rgb.psnr)
    assert "Dataset: rain800 (test set: Rain800/test)" in report_markdown(exp, rows)  # a stand-in says "NOT Rain800" here
    for row in rows:
        assert set(row) >= {"psnr_patch", "ssim_patch", "psnr_whole", "ssim_whole", "inference_s"}
        assert all(np.isfinite(row[k]) for k in ("psnr_patch", "psnr_whole", "inference_s"))
        with Image.open(row["examples"]) as im:
            assert im.size[0] > 100


def test_colour_settings_that_cannot_work_are_config_errors():
    base = {"name": "t", "space": {"preset": "tiny"}, "data": {"dataset": "rain800", "root": "/x"}}
    bad = [({"channels": 2}, "data.channels"), ({"channels": 3.0}, "data.channels"), ({"augment": "rot90"}, "data.augment"),
           ({"metric": "y"}, "needs data.channels: 3"), ({"metric": "lab", "channels": 3}, "data.metric")]
    for data, message in bad:
        with pytest.raises(ConfigError, match=message):
            experiment_from_dict({**base, "data": {**base["data"], **data}})
    with pytest.raises(ConfigError, match="space.in_channels: set by data.channels"):
        experiment_from_dict({**base, "space": {"preset": "tiny", "in_channels": 3}})
    with pytest.raises(ConfigError, match="sample set is grey"):
        experiment_from_dict({"name": "t", "data": {"dataset": "sample", "channels": 3}})
    with pytest.raises(ConfigError, match="evaluate.bm3d"):
        experiment_from_dict({"name": "t", "data": {"dataset": "bsd500", "channels": 3}})


def test_grey_configs_keep_their_hash_networks_and_d8(repo_root):
    exp = load_experiment(repo_root / "tune_configs" / "bsd500.yaml")
    assert (exp.space.in_channels, exp.data.channels, exp.data.augment, exp.data.metric) == (1, 1, "d8", "image")
    data = exp.to_dict()["data"]
    assert not {"channels", "augment", "metric"} & set(data)  # keys at defaults stay out of the hash
    assert config_hash(exp) == config_hash(experiment_from_dict(json.loads(json.dumps(exp.to_dict()))))
    assert config_hash(exp) != config_hash(load_experiment(repo_root / "tune_configs" / "bsd500.yaml",
                                                           ["data.augment=hflip"]))


def test_denoise_takes_colour_with_a_colour_model_and_refuses_what_it_cannot_take(tmp_path, capsys):
    spec = {"kind": "dncnn", "depth": 3, "width": 4, "in_channels": 3}
    torch.manual_seed(0)
    model = save_model(tmp_path / "rgb.pt", spec, build_model(spec), {"sigma": 0.0})
    odd = save_model(tmp_path / "two.pt", {**spec, "in_channels": 2}, build_model({**spec, "in_channels": 2}), {})
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(tmp_path / "grey.png")

    assert main(["denoise", "--model", str(model), str(tmp_path / "rgb.png"), str(tmp_path / "out.png")]) == 0
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == "RGB" and im.size == (24, 20)
    capsys.readouterr()
    for m, photo, words in ((model, "grey.png", ["grey.png", "colour (RGB)"]), (odd, "rgb.png", ["two.pt", "2-channel"])):
        code = main(["denoise", "--model", str(m), str(tmp_path / photo), str(tmp_path / "no.png")])
        err = capsys.readouterr().err
        assert code != 0 and len(err.strip().splitlines()) == 1 and all(w in err for w in words), err
        assert "Traceback" not in err and not (tmp_path / "no.png").exists()
