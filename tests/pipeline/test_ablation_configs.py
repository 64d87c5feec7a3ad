"""The ablation and SIM configs vary what the paper's tables vary (issue #15): one test per thing
varied, on configs, parameter counts and genotypes only (no training)."""
import pytest

from hinas.pipeline.derive_stage import derive_given
from hinas.pipeline.experiment import load_experiment
from hinas.pipeline.run import derive, retrain_jobs
from hinas_core import Genotype, build_network, count_parameters
from hinas_core.config import ConfigError
from hinas_core.metrics import VAL_PSNR
from hinas_core.models import build_model

# The ops of the cell the paper found (Fig. 5(b)): two conv, two dil, three def, three skip. Its
# wiring is not recoverable from the figure; a parameter count depends only on the ops and widths.
PAPER = Genotype.load("paper_fig5b_ops")
FIG5B = PAPER.cells[0]
ALL_DEF = [[["def", i], ["def", i + 1]] for i in range(5)]
WS_LEVELS = list(PAPER.levels)  # a searched path (Fig. 5(a): the widest cell closest to the output)


def _jobs(repo_root, config, tmp_path, cell=FIG5B, **over):
    """The HiNAS retraining spec the config makes for a genotype of its own width setting."""
    exp = load_experiment(repo_root / f"tune_configs/{config}", [f"output_dir={tmp_path}", *[f"{k}={v}" for k, v in over.items()]])
    levels, widths = exp.space.fixed_levels or WS_LEVELS, exp.space.widths
    path = Genotype([cell], levels, widths).save(tmp_path / f"{config}.json")
    return exp, next(j["spec"] for j in retrain_jobs(exp, {30.0: path}) if j["spec"]["kind"] == "hinas")


def _params(spec):
    return count_parameters(build_model(spec))


def test_table1_fixed_width_variants_keep_their_own_size(repo_root, tmp_path):
    # ws is calibrated to the paper's 0.63 M (the calibration picks the nearest integer width).
    _, ws = _jobs(repo_root, "ablation_table1_ws.yaml", tmp_path)
    assert abs(_params(ws) - 630_000) / 630_000 < 0.05
    # w40 keeps 40 channels per node: with the paper's cell 0.951 M, within 2% of its 0.96 M.
    _, w40 = _jobs(repo_root, "ablation_table1_w40.yaml", tmp_path)
    assert w40["width"] is None and w40["genotype"]["widths"] == [40]
    assert abs(_params(w40) - 960_000) / 960_000 < 0.02
    # wm keeps 10/20/40/80: 0.71 M with the paper's ws cell; its own search finds its own cell,
    # and the paper's 1.13 M lies inside what that setting spans (1.19 M with def everywhere).
    _, wm = _jobs(repo_root, "ablation_table1_wm.yaml", tmp_path)
    _, wm_def = _jobs(repo_root, "ablation_table1_wm.yaml", tmp_path, cell=ALL_DEF)
    assert wm["width"] is None and wm["genotype"]["widths"] == [10, 20, 40, 80]
    assert _params(ws) < _params(wm) < 1_130_000 <= _params(wm_def)
    # The same networks, calibrated as before this fix, would all be about 0.63 M.
    _, w40_calibrated = _jobs(repo_root, "ablation_table1_w40.yaml", tmp_path, **{"model.target_params": 630000})
    assert abs(_params(w40_calibrated) - 630_000) / 630_000 < 0.05


def _derived_by(repo_root, config, tmp_path):
    """What ``config``'s derive stage leaves behind in output_dir=tmp_path for sigma 30, after a
    search that found the paper's cell (the path templates must name this very file)."""
    exp = load_experiment(repo_root / f"tune_configs/{config}", [f"output_dir={tmp_path}"])
    found = Genotype([FIG5B], WS_LEVELS, [10, 20, 40], {"source": "test"}).save(tmp_path / "trial" / "genotype.json")
    return derive(exp, [{"sigma": s, "genotype": str(found), VAL_PSNR: 30.0} for s in exp.data.sigmas])[30.0]


def _write_ws(repo_root, tmp_path):
    return _derived_by(repo_root, "ablation_table1_ws.yaml", tmp_path)


@pytest.mark.parametrize("edit", ["r1", "r2"])
def test_table3_edits_the_ws_genotype_and_nothing_else(edit, repo_root, tmp_path):
    ws_path = _write_ws(repo_root, tmp_path)
    ws_exp = load_experiment(repo_root / "tune_configs/ablation_table1_ws.yaml", [f"output_dir={tmp_path}"])
    ws_spec = retrain_jobs(ws_exp, {30.0: ws_path})[0]["spec"]
    exp = load_experiment(repo_root / f"tune_configs/ablation_table3_{edit}.yaml", [f"output_dir={tmp_path}"])
    derived = derive_given(exp)  # no search: the ws genotype, copied with its source named
    assert Genotype.load(derived[30.0]) == Genotype.load(ws_path)
    assert Genotype.load(derived[30.0]).provenance["derived_from"] == str(ws_path)
    spec = retrain_jobs(exp, derived)[0]["spec"]
    found, edited = ws_spec["genotype"], spec["genotype"]
    # The same network level: widths, width path and retraining width (R1 is not narrowed).
    assert (edited["levels"], edited["widths"], spec["width"]) == (found["levels"], found["widths"], ws_spec["width"])
    pairs = [(a, b) for node_a, node_b in zip(found["cells"][0], edited["cells"][0]) for a, b in zip(node_a, node_b)]
    if edit == "r1":  # every conv, and only the convs, become def; the wiring stays
        assert all(b == (["def", a[1]] if a[0] == "conv" else a) for a, b in pairs)
        assert _params(spec) > _params(ws_spec)
    else:  # the same ops per node; every node after the first reads another input
        for i, (node_a, node_b) in enumerate(zip(found["cells"][0], edited["cells"][0])):
            assert sorted(op for op, _ in node_a) == sorted(op for op, _ in node_b)
            assert ({inp for _, inp in node_a} != {inp for _, inp in node_b}) == (i > 0)
        assert _params(spec) == _params(ws_spec)


