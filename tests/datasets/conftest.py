"""Fixtures for the data-side tests: the real BSDS500 images and small trees built from them."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest



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
