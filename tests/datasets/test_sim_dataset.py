"""Building and loading the SIM-style set on a tiny real-image tree."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from hinas.datasets import DatasetError, SIM_NAME, build_sim_dataset, load_bsd500, load_sim
from hinas.datasets import sim_dataset


def _build(root, out, **kw):
    args = dict(seed=3, n_train=9, n_test=4, crop=64, workers=1) | kw
    return build_sim_dataset(out, root, **args)


@pytest.fixture
def built(mini_bsds, tmp_path):
    return _build(mini_bsds, tmp_path / "sim")


def test_layout_manifest_and_label(built):
    info = json.loads((built / "DATASET.json").read_text())
    assert info["name"] == SIM_NAME and "not the paper's SIM1800" in SIM_NAME
    assert info["counts"] == {"train": 9, "test": 4} and info["seed"] == 3
    rows = pq.read_table(built / "pairs.parquet").to_pylist()
    assert len(rows) == 13
    assert {"shot_k", "read_sigma", "jpeg_quality", "bayer_dy", "source", "y", "x"} <= set(rows[0])
    assert len({(r["shot_k"], r["read_sigma"]) for r in rows}) == 13  # a fresh draw per pair
    for split, n in (("train", 9), ("test", 4)):
        for side in ("input", "target"):
            assert len(list((built / split / side).glob("*.png"))) == n
    assert sorted(p.name for p in built.parent.iterdir()) == ["mini-bsds", "sim"]  # no temp folders


def test_targets_are_disjoint_source_crops_without_leaks(built, mini_bsds):
    rows = pq.read_table(built / "pairs.parquet").to_pylist()
    assert all(r["source"].split("/")[0] in ("train", "val") for r in rows if r["split"] == "train")
    assert all(r["source"].startswith("test/") for r in rows if r["split"] == "test")
    boxes = {}
    for r in rows:
        for (y, x) in boxes.get(r["source"], []):
            assert abs(y - r["y"]) >= 64 or abs(x - r["x"]) >= 64, "two crops overlap"
        boxes.setdefault(r["source"], []).append((r["y"], r["x"]))
    sources = {n: im for split in ("train", "test") for n, im in load_bsd500(split, mini_bsds, gray=False)}
    pairs = {p.name: p for p in load_sim(built, "train")}
    for r in (r for r in rows if r["split"] == "train"):
        crop = sources[r["source"]][r["y"]:r["y"] + 64, r["x"]:r["x"] + 64]
        np.testing.assert_array_equal(pairs[r["name"]].target, crop)


def test_same_seed_same_pairs_any_workers_different_seed_differs(built, mini_bsds, tmp_path):
    again = _build(mini_bsds, tmp_path / "again", workers=2)
    other = _build(mini_bsds, tmp_path / "other", seed=4)
    a, b, c = (load_sim(p, "test", use_cache=False) for p in (built, again, other))
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.input, q.input)
        np.testing.assert_array_equal(p.target, q.target)
    assert not all(np.array_equal(p.input, q.input) for p, q in zip(a, c))


def test_pairs_are_noisy_rgb_and_gray_on_request(built):
    pairs = load_sim(built, "test")
    assert pairs[0].input.shape == (64, 64, 3) and pairs[0].input.dtype == np.uint8
    assert all(not np.array_equal(p.input, p.target) for p in pairs)
    gray = load_sim(built, "test", gray=True)
    assert gray[0].input.shape == (64, 64) and gray.name.endswith("/test")


def test_too_many_crops_per_image_is_refused_before_writing(mini_bsds, tmp_path):
    with pytest.raises(DatasetError, match="disjoint crops"):
        _build(mini_bsds, tmp_path / "x", n_test=200)  # 3 images x 35 cells < 200
    assert not (tmp_path / "x").exists()


def test_failure_mid_build_leaves_nothing(mini_bsds, tmp_path, monkeypatch):
    calls = []

    def flaky(clean, rng):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("simulated crash")
        return clean, {}

    monkeypatch.setattr(sim_dataset, "_sim_degrade", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _build(mini_bsds, tmp_path / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini-bsds"]


def test_existing_output_and_wrong_kind_are_refused(built, mini_bsds, tmp_path):
    with pytest.raises(DatasetError, match="already exists"):
        _build(mini_bsds, built)
    with pytest.raises(DatasetError, match="DATASET.json"):
        load_sim(mini_bsds)
