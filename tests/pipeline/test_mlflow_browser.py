"""The README's MLflow comparison recipe in a real browser: ``mlflow server`` on loopback, headless
Chromium driven through the DevTools protocol (scripts/mlflow_screenshot.py). Skipped where
chromium is not installed."""
import shutil
import sys
from pathlib import Path

import pytest

from hinas.pipeline.mlflow_tracking import ABLATION, DATASET, EXPERIMENT, KIND, SIGMA, STAGE, Tracker, artifact_location

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                                 reason="chromium is not installed")]

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))


def test_the_ablation_recipe_groups_hinas_runs_by_ablation_without_baselines_or_parents(tmp_path):
    import mlflow_screenshot

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, "ablations", artifact_location(uri, tmp_path))
    # Two pipelines as run.py tags them: a parent, its evaluate stage's run, and under that one
    # evaluation run per model kind.
    for ablation, psnr in (("none", 29.0), ("table2_mse", 28.5)):
        with tracker.run(f"pipe-{ablation}", f"pipeline:{ablation}",
                         tags={STAGE: "pipeline", DATASET: "sample", EXPERIMENT: ablation}) as parent:
            with tracker.stage(parent, "evaluate", {DATASET: "sample", EXPERIMENT: ablation}) as stage:
                for kind, gain in (("hinas", 0.0), ("dncnn", -0.3), ("bm3d", -0.6)):
                    tags = {STAGE: "evaluate", KIND: kind, SIGMA: 30.0, DATASET: "sample", ABLATION: ablation}
                    with tracker.run(f"eval {kind} σ30", f"evaluate:{kind}", stage, tags) as run_id:
                        tracker.log_metrics(run_id, {"psnr_patch": psnr + gain})
    shown = mlflow_screenshot.screenshot(uri, "ablations", tmp_path / "shot.png", mlflow_screenshot.FILTER,
                                         "hinas.ablation", wait_s=3.0)
    text = shown["text"]
    assert shown["grouped"] and (tmp_path / "shot.png").stat().st_size > 10_000
    assert "Group: none" in text and "Group: table2_mse" in text
    assert text.count("eval hinas σ30") == 2 and "eval dncnn" not in text and "eval bm3d" not in text
    # The parents, shown by the UI beside their matching children, stay out of the groups,
    assert "Additional runs" in text
    # ... as the two evaluate stages' runs (the matches' parents), not the pipelines' runs above them.
    assert "4 matching runs" in text
