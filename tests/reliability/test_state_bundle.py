"""`hinas state export/import` (issue #16, item 4): a bundle that was cut, altered or crafted is
refused with one line, an import never writes outside its run folder, and loading it never
unpickles code. Plus what a bundle carries and how it is cut into parts.

The run folder is made of real parts, without Ray: a real search state (a tiny supernet after
one epoch, with SGD momentum) where Tune keeps it, a real model file, a genotype, and Tune's
``tuner.pkl`` beside them (which must never travel). The end-to-end cut -> export -> delete ->
import -> resume of a real pipeline is in test_state_resume.py.
"""
from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.timeout(180)

LABEL = "sigma30-seed0"


class Payload:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Noise:
    """A sampler of random patches (the search loop's data interface)."""

    def sample(self, rng, batch_size):
        clean = torch.from_numpy(rng.random((batch_size, 1, 16, 16), dtype=np.float32))
        return clean + 0.1 * torch.from_numpy(rng.standard_normal(clean.shape, dtype=np.float32)), clean


def _searcher(exp):
    from hinas_core.search import Searcher

    return Searcher(exp.space, exp.search, Noise(), Noise(), lambda f: {"psnr": 20.0, "ssim": 0.5}, 2)


SEARCH = {"max_epochs": 3, "warmup_epochs": 1}


