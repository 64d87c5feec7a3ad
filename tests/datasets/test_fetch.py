"""fetch_bsd500 against archives served from a local http.server (no internet needed)."""
from __future__ import annotations

import functools
import hashlib
import io
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hinas.datasets import DatasetError, fetch_bsd500, load_bsd500
from hinas.datasets.manifest import compute_manifest

PREFIX = "BSR/BSDS500/data/images"
IMAGES = {"train/1.jpg": 10, "train/2.jpg": 20, "val/3.jpg": 30, "test/4.jpg": 40, "test/5.jpg": 50}


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path/www`` on 127.0.0.1; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((24, 32, 3), value, np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _add(tar, name, data=b"", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data)
    tar.addfile(info, io.BytesIO(data) if data else None)


def _archive(path: Path, extra=()) -> str:
    """A .tgz with the real archive's internal layout; returns its sha256."""
    with tarfile.open(path, "w:gz") as tar:
        for name, value in IMAGES.items():
            _add(tar, f"{PREFIX}/{name}", _jpeg(value))
        _add(tar, f"{PREFIX}/train/Thumbs.db", b"junk")
        _add(tar, "BSR/BSDS500/data/groundTruth/train/1.mat", b"not an image")
        _add(tar, "BSR/documentation/README.txt", b"readme")
        for item in extra:
            _add(tar, *item)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fixture_manifest(tmp_path) -> dict:
    ref = tmp_path / "ref" / "images"
    for name, value in IMAGES.items():
        (ref / name).parent.mkdir(parents=True, exist_ok=True)
        (ref / name).write_bytes(_jpeg(value))
    return compute_manifest(ref)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_fetch_with_checksum_keeps_only_the_images(server, tmp_path):
    www, url = server
    digest = _archive(www / "BSR_bsds500.tgz")
    messages = []
    root = fetch_bsd500(tmp_path / "bsds", url=f"{url}/BSR_bsds500.tgz", sha256=digest.upper(),
                        progress=messages.append)
    got = sorted(str(p.relative_to(root / "images")) for p in (root / "images").rglob("*.jpg"))
    assert got == sorted(IMAGES)
    assert _leftovers(root) == sorted(["images", "train", "val", "test", *(n.split("/")[1] for n in IMAGES)])
    assert any(digest in m for m in messages)
    assert len(load_bsd500("test", root, use_cache=False)) == 2


def test_without_checksum_the_manifest_decides(server, tmp_path):
    www, url = server
    _archive(www / "a.tgz")
    messages = []
    fetch_bsd500(tmp_path / "ok", url=f"{url}/a.tgz", manifest=_fixture_manifest(tmp_path), progress=messages.append)
    assert any("manifest" in m for m in messages)
    # Against the shipped manifest of the 500 official images, this archive must fail...
    with pytest.raises(DatasetError, match="fail the manifest"):
        fetch_bsd500(tmp_path / "bad", url=f"{url}/a.tgz")
    assert not (tmp_path / "bad").exists()  # ...and leave nothing behind


def test_wrong_checksum_is_refused(server, tmp_path):
    www, url = server
    _archive(www / "a.tgz")
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(DatasetError, match="checksum mismatch"):
        fetch_bsd500(existing, url=f"{url}/a.tgz", sha256="0" * 64)
    assert _leftovers(existing) == []


@pytest.mark.parametrize("evil", [
    (f"{PREFIX}/../../../../evil.jpg", b"x"),
    ("/tmp/hinas-evil-absolute.jpg", b"x"),
    (f"{PREFIX}/train/link.jpg", b"", tarfile.SYMTYPE, "/etc/passwd"),
    (f"{PREFIX}/train/hard.jpg", b"", tarfile.LNKTYPE, "../../outside.jpg"),
    ("BSR/escape", b"", tarfile.SYMTYPE, "../../.."),
], ids=["dotdot", "absolute", "symlink", "hardlink", "dir-symlink"])
def test_path_escapes_refuse_the_whole_archive(server, tmp_path, evil):
    www, url = server
    digest = _archive(www / "evil.tgz", extra=[evil])
    with pytest.raises(DatasetError, match="refused"):
        fetch_bsd500(tmp_path / "t" / "bsds", url=f"{url}/evil.tgz", sha256=digest)
    assert not (tmp_path / "t" / "bsds").exists()
    assert not list(tmp_path.rglob("*evil*.jpg")) and not Path("/tmp/hinas-evil-absolute.jpg").exists()


def test_existing_images_are_kept_unless_forced(server, tmp_path):
    www, url = server
    digest = _archive(www / "a.tgz")
    root = tmp_path / "bsds"
    (root / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="already exists"):
        fetch_bsd500(root, url=f"{url}/a.tgz", sha256=digest)
    fetch_bsd500(root, url=f"{url}/a.tgz", sha256=digest, overwrite=True)
    assert len(list((root / "images").rglob("*.jpg"))) == len(IMAGES)
    assert sorted(p.name for p in root.iterdir()) == ["images"]


def test_download_errors_and_non_archives(server, tmp_path):
    www, url = server
    with pytest.raises(DatasetError, match="download of .*missing.tgz failed"):
        fetch_bsd500(tmp_path / "a", url=f"{url}/missing.tgz")
    (www / "page.tgz").write_text("<html>not a tarball</html>")
    with pytest.raises(DatasetError, match="not a readable tar archive"):
        fetch_bsd500(tmp_path / "b", url=f"{url}/page.tgz")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
