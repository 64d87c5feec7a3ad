"""Each kind of bad input gives one DatasetError naming the file or setting, and writes nothing.

(Manifest failures: test_manifest.py; unsafe archives and bad checksums: test_fetch.py;
failed dataset builds: test_sim_dataset.py.)
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from hinas.datasets import DatasetError, ImageSet, PatchSampler, load_bsd500, load_rain800, noisy_pairs
from hinas.datasets import cache as cache_mod
from hinas.datasets.bsd500 import bsd500_files


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match=f"{tmp_path / 'nope'} does not exist"):
        load_bsd500("train", tmp_path / "nope")


def test_missing_split_folder(mini_bsds):
    shutil.rmtree(mini_bsds / "images" / "val")
    with pytest.raises(DatasetError, match=r"images/val is missing"):
        load_bsd500("train", mini_bsds)


def test_empty_split(mini_bsds):
    for p in (mini_bsds / "images" / "test").iterdir():
        p.unlink()
    (mini_bsds / "images" / "test" / "README.txt").write_text("not an image, ignored")
    with pytest.raises(DatasetError, match=r"images/test holds no \.jpg images \(empty split\)"):
        load_bsd500("test", mini_bsds)


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "not-an-image"])
def test_bad_jpeg_is_named_and_nothing_is_cached(mini_bsds, tmp_path, damage):
    victim = sorted((mini_bsds / "images" / "test").glob("*.jpg"))[1]
    data = victim.read_bytes()
    victim.write_bytes({"corrupt": b"\xff\xd8\xff\xe0" + bytes(200) + b"\xff\xd9",
                        "truncated": data[: len(data) // 3],
                        "not-an-image": b"hello, I am a text file\n\xff\xd9"}[damage])
    cdir = tmp_path / "cache"
    with pytest.raises(DatasetError, match=f"(?s)1 unreadable image.*{victim.name}"):
        load_bsd500("test", mini_bsds, cache_dir=cdir)
    assert not cdir.exists() or not any(cdir.iterdir())


@pytest.mark.parametrize("sigma", [0, -15.0])
def test_non_positive_sigma_names_sigma(sigma):
    images = ImageSet("toy", ("a",), (np.zeros((70, 70), np.uint8),))
    with pytest.raises(DatasetError, match=f"sigma={sigma}"):
        PatchSampler(images, sigma)
    with pytest.raises(DatasetError, match="sigma"):
        noisy_pairs(images, sigma)


def test_wrong_rain800_layout(tmp_path):
    (tmp_path / "train").mkdir()  # a split folder without input/ and target/
    with pytest.raises(DatasetError, match=f"wrong layout: {tmp_path}"):
        load_rain800(tmp_path, "train")


def test_cache_from_other_files_is_not_trusted(mini_bsds, tmp_path):
    cdir = tmp_path / "cache"
    load_bsd500("train", mini_bsds, cache_dir=cdir)
    (train_cache,) = cdir.iterdir()
    fp = cache_mod.fingerprint(bsd500_files("test", mini_bsds), "BSD500/test\ngray=True")
    expected = cdir / f"BSD500_test-gray-{fp[:24]}.arrow"
    shutil.copy(train_cache, expected)  # someone copied a cache of other files into place
    with pytest.warns(UserWarning, match=f"{expected.name} was made from other source files"):
        test = load_bsd500("test", mini_bsds, cache_dir=cdir)
    assert len(test) == 3 and all(n.startswith("test/") for n in test.names)

