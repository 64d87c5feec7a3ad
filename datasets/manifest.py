"""File manifests (name, size, sha256) so a missing, truncated or corrupt image is reported by
name before any training starts.

``bsds500_manifest.json`` (shipped next to this module) lists the 500 official BSDS500 images as
``"<folder>/<file>": {"bytes": N, "sha256": HEX}``, computed from the distributed files.
:func:`verify_bsd500` checks a root against it; :func:`compute_manifest` makes one for any
folder tree (used to write the shipped file, and by tests for their fixtures).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

from .errors import DatasetError
from .fsutil import atomic_file
from .images import JPEG_SUFFIXES
from .paths import bsds500_root

BSDS500_MANIFEST = Path(__file__).with_name("bsds500_manifest.json")
BSDS500_FOLDERS = ("train", "val", "test")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def compute_manifest(images_dir: str | os.PathLike, folders: tuple[str, ...] = BSDS500_FOLDERS) -> dict:
    """Manifest of every JPEG in ``images_dir/<folder>/`` as ``{"files": {name: {bytes, sha256}}}``."""
    base = Path(images_dir)
    files = {}
    for folder in folders:
        for p in sorted((base / folder).glob("*")):
            if p.is_file() and p.suffix.lower() in JPEG_SUFFIXES:
                files[f"{folder}/{p.name}"] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
    return {"dataset": "BSDS500", "layout": "images/{train,val,test}/*.jpg", "files": files}


def write_manifest(manifest: dict, path: str | os.PathLike) -> None:
    """Write a manifest as indented JSON, atomically."""
    # One line per file keeps the shipped manifest small and its diffs readable.
    head = {k: v for k, v in manifest.items() if k != "files"}
    lines = [f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(manifest["files"].items())]
    text = json.dumps(head, sort_keys=True)[:-1] + ', "files": {\n' + ",\n".join(lines) + "\n}}\n"
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def load_manifest(path: str | os.PathLike | None = None) -> dict:
    """Read a manifest (default: the shipped official BSDS500 manifest)."""
    path = Path(path) if path is not None else BSDS500_MANIFEST
    try:
        manifest = json.loads(Path(path).read_text())
        manifest["files"].items()
    except (OSError, ValueError, KeyError, AttributeError) as e:
        raise DatasetError(f"manifest {path} is missing or not a valid manifest: {e}") from e
    return manifest


def verify_images(images_dir: str | os.PathLike, manifest: dict,
                  progress: Callable[[str], None] | None = None) -> int:
    """Check every manifest file under ``images_dir``: present, right size, right sha256.

    Returns:
        The number of files verified.

    Raises:
        DatasetError: listing every missing, truncated/resized and corrupt file by name.
    """
    base = Path(images_dir)
    problems = []
    entries = sorted(manifest["files"].items())
    for n, (name, want) in enumerate(entries, 1):
        path = base / name
        if not path.is_file():
            problems.append(f"missing: {name}")
        elif path.stat().st_size != want["bytes"]:
            problems.append(f"wrong size (truncated?): {name} has {path.stat().st_size} bytes, expected {want['bytes']}")
        elif sha256_file(path) != want["sha256"]:
            problems.append(f"corrupt (sha256 differs): {name}")
        if progress and n % 100 == 0:
            progress(f"verified {n}/{len(entries)} files")
    if entries and all(p.startswith("missing: ") for p in problems) and len(problems) == len(entries):
        raise DatasetError(f"{base}: all {len(entries)} files fail the manifest: none is there "
                           f"(expected {base}/{{train,val,test}}/*.jpg); is this the right folder?")
    if len(problems) == 1:
        raise DatasetError(f"{base}: 1 of {len(entries)} files fails the manifest: {problems[0]}")
    if problems:
        shown = "\n  ".join(problems[:50]) + (f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else "")
        raise DatasetError(f"{base}: {len(problems)} of {len(entries)} files fail the manifest:\n  {shown}")
    return len(entries)


def verify_bsd500(root: str | os.PathLike | None = None, manifest: dict | None = None,
                  progress: Callable[[str], None] | None = None) -> int:
    """Verify a BSDS500 root (``root/images/...``, default ``$HINAS_BSDS500_ROOT``) against the
    shipped manifest (or ``manifest``); returns the number of files checked, raises DatasetError."""
    base = bsds500_root(root)
    return verify_images(base / "images", manifest or load_manifest(), progress)
