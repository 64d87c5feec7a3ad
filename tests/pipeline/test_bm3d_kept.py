"""BM3D's kept test scores (pipeline/bm3d_kept.py): reused only for the very test pairs they were
computed on, recomputed otherwise, resumable per image; `hinas data bm3d`'s errors."""
import json
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from hinas.pipeline.bm3d_kept import KEPT_ENV, compute_kept, kept_name
from hinas.pipeline.evaluate_stage import evaluate_bm3d, run_evaluate
from hinas.pipeline.experiment import load_experiment

# Two 128 x 128 crops of the bundled sample photographs: BM3D takes a fraction of a second on
# them (and, unlike on smaller images, gives the same output on every call: bm3d 4.0.3 varies by
# up to 6e-5 grey levels from call to call on 48 x 48 - docs/RESULTS.md).
SMALL = ["evaluate.max_images=2", "evaluate.crop=128"]


@pytest.fixture
def config(repo_root, tmp_path):
    def make(*overrides):
        return load_experiment(repo_root / "tune_configs/quickstart.yaml", [*SMALL, f"output_dir={tmp_path}", *overrides])
    return make


@pytest.fixture(scope="module")
def kept(tmp_path_factory, repo_root):
    """BM3D at sigma 30 kept in a folder of its own (two worker processes)."""
    folder = tmp_path_factory.mktemp("kept")
    exp = load_experiment(repo_root / "tune_configs/quickstart.yaml", SMALL)
    compute_kept(exp, 30.0, processes=2, folder=folder, say=lambda line: None)
    return folder


@pytest.fixture
def kept_copy(kept, tmp_path, monkeypatch):
    folder = tmp_path / "kept"
    shutil.copytree(kept, folder)
    monkeypatch.setenv(KEPT_ENV, str(folder))
    return folder


def no_bm3d(monkeypatch):
    import bm3d

    def called(*args, **kwargs):
        raise AssertionError("BM3D was computed although its scores are kept")
    monkeypatch.setattr(bm3d, "bm3d", called)


def assert_same_rows(a, b):
    """The same per-image rows but for the measured seconds and float rounding (threads)."""
    assert a.schema == b.schema and a.num_rows == b.num_rows
    for x, y in zip(a.to_pylist(), b.to_pylist()):
        assert {k: v for k, v in x.items() if isinstance(v, str)} == {k: v for k, v in y.items() if isinstance(v, str)}
        keys = ("psnr", "ssim", "offset", "sigma")
        assert [x[k] for k in keys] == pytest.approx([y[k] for k in keys], rel=1e-6, abs=1e-5)


def test_kept_scores_are_the_computed_ones(config, kept, tmp_path, monkeypatch):
    monkeypatch.setenv(KEPT_ENV, str(tmp_path / "empty"))
    computed = evaluate_bm3d(config(), 30.0, tmp_path / "computed")
    monkeypatch.setenv(KEPT_ENV, str(kept))
    reused = evaluate_bm3d(config(), 30.0, tmp_path / "reused")
    assert computed["bm3d_source"] == "computed"
    assert reused["bm3d_source"] == f"kept {kept / (kept_name(config(), 30.0) + '.parquet')}"
    # Equal but for float rounding: the kept rows were scored in one-thread worker processes.
    for k in ("psnr_whole", "ssim_whole", "offset_whole"):
        assert reused[k] == pytest.approx(computed[k], rel=1e-6, abs=1e-5), k
    assert all(reused[k] == computed[k] for k in ("images", "label", "kind", "sigma", "params", "model"))
    a, b = (pq.read_table(tmp_path / d / "bm3d-sigma30.parquet") for d in ("computed", "reused"))
    assert a.num_rows == 2
    assert_same_rows(a, b)


