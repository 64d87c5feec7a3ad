"""Writes that a later run trusts are atomic, and a damaged file is never trusted.

* A writer process is SIGKILLed while it is in the middle of writing (a temporary sibling of the
  target exists and holds bytes): the target is still a complete earlier version.
* A write that fails (the final replace refused) leaves the old file and no temporary behind.
* A truncated genotype.json, search summary or model.pt planted where the pipeline would reuse
  it is not reused: the stage runs again instead (a damaged history is left out, with a warning).
* An audit pins every file write in hinas to the one helper, or to a listed reason.
(The decoded-image cache's damage handling is tested in tests/datasets/test_cache.py.)
"""
from __future__ import annotations

import ast
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)

CELL = [[["conv", 0], ["sep", 1]], [["dil", 1], ["skip", 2]]]


def _genotype(version: int, blob: int = 0):
    from hinas_core.genotype import Genotype

    return Genotype([CELL], [0, 1], [4, 8, 16], provenance={"version": version, "blob": "x" * blob})


class Writers:
    """Per trusted file: write version ``v`` at ``path`` (big, so a write takes a while) and read
    the version back (raising if the file is not complete)."""

    def __init__(self, tmp: Path, make):
        import hinas.datasets.cache  # noqa: F401 - imported here, not in each forked writer
        import hinas.pipeline.search_stage  # noqa: F401

        self.tmp, self.make = tmp, make
        self.spec = {"kind": "dncnn", "depth": 4, "width": 384}  # 2.7 M weights, 11 MB

    def genotype_json(self, path, v):
        _genotype(v, blob=8_000_000).save(path)

    def read_genotype_json(self, path):
        from hinas_core.genotype import Genotype

        return Genotype.load(path).provenance["version"]

    def model_pt(self, path, v):
        from hinas_core.models import build_model, save_model

        if not hasattr(self, "model"):
            self.model = build_model(self.spec)
        save_model(path, self.spec, self.model, {"version": v})

    def read_model_pt(self, path):
        from hinas_core.models import load_model

        return load_model(path)[2]["version"]

    def search_summary_json(self, path, v):
        from hinas.pipeline.experiment import load_experiment
        from hinas.pipeline.search_stage import write_summary

        exp = load_experiment(self.make.config(self.tmp / "c.yaml", path.parent.parent, name=path.parent.name))
        row = {"trial": f"v{v}", "sigma": 30.0, "seed": 0, "status": "OK", "epochs": 1, "stop": "x" * 8_000_000,
               "best_epoch": 1, "peak_memory_mb": 0, "genotype": None}
        write_summary(exp, [row])

    def read_search_summary_json(self, path):
        return int(json.loads(path.read_text())["trials"][0]["trial"][1:])

    def evaluation_parquet(self, path, v):
        import pyarrow as pa

        from hinas.datasets import save_results

        save_results([pa.table({"version": [v] * 2_000_000, "psnr": np.random.default_rng(v).random(2_000_000)})], path)

    def read_evaluation_parquet(self, path):
        import pyarrow.parquet as pq

        return pq.read_table(path).column("version")[0].as_py()

    def image_cache_arrow(self, path, v):
        from hinas.datasets import ImageSet
        from hinas.datasets.cache import write_cache

        image = np.random.default_rng(v).integers(0, 256, (4000, 4000), dtype=np.uint8)
        write_cache(path, ImageSet("set", (f"v{v}",), (image,)), "fp")

    def read_image_cache_arrow(self, path):
        from hinas.datasets.cache import read_cache

        return int(read_cache(path, "fp").names[0][1:])


TARGETS = {"genotype_json": "genotype.json", "model_pt": "model.pt", "search_summary_json": "search_summary.json",
           "evaluation_parquet": "evaluation.parquet", "image_cache_arrow": "cache.arrow"}


def _write_forever(write, path):
    v = 0
    while True:
        write(path, v)
        v += 1


