"""Experiment configs: every mistake is one clear ConfigError naming the key."""
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hinas.pipeline.cli import main
from hinas.pipeline.experiment import experiment_from_dict, load_experiment
from hinas_core.config import ConfigError

BASE = {"name": "t", "space": {"preset": "tiny"}, "data": {"dataset": "sample"}}


def with_(section, **kw):
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    cfg.setdefault(section, {}).update(kw)
    return cfg


def test_shipped_configs_load(repo_root):
    for path in sorted((repo_root / "tune_configs").glob("*.yaml")):
        exp = load_experiment(path)
        assert exp.name and exp.data.sigmas


def test_paths_become_absolute(tmp_path):
    exp = experiment_from_dict({**BASE, "output_dir": "rel/out", "data": {"dataset": "bsd500", "root": "data"}},
                               base_dir=tmp_path)
    assert exp.output_dir == str(tmp_path / "rel/out") and exp.data.root == str(tmp_path / "data")


@pytest.mark.parametrize("cfg, message", [
    ({**BASE, "serach": {}}, r"unknown top-level key\(s\) \['serach'\]"),
    (with_("search", epochs=3), r"search: unknown key\(s\) \['epochs'\]"),
    (with_("space", nodez=3), r"space: unknown key\(s\) \['nodez'\]"),
    (with_("data", sigma=30), r"data: unknown key\(s\) \['sigma'\]"),
    (with_("resources", gpus=1), r"resources: unknown key\(s\) \['gpus'\]"),
    (with_("data", sigmas=[30, 0]), r"data.sigmas: must be > 0"),
    (with_("data", sigmas=[-5]), r"data.sigmas: must be > 0"),
    (with_("data", sigmas="thirty"), r"data.sigmas"),
    (with_("data", dataset="imagenet"), r"data.dataset"),
    (with_("data", val_fraction=1.5), r"data.val_fraction"),
    (with_("data", patch_size=8), r"data.patch_size: must be >= 11"),
    (with_("search", max_epochs=-1), r"search.max_epochs: must be >= 1"),
    (with_("search", patience=0), r"search.patience: must be >= 1"),
    (with_("search", batch_size="12"), r"search.batch_size: expected an integer"),
    (with_("search", w_lr=0), r"search.w_lr"),
    (with_("search", stop_rule="plateau"), r"search.stop_rule"),
    (with_("resources", gpu=1.5), r"resources.gpu: a fraction above 1"),
    (with_("resources", cpu=0), r"resources.cpu: must be > 0"),
    (with_("space", preset="huge"), r"unknown space preset 'huge'"),
    (with_("space", ops=["conv", "pool"]), r"ops: unknown op"),
    (with_("space", nodes=0), r"nodes: expected a positive integer"),
    (with_("space", cell_sharing="yes"), r"cell_sharing: expected true or false"),
    ({**BASE, "name": ""}, r"name"),
    ({**BASE, "seeds": []}, r"seeds"),
    ({**BASE, "search": [1, 2]}, r"search: expected a mapping"),
    ([1, 2], r"must be a mapping"),
])
def test_bad_configs_name_the_key(cfg, message):
    with pytest.raises(ConfigError, match=message):
        experiment_from_dict(cfg)


def test_file_level_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_experiment(tmp_path / "empty.yaml")
    (tmp_path / "bad.yaml").write_text("name: x\nsearch: {max_epochs: [1,\n")
    with pytest.raises(ConfigError, match="malformed YAML at line"):
        load_experiment(tmp_path / "bad.yaml")
    (tmp_path / "evil.yaml").write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_experiment(tmp_path / "evil.yaml")
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(BASE))
    with pytest.raises(ConfigError, match="key=value"):
        load_experiment(tmp_path / "ok.yaml", ["search.patience"])
    assert load_experiment(tmp_path / "ok.yaml", ["search.patience=7"]).search.patience == 7


def test_cli_reports_config_errors_without_a_traceback(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(with_("search", patience=-2)))
    assert main(["search", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "search.patience" in err and "Traceback" not in err
    assert main(["search", str(tmp_path / "c.yaml"), "--set", "search.patience=2", "--set",
                 "data.dataset=bsd500", "--set", f"data.root={tmp_path / 'nowhere'}"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_space_command_prints_a_summary(capsys):
    assert main(["space", "--preset", "denoise", "--genotype", "example_denoise", "--width", "18"]) == 0
    out = capsys.readouterr().out
    assert "4 x 5" in out and "alpha entries        120" in out and "beta entries         21" in out
    assert "derived parameters" in out
    assert main(["space", "--set", "nodes=x"]) == 2


scalars = st.none() | st.booleans() | st.integers(-5, 200) | st.floats(allow_nan=True) | st.text(max_size=6)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10)
sections = st.fixed_dictionaries({}, optional={
    "name": values | st.just("ok"),
    "space": st.dictionaries(st.sampled_from(["preset", "nodes", "layers", "ops", "cell_sharing", "x"]), values, max_size=3),
    "search": st.dictionaries(st.sampled_from(["max_epochs", "patience", "w_lr", "stop_rule", "seed", "y"]), values, max_size=3),
    "data": st.dictionaries(st.sampled_from(["dataset", "sigmas", "root", "patch_size", "clip", "z"]), values, max_size=3),
    "resources": st.dictionaries(st.sampled_from(["cpu", "gpu", "max_concurrent"]), values, max_size=2),
    "derive": st.dictionaries(st.sampled_from(["from_genotype", "edit", "w"]), values | st.text(alphabet="{}sigma/r1", max_size=9), max_size=2),
    "seeds": values,
})


@settings(max_examples=300, deadline=None)
@given(sections)
def test_no_config_produces_anything_but_a_config_or_a_config_error(raw):
    try:
        experiment_from_dict(raw)
    except ConfigError:
        pass


def test_ablation_configs_extend_the_paper_config_and_change_one_thing(repo_root):
    base = load_experiment(repo_root / "tune_configs/bsd500.yaml")
    ws = "bsd500-table1_ws/derived/sigma{sigma}/genotype.json"
    expected = {
        "table1_ws": {}, "table1_w40": {"width_mode": "w40", "target_params": 0},
        "table1_wm": {"width_mode": "wm", "target_params": 0},
        "table2_mse": {"ssim_weight": 0.0}, "table3_r1": {"from": ws, "edit": "r1"}, "table3_r2": {"from": ws, "edit": "r2"},
        "table4_unshared": {"cell_sharing": False}, "aspp": {"from": ws, "aspp": True},
        "journal": {"tied_cells": False, "loss_average": True},
    }
    for key, change in expected.items():
        exp = load_experiment(repo_root / f"tune_configs/ablation_{key}.yaml")
        assert exp.ablation == key and exp.retrain == (base.retrain if key not in ("table2_mse", "journal") else exp.retrain)
        src = exp.derive.from_genotype
        got = {"width_mode": exp.space.width_mode, "cell_sharing": exp.space.cell_sharing, "tied_cells": exp.space.tied_cells,
               "ssim_weight": exp.search.ssim_weight, "loss_average": exp.search.loss_average, "edit": exp.derive.edit,
               "from": src and src.replace(f"{exp.output_dir}/", ""), "target_params": exp.model.target_params,
               "aspp": exp.model.aspp}
        ref = {"width_mode": "searched", "cell_sharing": True, "tied_cells": True, "ssim_weight": 0.5, "loss_average": False,
               "edit": None, "from": None, "target_params": 630_000, "aspp": False}
        assert got == {**ref, **change}, key


def test_extends_cycles_are_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nname: b\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_experiment(tmp_path / "a.yaml")