def test_an_edit_before_the_ws_run_derived_is_one_clear_line(repo_root, tmp_path, capsys):
    from hinas.pipeline.cli import main

    common = ["--set", f"output_dir={tmp_path}", "--set", "resources.gpu=0", "--set", "data.dataset=sample"]
    config = str(repo_root / "tune_configs/ablation_table3_r1.yaml")
    assert main(["run", config, *common]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bsd500-table1_ws/derived/sigma30/genotype.json does not exist yet" in err
    assert not (tmp_path / "bsd500-table3_r1").exists()  # refused before anything is written
    assert main(["search", config, *common]) == 2  # it has no search to run
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no search" in err


def test_a_given_genotype_and_an_optuna_study_of_the_search_exclude_each_other(repo_root):
    with pytest.raises(ConfigError, match="derive.from_genotype replaces the search"):
        load_experiment(repo_root / "tune_configs/tiny_optuna.yaml", ["derive.from_genotype=example_denoise"])
    with pytest.raises(ConfigError, match="placeholder"):
        load_experiment(repo_root / "tune_configs/ablation_table3_r1.yaml", ["derive.from_genotype=runs/{layer}.json"])


def test_tables_2_and_4_run_all_three_sigma_tables_1_and_3_sigma_30(repo_root):
    for name in ("table2_mse", "table4_unshared"):
        assert load_experiment(repo_root / f"tune_configs/ablation_{name}.yaml").data.sigmas == (30.0, 50.0, 70.0)
    for name in ("table1_ws", "table1_w40", "table1_wm", "table3_r1", "table3_r2"):
        assert load_experiment(repo_root / f"tune_configs/ablation_{name}.yaml").data.sigmas == (30.0,)


def test_table2_mse_drops_the_ssim_term_in_search_and_retraining_only(repo_root):
    mse = load_experiment(repo_root / "tune_configs/ablation_table2_mse.yaml")
    ws = load_experiment(repo_root / "tune_configs/ablation_table1_ws.yaml")
    assert mse.search.ssim_weight == 0 and mse.retrain.ssim_weight == 0
    assert ws.search.ssim_weight > 0 and ws.retrain.ssim_weight > 0
    assert mse.space == ws.space and mse.data.patch_size == ws.data.patch_size


def test_sim_retrains_the_network_found_on_bsd500(repo_root, tmp_path):
    bsd = _derived_by(repo_root, "bsd500.yaml", tmp_path)
    sim = load_experiment(repo_root / "tune_configs/sim.yaml", [f"output_dir={tmp_path}", f"data.root={tmp_path}"])
    assert sim.data.sigmas == (0.0,) and sim.derive.edit is None
    assert Genotype.load(derive_given(sim)[0.0]) == Genotype.load(bsd)  # the BSD500 network, for the SIM pairs
    extra = load_experiment(repo_root / "tune_configs/sim_searched.yaml", [f"output_dir={tmp_path}", f"data.root={tmp_path}"])
    assert extra.derive.from_genotype is None and extra.ablation == "sim_searched" and extra.mlflow_experiment == sim.mlflow_experiment


def test_journal_sets_the_official_codes_switches(repo_root):
    exp = load_experiment(repo_root / "tune_configs/ablation_journal.yaml")
    assert exp.search.loss_average and exp.space.output == "residual" and not exp.model.aspp
    assert exp.search.patience > exp.search.max_epochs - exp.search.warmup_epochs  # never stops early
    assert (exp.search.batch_size, exp.retrain.ssim_weight) == (6, 0.6)


def test_aspp_variant_changes_only_the_end_part(repo_root, tmp_path):
    ws_path = _write_ws(repo_root, tmp_path)
    exp = load_experiment(repo_root / "tune_configs/ablation_aspp.yaml", [f"output_dir={tmp_path}"])
    spec = retrain_jobs(exp, derive_given(exp))[0]["spec"]
    assert spec["aspp"] is True and Genotype.from_dict(spec["genotype"]) == Genotype.load(ws_path)
    assert abs(_params(spec) - 630_000) / 630_000 < 0.1  # calibrated with the ASPP block counted
    net = build_model(spec)
    assert net.aspp is not None and count_parameters(net) == count_parameters(build_network(
        Genotype.load(ws_path), width=spec["width"], aspp=True))
