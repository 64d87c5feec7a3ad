"""Fixtures shared by every test folder: the real BSDS500 images and a per-session data cache."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
    """One decode cache per test session (never the user's ~/.cache/hinas)."""
    return tmp_path_factory.mktemp("hinas-cache")
