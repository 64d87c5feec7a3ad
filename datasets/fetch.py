"""Download the official BSDS500 archive and keep its images in the layout the loaders read.

``fetch_bsd500(root)`` downloads ``BSR_bsds500.tgz`` (URL configurable), checks it, extracts
**only** ``.../images/{train,val,test}/*.jpg`` and leaves ``root/images/{train,val,test}/``.

Integrity: the archive's own sha256 is not published by Berkeley and is unknown here. If the
caller gives ``sha256``, the download must match it. If not, the computed sha256 is reported
and the extracted images are verified file by file against the shipped manifest of the 500
official images (the real integrity check). Either failure leaves nothing behind.

Safety: every archive member is checked before anything is extracted: absolute names, ``..``
components, and links pointing outside the target refuse the whole archive. The chosen images
are then extracted with ``tarfile``'s ``filter="data"`` (Python >= 3.11.4) into a temporary
folder and moved into place; the new ``images/`` appears with one rename.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path
from typing import Callable

from .errors import DatasetError
from .fsutil import atomic_dir
from .manifest import load_manifest, verify_images

BSDS500_URL = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz"
# The official archive holds BSR/BSDS500/data/images/{train,val,test}/*.jpg (plus Thumbs.db,
# ground truth, code); any prefix before images/ is accepted so re-packed mirrors work too.
_IMAGE_MEMBER = re.compile(r"(?:^|/)images/(train|val|test)/([^/]+\.jpg)$", re.IGNORECASE)


def download(url: str, dest: Path, progress: Callable[[str], None] | None = None) -> str:
    """Stream ``url`` into the file ``dest``; returns the hex sha256 of the bytes."""
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done, shown = 0, 0
            while block := response.read(1 << 20):
                out.write(block)
                h.update(block)
                done += len(block)
                if progress and done - shown >= 20 << 20:
                    shown = done
                    progress(f"downloaded {done >> 20} MiB" + (f" of {total >> 20} MiB" if total else ""))
    except OSError as e:  # URLError and HTTPError are OSErrors
        raise DatasetError(f"download of {url} failed: {e}") from e
    return h.hexdigest()


def _check_member(m: tarfile.TarInfo, archive: str) -> None:
    name = m.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise DatasetError(f"archive {archive} refused: member {name!r} escapes the target folder")
    if m.issym() or m.islnk():
        base = posixpath.dirname(name) if m.issym() else ""
        target = posixpath.normpath(posixpath.join(base, m.linkname))
        if m.linkname.startswith("/") or target == ".." or target.startswith("../"):
            raise DatasetError(f"archive {archive} refused: link {name!r} -> {m.linkname!r} points outside the target")


def select_images(tar: tarfile.TarFile, archive: str) -> dict[str, tarfile.TarInfo]:
    """Check every member (raises on an unsafe one) and return ``{"<split>/<file>": member}``
    for the regular-file images; links and everything else are never extracted."""
    chosen: dict[str, tarfile.TarInfo] = {}
    for m in tar.getmembers():
        _check_member(m, archive)
        match = _IMAGE_MEMBER.search(m.name)
        if match and m.isfile():
            key = f"{match.group(1).lower()}/{match.group(2)}"
            if key in chosen:
                raise DatasetError(f"archive {archive} holds {key} twice ({chosen[key].name}, {m.name})")
            chosen[key] = m
    if not chosen:
        raise DatasetError(f"archive {archive} holds no images/{{train,val,test}}/*.jpg")
    return chosen


def extract_images(archive: Path, images_dir: Path, source: str | None = None) -> int:
    """Extract the BSDS500 images of ``archive`` into ``images_dir/{train,val,test}/``.
    Errors name ``source`` (e.g. the URL it was downloaded from), else ``archive``."""
    name = source or str(archive)
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise DatasetError(f"{name} is not a readable tar archive: {str(e).splitlines()[0].rstrip(':')}") from e
    with tar, tempfile.TemporaryDirectory(dir=images_dir.parent, prefix=".extract.") as raw:
        try:
            chosen = select_images(tar, name)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:  # a truncated or damaged download
            raise DatasetError(f"{name} is a truncated or damaged tar archive: {str(e).splitlines()[0]}") from e
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        try:
            tar.extractall(raw, members=list(chosen.values()), **kwargs)
        except (tarfile.TarError, OSError) as e:
            raise DatasetError(f"extracting {name} failed: {str(e).splitlines()[0]}") from e
        for key, m in chosen.items():
            dest = images_dir / key
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(raw) / m.name, dest)
    return len(chosen)


def fetch_bsd500(root: str | os.PathLike, url: str = BSDS500_URL, sha256: str | None = None,
                 manifest: dict | None = None, overwrite: bool = False,
                 progress: Callable[[str], None] | None = None) -> Path:
    """Download, check and extract BSDS500 so that ``root/images/{train,val,test}/*.jpg`` exist.

    Args:
        root: target folder (created if needed); ``root/images`` must not exist unless ``overwrite``.
        url: archive URL (``http(s)://`` or ``file://``).
        sha256: expected hex sha256 of the archive; None -> verify the images against ``manifest``.
        manifest: image manifest to verify against when no sha256 is given
            (default: the shipped manifest of the 500 official images).
        progress: called with one-line progress messages (e.g. ``print``).

    Returns:
        ``root`` (absolute).

    Raises:
        DatasetError: download failure, checksum mismatch, unsafe or unexpected archive, or images
            failing the manifest. Nothing is left in ``root`` in that case.
    """
    say = progress or (lambda msg: None)
    root = Path(root).expanduser().resolve()
    images = root / "images"
    if images.exists() and not overwrite:
        raise DatasetError(f"{images} already exists; pass overwrite (CLI: --force) to replace it")
    # The topmost folder this call creates: a failure removes it (and root below it) again.
    created = next((p for p in reversed((root, *root.parents)) if not p.exists()), None)
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".BSR_bsds500.", suffix=".tgz.part")
    os.close(fd)
    archive = Path(tmp)
    try:
        say(f"downloading {url}")
        digest = download(url, archive, say)
        say(f"archive sha256: {digest}")
        if sha256 is not None and digest != sha256.strip().lower():
            raise DatasetError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest}")
        with atomic_dir(images, overwrite=overwrite) as staging:
            n = extract_images(archive, staging, source=url)
            say(f"extracted {n} images")
            if sha256 is None:
                say("no sha256 given: verifying the images against the manifest instead")
                verify_images(staging, manifest or load_manifest(), say)
        say(f"BSDS500 images ready in {images}")
        return root
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    finally:
        archive.unlink(missing_ok=True)
