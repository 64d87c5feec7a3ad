"""Fixtures for the reliability tests: the real CLI in-process, real BSDS500 images, crafted files."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml


# A tiny, valid experiment on the embedded sample set: every bad-input case changes one thing.
BASE = {"name": "t", "space": {"preset": "tiny"},
        "search": {"max_epochs": 2, "warmup_epochs": 1, "batch_size": 2, "steps_per_epoch": 1},
        "data": {"dataset": "sample", "sigmas": [30], "patch_size": 32, "val_fraction": 0.2, "val_crop": 64},
        "retrain": {"iterations": 2, "report_every": 2, "batch_size": 2},
        "model": {"width": 4, "baselines": []},
        "evaluate": {"crop": 64, "max_images": 1, "bm3d": False},
        "resources": {"cpu": 1, "gpu": 0}}


@pytest.fixture(autouse=True)
def _env(monkeypatch, session_cache):
    # Never the user's cache, data root or cluster; no GPU.
    monkeypatch.setenv("HINAS_CACHE_DIR", str(session_cache))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    for var in ("HINAS_BSDS500_ROOT", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)


def write_config(path: Path, runs: Path, **changes) -> Path:
    """BASE with ``output_dir`` and top-level ``changes``: a section given as a dict is merged,
    a key given as None is left out."""
    cfg = json.loads(json.dumps(BASE))
    cfg["output_dir"] = str(runs)
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        elif isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


def bsds_links(root: Path, bsds: Path) -> Path:
    """A BSDS500 layout of symlinks to the 500 real images (cheap to damage one file of)."""
    for folder in ("train", "val", "test"):
        (root / "images" / folder).mkdir(parents=True)
        for p in (bsds / "images" / folder).glob("*.jpg"):
            (root / "images" / folder / p.name).symlink_to(p)
    return root


def mini_bsds(root: Path, bsds: Path, counts=(("train", 4), ("val", 2), ("test", 3))) -> Path:
    """A BSDS500 layout holding a few real images (copies)."""
    for folder, n in counts:
        (root / "images" / folder).mkdir(parents=True)
        for p in sorted((bsds / "images" / folder).glob("*.jpg"))[:n]:
            shutil.copy2(p, root / "images" / folder / p.name)
    return root


def stored_pairs(root: Path, bsds: Path, kind: str = "sim", n_train: int = 4, n_test: int = 2, size: int = 48) -> Path:
    """A generated-pair dataset (the layout `hinas data make-sim` writes) cut from real BSDS500
    images: ``size`` x ``size`` crops, the noisy side with seeded Gaussian noise."""
    from hinas.datasets import read_image
    from hinas.datasets.images import write_png

    sources = sorted((bsds / "images" / "train").glob("*.jpg"))
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for sub in ("input", "target"):
            (root / split / sub).mkdir(parents=True)
        for i in range(n):
            clean = read_image(sources[i], gray=False)[:size, :size]
            noisy = np.clip(clean + rng.normal(0, 15, clean.shape), 0, 255).astype(np.uint8)
            write_png(root / split / "input" / f"{i:04d}.png", noisy)
            write_png(root / split / "target" / f"{i:04d}.png", clean)
    (root / "DATASET.json").write_text(json.dumps({"name": f"test {kind}", "kind": kind}))
    return root


def snapshot(*roots: Path) -> dict:
    """Every entry under ``roots`` with its size and mtime: equal snapshots = nothing written."""
    out = {}
    for root in roots:
        if root.exists():
            for p in sorted(root.rglob("*")):
                st = p.lstat()
                out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def cli(capsys):
    """Run ``hinas ARGS`` in this process: returns (exit code, stdout, stderr)."""
    from hinas.pipeline.cli import main

    def run(*args):
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


def sibling(name: str):
    """The test module ``name`` of this folder (or a path from it, e.g. ``../core/test_x``),
    loaded as a module, to use its helpers."""
    import importlib.util

    module_name = "_reliability_" + name.replace("../", "up_").replace("/", "_")
    spec = importlib.util.spec_from_file_location(module_name, Path(__file__).parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def make():
    """The helpers above, for the test modules (conftest is not importable under importlib mode)."""
    import types

    return types.SimpleNamespace(config=write_config, bsds_links=bsds_links, mini_bsds=mini_bsds,
                                 stored_pairs=stored_pairs, snapshot=snapshot, base=BASE, sibling=sibling)