@pytest.fixture(scope="module")
def states(make, tmp_path_factory):
    """A real search state after epoch 1 and after epoch 2 (computed once: a supernet is slow)."""
    from hinas.pipeline.experiment import load_experiment

    tmp = tmp_path_factory.mktemp("states")
    searcher = _searcher(load_experiment(make.config(tmp / "c.yaml", tmp / "runs", search=SEARCH)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny supernet: more threads only contend on a shared machine
    out = []
    try:
        for _ in (1, 2):
            searcher.run_epoch()
            buf = io.BytesIO()
            torch.save(searcher.state_dict(), buf)
            out.append(buf.getvalue())
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture
def run(make, tmp_path, states):
    """(config path, experiment) of a run cut during its search, with products and Tune files."""
    from hinas.pipeline.experiment import load_experiment
    from hinas_core.genotype import Genotype
    from hinas_core.models import build_model, save_model

    cfg = make.config(tmp_path / "c.yaml", tmp_path / "runs", search=SEARCH)
    exp = load_experiment(cfg)
    root = exp.experiment_dir
    for epoch, data in enumerate(states):  # Tune keeps the last two checkpoints; the later one must travel
        ckpt = root / "search" / f"{LABEL}-0a1b2_00000" / f"checkpoint_00000{epoch}" / "search.pt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(data)
    (root / "search" / "tuner.pkl").write_bytes(b"a pickle that must never travel")
    Genotype([[[["conv", 0], ["sep", 1]], [["dil", 1], ["skip", 2]]]], [0, 1], [4, 8, 16]).save(
        root / "genotypes" / "other-seed1" / "genotype.json")
    spec = {"kind": "dncnn", "depth": 3, "width": 4}
    save_model(root / "models" / "dncnn-sigma30-seed0" / "model.pt", spec, build_model(spec), {"sigma": 30})
    (root / ".lock").write_text("not part of the state")
    (root / "scratch.txt").write_text("not a product: named, left out")
    return cfg, exp


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _entry(bundle: Path, path_end: str) -> dict:
    return next(f for f in _manifest(bundle)["files"] if f["path"].endswith(path_end))


def _rewrite(bundle: Path, change) -> None:
    m = _manifest(bundle)
    change(m)
    (bundle / "manifest.json").write_text(json.dumps(m))


def _export(cli, cfg, bundle, *extra):
    code, out, err = cli("state", "export", cfg, "--out", bundle, *extra)
    assert code == 0, err
    return out


def test_export_carries_the_products_and_the_latest_checkpoint_never_tune_files(cli, run, tmp_path):
    cfg, exp = run
    bundle = tmp_path / "bundle"
    out = _export(cli, cfg, bundle)
    m = _manifest(bundle)
    assert m["format"] == "hinas-state" and m["version"] == 2 and m["experiment"] == exp.name
    assert sorted((f["path"], f["kind"]) for f in m["files"]) == [
        ("genotypes/other-seed1/genotype.json", "genotype"),
        (f"imported/search/{LABEL}/search.pt", "search-checkpoint"),
        ("models/dncnn-sigma30-seed0/model.pt", "model")]
    assert _entry(bundle, "search.pt")["size"] == (exp.experiment_dir / "search" / f"{LABEL}-0a1b2_00000"
                                                   / "checkpoint_000001" / "search.pt").stat().st_size
    assert f"checkpoint: search {LABEL}: epoch 2" in out and "bundle: " in out
    assert "left out (not a file hinas resumes from): scratch.txt" in out and ".lock" not in out
    assert not any(b"must never travel" in p.read_bytes() for p in bundle.iterdir())

    # Imported elsewhere (another output_dir: a path of the machine, not of the run).
    code, out, err = cli("state", "import", cfg, "--from", bundle, "--set", f"output_dir={tmp_path / 'other'}")
    assert code == 0, err
    new = tmp_path / "other" / exp.name
    assert sorted(p.relative_to(new).as_posix() for p in new.rglob("*") if p.is_file()) == sorted(f["path"] for f in m["files"])
    from hinas.pipeline.experiment import load_experiment
    from hinas.pipeline.state import resume_file

    fresh = _searcher(exp)
    with resume_file(None, load_experiment(cfg, [f"output_dir={tmp_path / 'other'}"]), "search", LABEL) as path:
        from hinas_core.models import load_tensors
        fresh.load_state_dict(load_tensors(path))
    assert fresh.epoch == 2 and fresh.run_epoch()["epoch"] == 3


def test_large_files_are_cut_into_parts_and_a_new_export_replaces_the_bundle(cli, run, tmp_path):
    cfg, exp = run
    bundle = tmp_path / "bundle"
    _export(cli, cfg, bundle, "--max-file-mib", "0.1")
    ckpt = _entry(bundle, "search.pt")
    assert len(ckpt["parts"]) >= -(-ckpt["size"] // int(0.1 * 2**20)) > 1
    assert all(p.stat().st_size <= 0.1 * 2**20 for p in bundle.glob("*.part"))
    files = _manifest(bundle)["files"]
    # Within a group (products; each model; checkpoints) the files run on from part to part.
    groups = [sum(f["size"] for f in files if f["kind"] == "genotype"), _entry(bundle, "model.pt")["size"], ckpt["size"]]
    assert len(list(bundle.iterdir())) == sum(-(-g // int(0.1 * 2**20)) for g in groups) + 1
    _export(cli, cfg, bundle)  # the same folder again, default parts: the old parts are gone
    # A part per group: a job that may bring back only a few files (8 on our GPU machine) carries it.
    assert sorted(p.name for p in bundle.iterdir()) == ["0000.part", "0001.part", "0002.part", "manifest.json"]
    assert [(f["kind"], f["parts"][0]["name"]) for f in _manifest(bundle)["files"]] == [
        ("genotype", "0000.part"), ("model", "0001.part"), ("search-checkpoint", "0002.part")]
    model = exp.experiment_dir / "models" / "dncnn-sigma30-seed0" / "model.pt"
    assert (bundle / "0001.part").read_bytes() == model.read_bytes()  # git stores it once with the shipped file
    first = {p.name: p.read_bytes() for p in bundle.glob("*.part")}
    model.write_bytes(model.read_bytes())  # touched, not changed
    _export(cli, cfg, bundle)
    assert {p.name: p.read_bytes() for p in bundle.glob("*.part")} == first  # unchanged files, the same parts
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]  # no temporaries left
    code, _, err = cli("state", "import", cfg, "--from", bundle, "--set", f"output_dir={tmp_path / 'o'}")
    assert code == 0, err


def test_a_version_1_bundle_one_part_per_file_still_imports(cli, run, tmp_path):
    """Bundles written before parts were shared (version 1, e.g. the campaign's first) import."""
    import hashlib

    cfg, exp = run
    bundle = tmp_path / "bundle"
    _export(cli, cfg, bundle)
    m = _manifest(bundle)
    blobs = {p["name"]: (bundle / p["name"]).read_bytes() for p in m["part_files"]}
    for p in bundle.glob("*.part"):
        p.unlink()
    for i, f in enumerate(m["files"]):
        data = b"".join(blobs[s["name"]][s["offset"]:s["offset"] + s["size"]] for s in f["parts"])
        (bundle / f"{i:04d}.part").write_bytes(data)
        f["parts"] = [{"name": f"{i:04d}.part", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]
    del m["part_files"]
    m["version"] = 1
    (bundle / "manifest.json").write_text(json.dumps(m))
    code, out, err = cli("state", "import", cfg, "--from", bundle, "--set", f"output_dir={tmp_path / 'o'}")
    assert code == 0, err
    assert (tmp_path / "o" / exp.name / f"imported/search/{LABEL}/search.pt").is_file()


def test_export_leaves_a_folder_that_is_not_a_bundle_alone(cli, run, tmp_path):
    cfg, _ = run
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    code, out, err = cli("state", "export", cfg, "--out", precious)
    assert code == 2 and "is not a hinas state bundle; it is left alone" in err and "Traceback" not in out + err
    assert [p.name for p in precious.iterdir()] == ["notes.txt"]


def test_compact_checkpoints_are_smaller_and_resume_with_bf16_weights(cli, run, tmp_path):
    from hinas.pipeline.experiment import load_experiment
    from hinas_core.models import load_tensors

    cfg, exp = run
    _export(cli, cfg, tmp_path / "full")
    _export(cli, cfg, tmp_path / "compact", "--compact")
    full, compact = _entry(tmp_path / "full", "search.pt")["size"], _entry(tmp_path / "compact", "search.pt")["size"]
    assert compact < 0.6 * full
    code, _, err = cli("state", "import", cfg, "--from", tmp_path / "compact", "--set", f"output_dir={tmp_path / 'o'}")
    assert code == 0, err
    other = load_experiment(cfg, [f"output_dir={tmp_path / 'o'}"])
    state = load_tensors(other.experiment_dir / "imported" / "search" / LABEL / "search.pt")
    original = load_tensors(next(exp.experiment_dir.glob("search/*/checkpoint_000001/search.pt")))
    assert state["w_opt"]["state"] == {} and original["w_opt"]["state"]  # momentum dropped
    for key, value in original["model"].items():
        assert state["model"][key].dtype == value.dtype
        if key in ("alpha", "beta") or "running_" in key or not value.is_floating_point():
            assert torch.equal(state["model"][key], value), key
        else:
            assert torch.equal(state["model"][key], value.to(torch.bfloat16).float()), key
    fresh = _searcher(exp)
    fresh.load_state_dict(state)
    assert fresh.run_epoch()["epoch"] == 3


@pytest.fixture(scope="module")
def ended(make, states, tmp_path_factory):
    """(experiment, the search state after its last epoch, 3 of 3), continued from ``states``."""
    from hinas.pipeline.experiment import load_experiment

    tmp = tmp_path_factory.mktemp("ended")
    exp = load_experiment(make.config(tmp / "c.yaml", tmp / "runs", search=SEARCH))
    searcher = _searcher(exp)
    searcher.load_state_dict(torch.load(io.BytesIO(states[1]), weights_only=True))
    searcher.run_epoch()
    assert searcher.done
    return exp, searcher.state_dict()


def _size(state) -> int:
    buf = io.BytesIO()
    torch.save(state, buf)
    return len(buf.getvalue())


def test_an_ended_search_travels_without_its_supernet_and_keeps_its_products(ended):
    """An Optuna study's ended trials are replayed, never continued: a compact bundle keeps
    their genotype and history but not ~12 MB of supernet each (session 14: six ended trials
    made a 68 MiB bundle, more than a GPU call carries)."""
    from dataclasses import replace

    from hinas.pipeline.state import compact_search_state
    from hinas_core.genotype import Genotype
    from hinas_core.search import Searcher, without_supernet

    exp, state = ended
    compact = compact_search_state(state)
    assert set(compact["model"]) == {"alpha", "beta"} and compact["w_opt"]["state"] == compact["a_opt"]["state"] == {}
    assert _size(compact) < _size(state) / 5
    fresh = _searcher(exp)
    fresh.load_state_dict(compact)
    assert fresh.done and fresh.history == state["history"] and fresh.best == state["best"]
    assert fresh.best_genotype().to_dict() == Genotype.from_dict(state["best"]["genotype"]).to_dict()
    assert torch.equal(fresh.model.alpha.detach(), state["model"]["alpha"])
    again = fresh.state_dict()  # what a replayed trial reports: still without the (untrained) weights
    assert set(again["model"]) == {"alpha", "beta"} and again["epoch"] == 3

    # it cannot go on: a larger epoch cap needs the weights, and says so
    longer = Searcher(exp.space, replace(exp.search, max_epochs=5), Noise(), Noise(), lambda f: {"psnr": 20.0, "ssim": 0.5}, 2)
    with pytest.raises(ValueError, match="ended at epoch 3 without its supernet's weights.*cannot run to 5 epochs"):
        longer.load_state_dict(compact)
    with pytest.raises(ValueError, match="has not ended"):
        without_supernet(state, max_epochs=5)


# ---- refused bundles: one line, exit 2, nothing written --------------------------------------------
def _truncate(bundle):
    part = bundle / _entry(bundle, "search.pt")["parts"][0]["name"]
    part.write_bytes(part.read_bytes()[:-100])


def _flip(bundle):
    part = bundle / _entry(bundle, "search.pt")["parts"][0]["name"]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))


def _remove_part(bundle):
    (bundle / _entry(bundle, "model.pt")["parts"][0]["name"]).unlink()


def _manifest_truncated(bundle):
    text = (bundle / "manifest.json").read_text()
    (bundle / "manifest.json").write_text(text[: len(text) // 2])


def _manifest_sha(bundle):
    def change(m):
        next(f for f in m["files"] if f["path"].endswith("model.pt"))["sha256"] = "0" * 64
    _rewrite(bundle, change)


def _version(bundle):
    _rewrite(bundle, lambda m: m.update(version=99))


def _other_config(bundle):
    def change(m):
        m["config"]["search"]["patience"] = 99
        m["config_hash"] = "0" * 64
    _rewrite(bundle, change)


def _path(value):
    def attack(bundle):
        _rewrite(bundle, lambda m: m["files"][0].update(path=value))
    return attack


def _symlinked_part(bundle):
    part = bundle / _entry(bundle, "model.pt")["parts"][0]["name"]
    outside = bundle.parent / "outside.bin"
    shutil.copy(part, outside)  # same bytes, so only the link itself can give it away
    part.unlink()
    part.symlink_to(outside)


def _symlinked_manifest(bundle):
    outside = bundle.parent / "manifest-elsewhere.json"
    (bundle / "manifest.json").rename(outside)
    (bundle / "manifest.json").symlink_to(outside)


def _part_name(bundle):
    _rewrite(bundle, lambda m: m["files"][0]["parts"][0].update(name="../../PWNED"))


def _twice(bundle):
    _rewrite(bundle, lambda m: m["files"].append(dict(m["files"][0])))


ATTACKS = {
    "truncated part": (_truncate, "is truncated or padded"),
    "tampered part": (_flip, "does not match its sha256 (damaged or altered)"),
    "missing part": (_remove_part, "is missing or not a plain file"),
    "truncated manifest": (_manifest_truncated, "is damaged: not valid JSON"),
    "tampered manifest": (_manifest_sha, "does not match its size/sha256 in the manifest"),
    "unknown version": (_version, "bundle format version 99 is not supported"),
    "another config": (_other_config, "was exported from a different config (differs in: search.patience)"),
    "dotdot path": (_path("../x/genotypes/a/genotype.json"), "points outside the run folder"),
    "dotdot inside": (_path("genotypes/../../../PWNED/genotype.json"), "points outside the run folder"),
    "absolute path": (_path("/tmp/PWNED/genotypes/a/genotype.json"), "points outside the run folder"),
    "tune pickle": (_path("search/tuner.pkl"), "is not a file a hinas run folder holds"),
    "symlinked part": (_symlinked_part, "is missing or not a plain file"),
    "symlinked manifest": (_symlinked_manifest, "is not a hinas state bundle"),
    "part name escape": (_part_name, "bad part name"),
    "a path twice": (_twice, "names genotypes/other-seed1/genotype.json twice"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_damaged_or_crafted_bundle_is_refused_and_nothing_is_written(cli, make, run, tmp_path, attack):
    cfg, exp = run
    bundle = tmp_path / "bundle"
    _export(cli, cfg, bundle)
    damage, message = ATTACKS[attack]
    damage(bundle)
    target = tmp_path / "machine2"
    before = make.snapshot(tmp_path)
    code, out, err = cli("state", "import", cfg, "--from", bundle, "--set", f"output_dir={target}")
    assert code == 2 and "Traceback" not in out + err, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    after = make.snapshot(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith(str(target))} == before
    assert not (target.exists() and list(target.iterdir()))  # no run folder, no temporary


def test_a_bundle_from_before_new_config_keys_or_with_changed_reporting_imports_with_a_note(cli, run, tmp_path):
    """The config schema grows between stretches of a long run (a new key at its default), and
    how often a run reports or when retraining stops early may change: neither alters what the
    checkpoints hold. A changed search setting still refuses (the 'another config' case)."""
    cfg, exp = run
    bundle = tmp_path / "bundle"
    _export(cli, cfg, bundle)

    def older(m):
        del m["config"]["derive"]  # a section this hinas has and the exporting one had not
        m["config"]["model"]["retired_switch"] = None  # a key this hinas no longer knows, unset
        m["config"]["retrain"]["report_every"] += 1
        m["config_hash"] = "0" * 64
    _rewrite(bundle, older)
    code, out, err = cli("state", "import", cfg, "--from", bundle, "--set", f"output_dir={tmp_path / 'm2'}")
    assert code == 0, err
    assert "the config changed since the export in: derive, retrain.report_every" in out
    _rewrite(bundle, lambda m: m["config"]["model"].update(retired_switch=True))  # it was on: refused
    code, out, err = cli("state", "import", cfg, "--from", bundle, "--set", f"output_dir={tmp_path / 'm3'}")
    assert code == 2 and "differs in: model.retired_switch" in err, err


def test_import_does_not_replace_an_existing_run_folder_unless_told(cli, run, tmp_path):
    cfg, exp = run
    bundle = tmp_path / "bundle"
    _export(cli, cfg, bundle)
    code, out, err = cli("state", "import", cfg, "--from", bundle)
    assert code == 2 and "a run folder already exists" in err and "--overwrite" in err
    assert (exp.experiment_dir / "search" / "tuner.pkl").is_file()
    code, out, err = cli("state", "import", cfg, "--from", bundle, "--overwrite")
    assert code == 0, err
    assert not (exp.experiment_dir / "search").exists() and (exp.experiment_dir / "imported").is_dir()


@pytest.mark.parametrize("kind", ["search.pt", "model.pt"])
def test_a_checkpoint_or_model_carrying_a_pickle_payload_is_refused_without_running_it(cli, run, tmp_path, marker, kind):
    """The attacker controls the whole bundle, manifest included: sizes and sha256 all match."""
    import hashlib

    cfg, _ = run
    bundle = tmp_path / "bundle"
    _export(cli, cfg, bundle)
    evil = tmp_path / "evil.pt"
    torch.save({"format": 1, "epoch": 2, "model": {"w": Payload(marker)}}, evil)
    data = evil.read_bytes()
    entry = _entry(bundle, kind)
    name = "9999.part"
    (bundle / name).write_bytes(data)

    def change(m):
        f = next(f for f in m["files"] if f["path"] == entry["path"])
        sha = hashlib.sha256(data).hexdigest()
        m["part_files"].append({"name": name, "size": len(data), "sha256": sha})
        f.update(size=len(data), sha256=sha, parts=[{"name": name, "offset": 0, "size": len(data), "sha256": sha}])
    _rewrite(bundle, change)
    code, out, err = cli("state", "import", cfg, "--from", bundle, "--set", f"output_dir={tmp_path / 'o'}")
    assert code == 2 and "Traceback" not in out + err
    assert "refused" in err and "pickles objects other than tensors" in err and "(posix.system)" in err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").rglob("*"))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a crafted file ran code"


def test_export_and_import_explain_a_missing_run_or_bundle(cli, make, tmp_path):
    cfg = make.config(tmp_path / "c.yaml", tmp_path / "runs")
    code, out, err = cli("state", "export", cfg, "--out", tmp_path / "b")
    assert code == 2 and "nothing to export: no run folder at" in err and "Traceback" not in out + err
    code, out, err = cli("state", "import", cfg, "--from", tmp_path / "nowhere")
    assert code == 2 and "is not a folder" in err and "Traceback" not in out + err