def test_a_kept_score_comes_through_without_bm3d(config, kept_copy, tmp_path, monkeypatch):
    path = kept_copy / f"{kept_name(config(), 30.0)}.parquet"
    rows = pq.read_table(path).to_pylist()
    rows[0]["psnr"] = 99.0  # deliberately altered: only a reused file can give it back
    import pyarrow as pa
    pq.write_table(pa.Table.from_pylist(rows), path)
    no_bm3d(monkeypatch)
    model_free = run_evaluate(config("evaluate.bm3d=kept"), [{"label": "x", "sigma": 30, "model": None}])
    (row,) = model_free
    assert row["psnr_whole"] == pytest.approx((99.0 + rows[1]["psnr"]) / 2)
    assert row["bm3d_source"] == f"kept {path}" and row["noisy_psnr"] < 30


@pytest.mark.parametrize("change", ["noise_seed", "sigma", "image_list", "bm3d_call"])
def test_a_mismatching_key_is_recomputed(change, config, kept_copy, tmp_path, monkeypatch, capsys):
    exp, sigma = config(), 30.0
    meta = kept_copy / f"{kept_name(exp, 30.0)}.json"
    if change == "noise_seed":
        exp = config("data.noise_seed=1")
    elif change == "sigma":  # the sigma-30 file under the sigma-50 name
        sigma = 50.0
        for ext in (".json", ".parquet"):
            shutil.copy(meta.with_suffix(ext), (kept_copy / kept_name(exp, 50.0)).with_suffix(ext))
    else:
        data = json.loads(meta.read_text())
        if change == "image_list":
            data["key"]["names_sha256"] = "0" * 64
        else:
            data["key"]["call"]["profile"] = "refilter"
        meta.write_text(json.dumps(data))
    row = evaluate_bm3d(exp, sigma)
    assert row["bm3d_source"] == "computed" and row["sigma"] == sigma
    assert evaluate_bm3d(config("evaluate.bm3d=kept", *(["data.noise_seed=1"] if change == "noise_seed" else [])),
                         sigma) is None
    err = capsys.readouterr().err
    assert "left out (evaluate.bm3d: kept)" in err and "hinas data bm3d" in err


def test_a_cut_computation_resumes(config, kept, tmp_path):
    exp = config("evaluate.max_images=3")
    said = []

    def cut_after_first(line):
        said.append(line)
        if "1/3 images" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compute_kept(exp, 30.0, processes=1, folder=tmp_path, say=cut_after_first, every=1)
    partial = tmp_path / f"{kept_name(exp, 30.0)}.partial"
    first = json.loads((partial / "00000.json").read_text())
    assert not (tmp_path / f"{kept_name(exp, 30.0)}.json").exists()
    said.clear()
    path = compute_kept(exp, 30.0, processes=2, folder=tmp_path, say=said.append)
    assert "2 of 3 images to compute (1 kept from a cut run)" in said[0] and not partial.exists()
    rows = pq.read_table(path).to_pylist()
    assert rows[0] == first  # not computed again: the same measured seconds
    fresh = compute_kept(exp, 30.0, processes=1, folder=tmp_path / "fresh", say=lambda line: None)
    assert_same_rows(pq.read_table(path), pq.read_table(fresh))
    # The first two images are the kept sigma-30 set's: the same per-image scores.
    assert_same_rows(pq.read_table(path).slice(0, 2), pq.read_table(kept / f"{kept_name(config(), 30.0)}.parquet"))


def test_a_partial_run_for_other_inputs_is_discarded(config, tmp_path):
    exp = config()
    partial = tmp_path / f"{kept_name(exp, 30.0)}.partial"
    partial.mkdir()
    (partial / "key.json").write_text(json.dumps({"noise_seed": 7}))
    (partial / "00000.json").write_text(json.dumps({"image": "stale"}))
    said = []
    path = compute_kept(exp, 30.0, folder=tmp_path, say=said.append)
    assert "discarding" in said[0] and "stale" not in pq.read_table(path).column("image").to_pylist()


