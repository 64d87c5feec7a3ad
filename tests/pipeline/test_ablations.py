"""Every paper ablation config runs end to end (tiny versions, one local Ray, on CPU)."""
import json

import pytest
from mlflow import MlflowClient

from hinas.pipeline.experiment import load_experiment
from hinas.pipeline.run import run_pipeline
from hinas_core import Genotype
from hinas_core.models import load_model

pytestmark = pytest.mark.slow

# One config per code path that a run takes differently (CI time: each is a whole Ray pipeline).
# Left out, their paths run here all the same: table1_w40 (the fixed-width search, as wm with one
# level), table3_r2 (the ws genotype edited, as r1), table2_mse (lambda = 0, a loss weight); their
# configs are checked in test_ablation_configs.py.
ABLATIONS = ["table1_ws", "table1_wm", "table3_r1", "table4_unshared", "journal", "aspp"]
GIVEN = ("table3_r1", "aspp")  # no search: they take the ws run's genotype

# Tiny: each ablation keeps its own switch; size, data and budget shrink to seconds on CPU.
TINY = ["space.layers=2", "space.nodes=2", "space.base_width=4", "data.dataset=sample", "data.patch_size=32",
        "data.val_fraction=0.2", "data.val_crop=64", "search.max_epochs=2", "search.warmup_epochs=1",
        "search.batch_size=2", "search.steps_per_epoch=1", "retrain.iterations=2", "retrain.report_every=2",
        "retrain.batch_size=2", "model.width=4", "model.baselines=[]", "evaluate.crop=64", "evaluate.max_images=2",
        "evaluate.bm3d=false", "evaluate.protocols=[whole]", "resources.cpu=1", "resources.gpu=0"]
# The fixed-width ablations bring their own (large) widths: fewer nodes, smaller patches.
FIXED = {"space.nodes=2": "space.nodes=1", "data.patch_size=32": "data.patch_size=16", "data.val_crop=64": "data.val_crop=32",
         "evaluate.crop=64": "evaluate.crop=32", "model.width=4": "model.width=2"}


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_ablation_config_runs_tiny(ablation, repo_root, tmp_path, ray_local, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    tiny = [FIXED.get(o, o) for o in TINY] if ablation == "table1_wm" else TINY
    tiny = [*tiny, "data.sigmas=[30]"]  # Tables 2 and 4 run three sigma; one is enough here
    if ablation in GIVEN:  # what the tiny ws run would have derived (ws's own search is tested above)
        Genotype([[[("conv", 0), ("dil", 1)], [("conv", 0), ("skip", 2)]]], [0, 1], [4, 8]).save(
            tmp_path / "bsd500-table1_ws" / "derived" / "sigma30" / "genotype.json")
    exp = load_experiment(repo_root / f"tune_configs/ablation_{ablation}.yaml", [f"output_dir={tmp_path}", *tiny])
    assert exp.ablation == ablation and exp.mlflow_experiment == "bsd500-ablations"
    out = run_pipeline(exp)
    rows = out["evaluation"]
    assert len(rows) == 1 and rows[0]["kind"] == "hinas" and rows[0]["psnr_whole"] > 0
    assert (out["search"] == []) == (ablation in GIVEN)
    # A run per stage under the pipeline's; none for a search that did not run.
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    stages = client.search_runs([client.get_experiment_by_name("bsd500-ablations").experiment_id],
                                f"tags.`mlflow.parentRunId` = '{out['mlflow_run']}'")
    assert sorted(r.info.run_name for r in stages) == ["derive", "evaluate", "retrain"] + ([] if ablation in GIVEN else ["search"])
    genotype = json.loads(open(out["genotypes"]["30.0"]).read())
    _, spec, _ = load_model(rows[0]["model"])
    ops = [op for cell in spec["genotype"]["cells"] for node in cell for op, _ in node]
    if ablation == "table1_wm":
        assert genotype["widths"] == [10, 20] and genotype["levels"] == [0, 1]
    if ablation == "table3_r1":
        assert "conv" not in ops and ops.count("def") == 2 and "derived_from" in genotype["provenance"]
    if ablation == "aspp":
        assert spec["aspp"] is True
    if ablation == "journal":
        assert len(genotype["cells"]) == 2 and "def" not in ops  # one cell per layer, no deformable conv
