"""The decoded-image cache: reuse, invalidation, and never trusting a bad file."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from hinas.datasets import CacheError, load_bsd500
from hinas.datasets import cache as cache_mod
from hinas.datasets.bsd500 import bsd500_files


def _cache_files(folder):
    return sorted(p for p in folder.iterdir())


def test_second_load_comes_from_the_cache(mini_bsds, tmp_path, monkeypatch):
    cdir = tmp_path / "c"
    first = load_bsd500("train", mini_bsds, cache_dir=cdir)
    assert [p.suffix for p in _cache_files(cdir)] == [".arrow"]

    def no_decoding(*a, **k):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(cache_mod, "read_image", no_decoding)
    second = load_bsd500("train", mini_bsds, cache_dir=cdir)
    assert second.names == first.names
    for a, b in zip(first.images, second.images):
        np.testing.assert_array_equal(a, b)


def test_changed_source_invalidates_and_replaces_the_cache(mini_bsds, tmp_path):
    cdir = tmp_path / "c"
    before = load_bsd500("train", mini_bsds, cache_dir=cdir)
    old_files = _cache_files(cdir)
    name, path = bsd500_files("train", mini_bsds)[0]
    Image.fromarray(np.full((321, 481, 3), 77, np.uint8)).save(path, quality=95)
    after = load_bsd500("train", mini_bsds, cache_dir=cdir)
    assert after.names == before.names
    assert np.abs(after.images[0].astype(int) - 77).max() <= 2  # the new content, not the cached one
    assert _cache_files(cdir) != old_files and len(_cache_files(cdir)) == 1  # stale file removed


def test_added_file_invalidates_the_cache(mini_bsds, tmp_path):
    cdir = tmp_path / "c"
    assert len(load_bsd500("test", mini_bsds, cache_dir=cdir)) == 3
    src = next((mini_bsds / "images" / "train").glob("*.jpg"))
    shutil.copy2(src, mini_bsds / "images" / "test" / "zzz.jpg")
    assert len(load_bsd500("test", mini_bsds, cache_dir=cdir)) == 4


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_cache_is_detected_and_rebuilt(mini_bsds, tmp_path, damage):
    cdir = tmp_path / "c"
    good = load_bsd500("test", mini_bsds, cache_dir=cdir)
    (path,) = _cache_files(cdir)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:  # one byte in the middle of the pixel payload; the file stays structurally valid
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    fp = cache_mod.fingerprint(bsd500_files("test", mini_bsds), "BSD500/test\ngray=True")
    with pytest.raises(CacheError, match=path.name):
        cache_mod.read_cache(path, fp)
    with pytest.warns(UserWarning, match="decoding the images again"):
        again = load_bsd500("test", mini_bsds, cache_dir=cdir)
    for a, b in zip(good.images, again.images):
        np.testing.assert_array_equal(a, b)
    assert cache_mod.read_cache(path, fp).names == good.names  # rewritten, valid again


def test_cache_from_other_files_is_refused_by_name(mini_bsds, tmp_path):
    cdir = tmp_path / "c"
    load_bsd500("train", mini_bsds, cache_dir=cdir)
    (other,) = _cache_files(cdir)
    fp_test = cache_mod.fingerprint(bsd500_files("test", mini_bsds), "BSD500/test\ngray=True")
    with pytest.raises(CacheError, match=f"{other.name}.*other source files"):
        cache_mod.read_cache(other, fp_test)


def test_failed_write_leaves_no_file(mini_bsds, tmp_path, monkeypatch):
    cdir = tmp_path / "c"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod.ipc, "new_file", boom)
    with pytest.raises(OSError, match="disk full"):
        load_bsd500("test", mini_bsds, cache_dir=cdir)
    assert _cache_files(cdir) == []  # not even a temp file


def test_use_cache_false_writes_nothing(mini_bsds, tmp_path):
    cdir = tmp_path / "c"
    assert len(load_bsd500("test", mini_bsds, cache_dir=cdir, use_cache=False)) == 3
    assert not cdir.exists()


def test_cache_dir_defaults_to_env(mini_bsds, tmp_path, monkeypatch):
    monkeypatch.setenv("HINAS_CACHE_DIR", str(tmp_path / "env-cache"))
    load_bsd500("test", mini_bsds)
    assert len(os.listdir(tmp_path / "env-cache")) == 1