def hinas(*args, cwd, code=None):
    out = subprocess.run([sys.executable, "-c", code or "import sys; from hinas.pipeline.cli import main; sys.exit(main())",
                          *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    return out.returncode, out.stdout, out.stderr


def test_cli_keeps_then_reuses(repo_root, tmp_path):
    cfg = str(repo_root / "tune_configs/quickstart.yaml")
    sets = [a for s in SMALL for a in ("--set", s)]
    code, out, err = hinas("data", "bm3d", cfg, "--sigma", "30", "--processes", "2", "--out", str(tmp_path), *sets,
                           cwd=tmp_path)
    assert code == 0, err
    assert "2 of 2 images to compute" in out and "2/2 images" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample-test-sigma30-first2-crop128.json",
                                                          "sample-test-sigma30-first2-crop128.parquet"]
    code, out, err = hinas("data", "bm3d", cfg, "--sigma", "30", "--out", str(tmp_path), *sets, cwd=tmp_path)
    assert code == 0 and "kept already" in out


@pytest.mark.parametrize("args, message", [
    (["--processes", "0"], "--processes: expected a positive number"),
    (["--sigma", "-5"], "--sigma: a noise level must be > 0"),
    (["--set", "evaluate.bm3d=maybe"], "evaluate.bm3d: expected true, false or kept"),
    (["--set", "data.dataset=rain800"], "not Gaussian noise of a known sigma"),
    (["--out", "FILE"], "is not a folder"),
])
def test_cli_errors_are_one_line(args, message, repo_root, tmp_path):
    (tmp_path / "FILE").write_text("")
    code, out, err = hinas("data", "bm3d", str(repo_root / "tune_configs/quickstart.yaml"), *args, cwd=tmp_path)
    assert code == 2 and err.count("\n") == 1 and err.startswith("hinas data bm3d: ") and message in err, err


def test_cli_without_bm3d_installed(repo_root, tmp_path):
    code, out, err = hinas("data", "bm3d", str(repo_root / "tune_configs/quickstart.yaml"), cwd=tmp_path,
                           code="import sys; sys.modules['bm3d'] = None  # import bm3d fails, as when not installed\n"
                                "from hinas.pipeline.cli import main; sys.exit(main())")
    assert code == 2 and err == "hinas data bm3d: the bm3d package is not installed: pip install bm3d\n"


def test_cli_evaluate_sets_a_model_against_kept_bm3d(kept, repo_root, tmp_path):
    """`hinas evaluate` prints BM3D's kept score on the same noisy images and the model's margin."""
    import os
    import re

    sets = [a for s in SMALL for a in ("--set", s)]
    env = dict(os.environ, **{KEPT_ENV: str(kept)})
    out = subprocess.run([sys.executable, "-m", "hinas.pipeline.cli", "evaluate", str(repo_root / "tune_configs/quickstart.yaml"),
                          "--model", str(repo_root / "models/hinas_sigma30.pt"), "--set", f"output_dir={tmp_path}", *sets,
                          "--out", str(tmp_path / "ev")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    bm3d = json.loads((kept / "sample-test-sigma30-first2-crop128.json").read_text())
    line = re.search(r"BM3D \(kept, same noisy images\) +sigma 30  whole: ([\d.]+) dB / ([\d.]+)", out.stdout)
    assert line and float(line.group(1)) == pytest.approx(bm3d["psnr"], abs=0.005), out.stdout
    ours = re.search(r"^(\S+) +sigma 30  patch: [\d.]+ dB / [\d.]+  whole: ([\d.]+) dB", out.stdout, re.M)
    margin = re.search(r"^(\S+) +sigma 30  whole-image PSNR ([-+][\d.]+) dB against BM3D", out.stdout, re.M)
    assert ours and margin and ours.group(1) == margin.group(1), out.stdout
    assert float(margin.group(2)) == pytest.approx(float(ours.group(2)) - bm3d["psnr"], abs=0.011)
    assert "2/2 images" in out.stderr  # progress
    # --out: what the evaluate stage writes, the kept BM3D row and the noisy input's score included
    rows = {r["kind"]: r for r in json.loads((tmp_path / "ev" / "summary.json").read_text())}
    assert sorted(rows) == ["bm3d", "hinas"] and rows["bm3d"]["bm3d_source"].startswith("kept ")
    assert rows["hinas"]["psnr_whole"] == pytest.approx(float(ours.group(2)), abs=0.005)
    assert rows["bm3d"]["noisy_psnr"] == rows["hinas"]["noisy_psnr"] < rows["bm3d"]["psnr_whole"]
    assert (tmp_path / "ev" / f"{ours.group(1)}.parquet").is_file()