def _wait(condition, what: str, seconds: float = 60.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        found = condition()
        if found:
            return found
        time.sleep(0.0005)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.parametrize("kind", list(TARGETS))
def test_a_writer_killed_mid_write_leaves_the_previous_complete_file(tmp_path, make, kind):
    writers = Writers(tmp_path, make)
    path = tmp_path / "runs" / "exp" / TARGETS[kind]
    child = multiprocessing.get_context("fork").Process(target=_write_forever, args=(getattr(writers, kind), path))
    child.start()
    try:
        _wait(path.exists, f"the first complete {path.name}")

        def mid_write():  # a temporary sibling holding bytes exists only between open and replace
            return [p for p in path.parent.glob(f".{path.name}.*.tmp") if p.exists() and p.stat().st_size > 0]

        _wait(mid_write, f"a write of {path.name} through a temporary sibling (is it written in place?)")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
    assert child.exitcode == -signal.SIGKILL
    version = getattr(writers, f"read_{kind}")(path)  # raises if the file is not complete
    assert isinstance(version, int) and version >= 0
    # The killed write's temporary is a hidden sibling no loader opens; the next write replaces the file.
    visible = {p.name for p in path.parent.iterdir() if not p.name.startswith(".")}
    assert path.name in visible and visible <= {path.name, "search_summary.md"}
    getattr(writers, kind)(path, 10_000)
    assert getattr(writers, f"read_{kind}")(path) == 10_000


def test_a_failed_replace_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    from hinas_core.fsutil import atomic_file
    from hinas_core.models import build_model, save_model

    spec = {"kind": "dncnn", "depth": 3, "width": 4}
    blocked = tmp_path / "model.pt"
    blocked.mkdir()  # a folder where the file should go: os.replace refuses to put a file there
    (blocked / "keep").write_text("mine")
    with pytest.raises(IsADirectoryError):
        save_model(blocked, spec, build_model(spec))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"] and (blocked / "keep").read_text() == "mine"
    old = _genotype(1).save(tmp_path / "genotype.json")
    with pytest.raises(OSError, match="disk full"), atomic_file(old) as tmp:
        tmp.write_text('{"cells": [')  # the writer dies half-way
        raise OSError("disk full")
    assert json.loads(old.read_text())["provenance"]["version"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["genotype.json", "model.pt"]


@pytest.fixture
def finished(tmp_path, make):
    """An experiment whose search finished: its summary and genotype.json, as the stage writes them."""
    from hinas.pipeline.experiment import load_experiment
    from hinas.pipeline.search_stage import write_summary

    exp = load_experiment(make.config(tmp_path / "c.yaml", tmp_path / "runs"))
    g = _genotype(7).save(exp.experiment_dir / "genotypes" / "sigma30-seed0" / "genotype.json")
    (g.parent / "history.json").write_text(json.dumps([{"epoch": 1, "val_psnr": 20.0}]))
    write_summary(exp, [{"trial": "sigma30-seed0", "sigma": 30.0, "seed": 0, "status": "OK", "epochs": 2, "stop": "max",
                         "best_epoch": 2, "peak_memory_mb": 0, "genotype": str(g)}])
    return exp, g


def test_a_finished_search_is_reused_whole(finished):
    from hinas.pipeline.search_stage import finished_search

    exp, g = finished
    (g.parent / f".{g.name}.abc.tmp").write_text('{"cells": [')  # a killed write's leftover: ignored
    rows = finished_search(exp)
    assert rows is not None and rows[0]["genotype"] == str(g)


def test_a_finished_search_moved_to_another_output_dir_is_still_reused(finished, tmp_path, make):
    """A state bundle imported on another machine (or under another output_dir) brings the
    summary with the paths it was written with; the genotypes are read from the new folder."""
    import shutil

    from hinas.pipeline.experiment import load_experiment
    from hinas.pipeline.search_stage import finished_search

    exp, g = finished
    moved = load_experiment(make.config(tmp_path / "m.yaml", tmp_path / "elsewhere"))
    shutil.copytree(exp.experiment_dir, moved.experiment_dir)
    shutil.rmtree(exp.experiment_dir)
    rows = finished_search(moved)
    assert rows is not None and rows[0]["genotype"] == str(moved.experiment_dir / "genotypes" / "sigma30-seed0" / "genotype.json")


@pytest.mark.parametrize("stop", ["running", "running (no architecture epoch yet)"])
def test_an_interrupted_search_is_resumed_not_reused(finished, stop):
    """A summary written when the driver was interrupted lists trials still running: their
    genotypes are the best so far, not the search's result."""
    from hinas.pipeline.search_stage import SUMMARY_FILE, finished_search, write_summary

    exp, g = finished
    rows = json.loads((exp.experiment_dir / SUMMARY_FILE).read_text())["trials"]
    write_summary(exp, [{**r, "stop": stop} for r in rows])
    assert finished_search(exp) is None


@pytest.mark.parametrize("damage", ["truncated-genotype", "empty-genotype", "missing-genotype", "truncated-summary"])
def test_a_damaged_search_result_is_not_reused(finished, damage):
    """`hinas run --resume` then resumes the search from its checkpoints, which rewrites them."""
    from hinas.pipeline.search_stage import SUMMARY_FILE, finished_search

    exp, g = finished
    if damage == "truncated-genotype":
        g.write_text(g.read_text()[:50])
    elif damage == "empty-genotype":
        g.write_text("")
    elif damage == "missing-genotype":
        g.unlink()
    else:
        summary = exp.experiment_dir / SUMMARY_FILE
        summary.write_text(summary.read_text()[:80])
    assert finished_search(exp) is None


def test_a_damaged_history_is_left_out_with_a_warning(finished):
    from hinas.pipeline.search_stage import read_history

    _, g = finished
    assert read_history(g) == [{"epoch": 1, "val_psnr": 20.0}]
    (g.parent / "history.json").write_text('[{"epoch": 1, "val_ps')
    with pytest.warns(UserWarning, match="history.json is damaged"):
        assert read_history(g) == []


def test_a_truncated_model_file_is_trained_again_not_reused(tmp_path, make):
    from hinas.pipeline.experiment import load_experiment
    from hinas.pipeline.retrain_stage import existing_model, job_inputs_hash, model_path
    from hinas.pipeline.run import retrain_jobs
    from hinas_core.models import build_model, save_model

    exp = load_experiment(make.config(tmp_path / "c.yaml", tmp_path / "runs"))
    job, = retrain_jobs(exp, {30.0: _genotype(1).save(tmp_path / "g.json")})
    path = save_model(model_path(exp, job["label"]), job["spec"], build_model(job["spec"]),
                      {"inputs_hash": job_inputs_hash(exp, job)})
    assert existing_model(exp, job) == path
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 1, 0):
        path.write_bytes(data[:cut])
        assert existing_model(exp, job) is None, cut



def test_a_trained_model_is_kept_on_another_machine_whose_paths_differ(tmp_path, make):
    """R1/R2/SIM retrain a genotype whose provenance names the file it came from, under the run's
    output_dir: imported elsewhere (another path) the model is still the one for that job."""
    from hinas.pipeline.experiment import load_experiment
    from hinas.pipeline.retrain_stage import existing_model, job_inputs_hash, model_path
    from hinas.pipeline.run import retrain_jobs
    from hinas_core.genotype import Genotype
    from hinas_core.models import build_model, save_model

    def machine(root):
        root.mkdir()
        exp = load_experiment(make.config(root / "c.yaml", root / "runs"))
        g = _genotype(1)
        src = root / "runs" / "ws" / "derived" / "sigma30" / "genotype.json"
        given = Genotype(g.cells, g.levels, g.widths, {**g.provenance, "derived_from": str(src)}).save(root / "g.json")
        job, = retrain_jobs(exp, {30.0: given})
        return exp, job

    exp, job = machine(tmp_path / "a")
    trained = save_model(model_path(exp, job["label"]), job["spec"], build_model(job["spec"]),
                         {"inputs_hash": job_inputs_hash(exp, job)})
    other, other_job = machine(tmp_path / "b")
    assert other_job["spec"] != job["spec"]  # the provenance names the other path
    moved = model_path(other, other_job["label"])
    moved.parent.mkdir(parents=True)
    moved.write_bytes(trained.read_bytes())
    assert existing_model(other, other_job) == moved
    # a model from before provenance left the key is kept where it was trained ...
    save_model(trained, job["spec"], build_model(job["spec"]), {"inputs_hash": job_inputs_hash(exp, job, legacy=True)})
    assert existing_model(exp, job) == trained
    # ... and another architecture is not the same job
    cell = [[["sep", 0], ["skip", 1]]] + CELL[1:]
    changed = Genotype([cell], [0, 1], [4, 8, 16], {"derived_from": "x"}).save(tmp_path / "a" / "g2.json")
    changed_job, = retrain_jobs(exp, {30.0: changed})
    assert existing_model(exp, changed_job) is None


def test_a_model_trained_on_data_elsewhere_says_why_it_is_trained_again(tmp_path, make):
    """A SIM set made again at another path: the root is one of the job's inputs, so the model is
    trained again, and the user is told which root it was trained on and how to keep it."""
    from dataclasses import replace

    from hinas.pipeline.experiment import load_experiment
    from hinas.pipeline.retrain_stage import existing_model, job_inputs_hash, model_path, retrained_because
    from hinas.pipeline.run import retrain_jobs
    from hinas_core.models import build_model, save_model

    exp = load_experiment(make.config(tmp_path / "c.yaml", tmp_path / "runs"))
    job, = retrain_jobs(exp, {30.0: _genotype(1).save(tmp_path / "g.json")})
    assert retrained_because(exp, job) is None  # no model yet
    there = replace(exp, data=replace(exp.data, root=str(tmp_path / "sim-made-there")))
    path = save_model(model_path(exp, job["label"]), job["spec"], build_model(job["spec"]),
                      {"inputs_hash": job_inputs_hash(there, job), "data_root": there.data.root})
    assert existing_model(exp, job) is None and existing_model(there, job) == path
    said = retrained_because(exp, job)
    assert f"trained on the data in {there.data.root}" in said and f"--set data.root={there.data.root}" in said
    assert retrained_because(there, job) is None
    save_model(path, job["spec"], build_model(job["spec"]), {"inputs_hash": "0" * 16})  # other inputs, no root
    assert "trained from other inputs" in retrained_because(exp, job)
    path.write_bytes(b"not a model")
    assert "trained again" in retrained_because(exp, job)


def test_retraining_starts_the_searched_networks_before_the_baselines_and_leaves_trained_models_out(tmp_path, make):
    from hinas.pipeline.experiment import load_experiment
    from hinas.pipeline.retrain_stage import job_inputs_hash, jobs_to_train, model_path
    from hinas.pipeline.run import retrain_jobs
    from hinas_core.models import build_model, save_model

    exp = load_experiment(make.config(tmp_path / "c.yaml", tmp_path / "runs", model={"baselines": ["dncnn"]},
                                      data={"sigmas": [30, 50]}))
    g = _genotype(1).save(tmp_path / "g.json")
    jobs = retrain_jobs(exp, {30.0: g, 50.0: g})
    assert [j["label"] for j in jobs] == ["hinas-sigma30-seed0", "dncnn-sigma30-seed0", "hinas-sigma50-seed0", "dncnn-sigma50-seed0"]
    assert [j["label"] for j in jobs_to_train(exp, jobs)] == \
        ["hinas-sigma30-seed0", "hinas-sigma50-seed0", "dncnn-sigma30-seed0", "dncnn-sigma50-seed0"]
    done = jobs[1]
    save_model(model_path(exp, done["label"]), done["spec"], build_model(done["spec"]), {"inputs_hash": job_inputs_hash(exp, done)})
    assert [j["label"] for j in jobs_to_train(exp, jobs)] == ["hinas-sigma30-seed0", "hinas-sigma50-seed0", "dncnn-sigma50-seed0"]

# ---- the audit: every file write in hinas goes through the helper, or has a listed reason -------
# (file, the call) -> why it need not be atomic
NOT_TRUSTED = {
    ("pipeline/search_stage.py", "torch.save"): "into a fresh TemporaryDirectory that Ray Tune copies into the trial's checkpoint",
    ("pipeline/retrain_stage.py", "torch.save"): "into a fresh TemporaryDirectory that Ray Tune copies into the trial's checkpoint",
    ("pipeline/state.py", "torch.save"): "a compact search checkpoint into an in-memory buffer, for the bundle",
    ("pipeline/mlflow_tracking.py", "p.write_text"): "into a fresh TemporaryDirectory, then logged to MLflow",
    ("datasets/images.py", "Image.fromarray(image).save"): "write_png: inside atomic_dir builds, and hinas denoise's output, which no run reads",
    ("datasets/camera_pipeline.py", "Image.fromarray(rgb8).save"): "JPEG round trip into an in-memory buffer",
}


def _is_write(func: str, node: ast.Call) -> bool:
    if func in ("torch.save", "ipc.new_file", "json.dump", "pickle.dump", "np.save", "numpy.save"):
        return True
    if func.endswith((".write_text", ".write_bytes", ".write_table", ".savefig")):
        return True
    if func.startswith("Image.") and func.endswith(".save"):  # PIL
        return True
    if func in ("open", "pa.OSFile"):  # with a mode that writes
        mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
        return isinstance(mode, ast.Constant) and any(c in str(mode.value) for c in "wax+")
    return False


def _write_sites():
    for folder in ("hinas_core", "pipeline", "datasets", "hinas"):
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                func = ast.unparse(node.func)
                if not _is_write(func, node):
                    continue
                guarded, up = False, node
                while up in parents and not guarded:
                    up = parents[up]
                    guarded = isinstance(up, ast.With) and any(
                        ast.unparse(item.context_expr).startswith(("atomic_file(", "atomic_dir(")) for item in up.items)
                yield path.relative_to(REPO).as_posix(), func, guarded


def test_audit_every_write_goes_through_atomic_file_or_has_a_reason():
    sites = list(_write_sites())
    unguarded = [(where, func) for where, func, guarded in sites if not guarded]
    # The download's own .part file is a temporary that fetch_bsd500 removes on any failure.
    allowed = {**NOT_TRUSTED, ("datasets/fetch.py", "open"): "the download's .part temporary"}
    assert sorted(set(unguarded) - set(allowed)) == []
    assert set(allowed) <= set(unguarded)  # the list of reasons holds no stale entry
    assert sum(guarded for _, _, guarded in sites) >= 12  # genotype, model, summaries, caches, ...
    helpers = [p for p in (REPO / "hinas_core", REPO / "pipeline", REPO / "datasets")
               for p in p.rglob("*.py") if "os.replace(" in p.read_text()]
    # One helper for files (datasets/fsutil.py's atomic_dir swaps folders, fetch moves extracted files).
    assert sorted(p.relative_to(REPO).as_posix() for p in helpers) == ["datasets/fetch.py", "datasets/fsutil.py", "hinas_core/fsutil.py"]


_OPEN_STORE = """
import sys
from hinas.pipeline.mlflow_tracking import Tracker
Tracker(sys.argv[1], "killed-while-creating")
"""


def test_a_process_killed_while_creating_the_mlflow_store_leaves_none_or_a_whole_one(tmp_path):
    """MLflow creates a new SQLite store's tables by migrating it in place, for seconds: a
    process killed meanwhile used to leave a file that no later run could open ("duplicate
    column name"). Kill one as soon as it starts writing in the folder: the store is missing
    or whole, and the next run opens it."""
    import subprocess
    import sys

    from hinas.pipeline.mlflow_tracking import Tracker

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _OPEN_STORE, uri], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith((".mlflow.db", "mlflow.db")) for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "the process never wrote its store"
        time.sleep(0.02)
    time.sleep(0.3)  # well inside the migrations, which take seconds
    proc.kill()
    proc.wait()
    assert not db.exists(), "a store appeared before its tables were whole"
    tracker = Tracker(uri, "after the kill")  # the next run: creates the store afresh and opens it
    run = tracker.client.create_run(tracker.experiment_id, run_name="ok")
    assert tracker.client.get_run(run.info.run_id).info.run_name == "ok"
