"""Atomic writes: a reader sees either the old complete file/folder or the new one, never half.

Files: :func:`atomic_file`, the project's one helper (it lives in :mod:`hinas_core.fsutil` so the
core can use it too). Folders are built in a temporary sibling and renamed at the end; on any
exception the temporary is removed, so a failed build leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from hinas_core.fsutil import atomic_file, publish_mode

from .errors import DatasetError

__all__ = ["atomic_dir", "atomic_file", "refuse_existing"]


def refuse_existing(path: Path, overwrite: bool) -> None:
    """DatasetError when the output folder ``path`` exists and may not be replaced."""
    if path.exists() and not overwrite:
        raise DatasetError(f"output folder {path} already exists; remove it or pass overwrite=True (CLI: --force)")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path``; on success it becomes ``path``.

    Raises:
        DatasetError: ``path`` exists and ``overwrite`` is False (checked before any work).
    """
    path = Path(path)
    refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        publish_mode(tmp, is_dir=True)
        if path.exists():
            # Move the old folder aside first so the swap itself is one rename.
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
