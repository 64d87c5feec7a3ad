"""Where the data lives: explicit arguments first, then environment variables, then defaults.

Environment variables:

* ``HINAS_BSDS500_ROOT`` - folder holding ``images/{train,val,test}/*.jpg`` (BSDS500 layout).
* ``HINAS_CACHE_DIR`` - decoded-image cache folder; default ``~/.cache/hinas``.

Paths are returned absolute: Ray trials run in their own working directories.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DatasetError

BSDS500_ENV = "HINAS_BSDS500_ROOT"
CACHE_ENV = "HINAS_CACHE_DIR"


def bsds500_root(root: str | os.PathLike | None = None) -> Path:
    """The BSDS500 root: ``root`` if given, else ``$HINAS_BSDS500_ROOT``; absolute.

    Raises:
        DatasetError: neither is set, or the folder does not exist.
    """
    if root is None:
        root = os.environ.get(BSDS500_ENV)
        if not root:
            raise DatasetError(
                f"no BSDS500 root given: pass root=... (CLI: --root) or set {BSDS500_ENV} "
                "to the folder holding images/{train,val,test}"
            )
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise DatasetError(f"BSDS500 root {path} does not exist or is not a folder")
    return path


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``path`` if given, else ``$HINAS_CACHE_DIR``, else ``~/.cache/hinas``."""
    if path is None:
        path = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "hinas"
    return Path(path).expanduser().resolve()
