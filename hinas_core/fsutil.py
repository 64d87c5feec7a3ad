"""Atomic file writes: a reader sees either the old complete file or the new one, never half.

The one helper every writer of a file that a later run trusts goes through (genotype.json,
model files, search summaries, caches, manifests, Parquet tables). The new content is written
to a temporary sibling in the same folder (same filesystem), flushed to disk, and moved into
place with ``os.replace``; on any exception the temporary is removed and the old file stays.
A process killed mid-write leaves at most a hidden ``.<name>.*.tmp`` sibling, which no reader
opens. A write that fails because the disk is full raises ``OSError(ENOSPC)`` naming the target
file - also when the writer hid it (``torch.save`` raises a RuntimeError from its C++ stream).
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator


FULL = (errno.ENOSPC, errno.EDQUOT)


def _disk_full(path: Path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def no_space(folder) -> bool:
    """Whether ``folder``'s file system is (all but) full: under 1 MiB free for this user."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 2**20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish_mode(path: Path, is_dir: bool) -> None:
    """Give a temporary file/folder the mode a plain ``open()``/``mkdir()`` would have."""
    # mkstemp/mkdtemp create 0600/0700 entries; a shared dataset or cache folder must stay
    # readable by others.
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; write it completely, and on leaving the block it
    is synced to disk and replaces ``path`` atomically. An exception leaves ``path`` untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # Flush the data before the rename, so a power cut cannot publish an empty file.
        fd = os.open(tmp_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        publish_mode(tmp_path, is_dir=False)
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.errno in FULL:
            raise _disk_full(path) from exc
        raise
    except Exception as exc:  # a writer that hides the OSError: the disk tells
        if no_space(path.parent):
            raise _disk_full(path) from exc
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
