"""Fixtures for the data-side tests: the real BSDS500 images and small trees built from them."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _bsds_root() -> Path | None:
    for cand in (os.environ.get("HINAS_BSDS500_ROOT"), REPO.parent / "shared" / "datasets" / "BSDS500"):
        if cand and (Path(cand) / "images" / "test").is_dir():
            return Path(cand).resolve()
    return None


@pytest.fixture(scope="session")
def bsds_root() -> Path:
    """The real BSDS500 root (``$HINAS_BSDS500_ROOT`` or ``../shared/datasets/BSDS500``)."""
    root = _bsds_root()
    if root is None:
        pytest.skip("BSDS500 images not available (set HINAS_BSDS500_ROOT)")
    return root


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hinas-cache")


@pytest.fixture(autouse=True)
def _cache_env(monkeypatch, session_cache):
    # Never touch the user's ~/.cache/hinas from tests; one cache per session keeps the real
    # BSD500 decode (about 3 s per split) to once.
    monkeypatch.setenv("HINAS_CACHE_DIR", str(session_cache))
    monkeypatch.delenv("HINAS_BSDS500_ROOT", raising=False)


@pytest.fixture
def mini_bsds(tmp_path, bsds_root) -> Path:
    """A BSDS500-layout tree of 9 real images: 4 train, 2 val, 3 test (copied into tmp)."""
    root = tmp_path / "mini-bsds"
    for folder, n in (("train", 4), ("val", 2), ("test", 3)):
        dst = root / "images" / folder
        dst.mkdir(parents=True)
        for p in sorted((bsds_root / "images" / folder).glob("*.jpg"))[:n]:
            shutil.copy2(p, dst / p.name)
    return root
