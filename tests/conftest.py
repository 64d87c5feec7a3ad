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


def pytest_collection_modifyitems(config, items):
    """Run the files holding `slow` tests first, then the rest; within each group the files with
    more tests first (pytest-xdist's own order, which scripts/test.sh turns off). In two xdist
    processes the long end-to-end files then start early and the short ones fill the end, so
    neither process is left alone with a long file at the end (docs/RESULTS.md, the suite)."""
    files: dict = {}
    for item in items:
        files.setdefault(item.path, []).append(item)

    def order(path):
        tests = files[path]
        return not any(t.get_closest_marker("slow") for t in tests), -len(tests)

    items[:] = [item for path in sorted(files, key=order) for item in files[path]]
