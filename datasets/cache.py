"""Decoded-image cache (Arrow IPC files), so trials do not re-decode JPEGs.

One cache file holds one :class:`ImageSet`: a row per image with ``name`` (string),
``height``/``width``/``channels`` and the raw ``pixels`` (uint8, row-major ``(H, W[, C])``),
plus a ``crc32`` of the pixels. The file's schema metadata carries a **fingerprint** of the
sources: format version, decode settings, and every source file's relative name, size and
mtime (ns). The fingerprint is also in the file name, so changed sources simply map to a new
file; stale files of the same set are deleted after a rebuild.

Trust rules: a file is used only if it opens as a complete Arrow IPC file (a truncated file has
no footer and fails), its fingerprint matches, and every row's size and CRC check out.
:func:`read_cache` raises :class:`CacheError` naming the file otherwise; :func:`load_images`
then warns, decodes the sources again and rewrites the file. Writes are atomic (temp + replace).
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from .errors import CacheError, DatasetError
from .fsutil import atomic_file
from .images import ImageSet, read_image
from .paths import cache_dir as default_cache_dir

CACHE_FORMAT = 1
_SCHEMA = pa.schema([
    ("name", pa.string()), ("height", pa.int32()), ("width", pa.int32()),
    ("channels", pa.int8()), ("crc32", pa.uint32()), ("pixels", pa.large_binary()),
])


def fingerprint(files: Sequence[tuple[str, Path]], settings: str) -> str:
    """sha256 over the format version, ``settings`` and each file's (name, size, mtime_ns)."""
    h = hashlib.sha256(f"hinas-image-cache v{CACHE_FORMAT}\n{settings}\n".encode())
    for name, path in files:
        st = path.stat()
        h.update(f"{name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "images"


def write_cache(path: Path, images: ImageSet, fp: str) -> None:
    """Write ``images`` to ``path`` atomically, tagged with fingerprint ``fp``."""
    arrays = [np.ascontiguousarray(a) for a in images.images]
    columns = {
        "name": list(images.names),
        "height": [a.shape[0] for a in arrays],
        "width": [a.shape[1] for a in arrays],
        "channels": [1 if a.ndim == 2 else a.shape[2] for a in arrays],
        "crc32": [zlib.crc32(a.data) for a in arrays],
        "pixels": [a.tobytes() for a in arrays],
    }
    meta = {"fingerprint": fp, "set_name": images.name, "format": str(CACHE_FORMAT)}
    table = pa.table(columns, schema=_SCHEMA.with_metadata(meta))
    with atomic_file(path) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)


def read_cache(path: Path, fp: str) -> ImageSet:
    """Read a cache file, checking it completely.

    Raises:
        CacheError: the file is truncated/corrupt, or was made from other sources (fingerprint).
    """
    try:
        with pa.OSFile(str(path), "rb") as source:
            table = ipc.open_file(source).read_all()
    except (pa.ArrowException, OSError) as e:
        raise CacheError(f"cache file {path} is truncated or corrupt: {e}") from e
    meta = table.schema.metadata or {}
    if meta.get(b"fingerprint", b"").decode() != fp:
        raise CacheError(f"cache file {path} was made from other source files (fingerprint differs)")
    if not table.schema.remove_metadata().equals(_SCHEMA):
        raise CacheError(f"cache file {path} has an unexpected schema")
    cols = {k: table.column(k).to_pylist() for k in _SCHEMA.names}
    images = []
    for name, h, w, c, crc, px in zip(*(cols[k] for k in _SCHEMA.names)):
        if len(px) != h * w * c or zlib.crc32(px) != crc:
            raise CacheError(f"cache file {path}: pixels of {name} are corrupt")
        a = np.frombuffer(px, dtype=np.uint8)
        images.append(a.reshape((h, w) if c == 1 else (h, w, c)))
    return ImageSet(meta[b"set_name"].decode(), tuple(cols["name"]), tuple(images))


def decode_all(name: str, files: Sequence[tuple[str, Path]], gray: bool) -> ImageSet:
    """Decode every file; a bad file anywhere gives one error naming all bad files."""
    images, bad = [], []
    for _, path in files:
        try:
            images.append(read_image(path, gray=gray))
        except DatasetError as e:
            bad.append(str(e))
    if len(bad) == 1:
        raise DatasetError(f"{name}: 1 unreadable image: {bad[0]}")
    if bad:
        raise DatasetError(f"{name}: {len(bad)} unreadable image(s):\n  " + "\n  ".join(bad))
    return ImageSet(name, tuple(n for n, _ in files), tuple(images))


def load_images(name: str, files: Sequence[tuple[str, Path]], gray: bool,
                cache_dir: str | os.PathLike | None = None, use_cache: bool = True) -> ImageSet:
    """Decode ``files`` (``(name, path)`` pairs) into an :class:`ImageSet`, through the cache.

    Args:
        name: the set's name (e.g. ``"BSD500/train"``); also the cache file's stem.
        files: the images, in order; names must be unique.
        gray: decode to BT.601 gray ``(H, W)`` (True) or RGB ``(H, W, 3)`` (False).
        cache_dir: cache folder (default ``$HINAS_CACHE_DIR`` or ``~/.cache/hinas``).
        use_cache: False decodes every time and touches no cache file.
    """
    if not use_cache:
        return decode_all(name, files, gray)
    fp = fingerprint(files, f"{name}\ngray={gray}")
    folder = default_cache_dir(cache_dir)
    stem = f"{_slug(name)}-{'gray' if gray else 'rgb'}"
    path = folder / f"{stem}-{fp[:24]}.arrow"
    if path.exists():
        try:
            return read_cache(path, fp)
        except CacheError as e:
            warnings.warn(f"{e}; decoding the images again", stacklevel=2)
    images = decode_all(name, files, gray)
    write_cache(path, images, fp)
    for stale in folder.glob(f"{stem}-*.arrow"):
        if stale != path:
            stale.unlink(missing_ok=True)
    return images
