"""Manifest verification: missing, truncated and corrupt files are reported by name."""
from __future__ import annotations

import pytest

from hinas.datasets import DatasetError, verify_bsd500
from hinas.datasets.manifest import BSDS500_MANIFEST, compute_manifest, load_manifest, verify_images


def test_shipped_manifest_lists_the_500_official_images():
    files = load_manifest()["files"]
    assert len(files) == 500
    assert {f: sum(n.startswith(f + "/") for n in files) for f in ("train", "val", "test")} == \
        {"train": 200, "val": 100, "test": 200}
    assert BSDS500_MANIFEST.stat().st_size < 100_000


def test_real_images_match_the_shipped_manifest(bsds_root):
    assert verify_bsd500(bsds_root) == 500


def test_every_bad_file_is_named(mini_bsds):
    manifest = compute_manifest(mini_bsds / "images")
    assert verify_images(mini_bsds / "images", manifest) == 9
    train = sorted((mini_bsds / "images" / "train").glob("*.jpg"))
    train[0].unlink()
    train[1].write_bytes(train[1].read_bytes()[:1000])
    data = bytearray(train[2].read_bytes())
    data[len(data) // 2] ^= 0x01
    train[2].write_bytes(bytes(data))
    with pytest.raises(DatasetError) as err:
        verify_bsd500(mini_bsds, manifest)
    msg = str(err.value)
    assert "3 of 9" in msg
    assert f"missing: train/{train[0].name}" in msg
    assert f"truncated?): train/{train[1].name}" in msg
    assert f"corrupt (sha256 differs): train/{train[2].name}" in msg


def test_partial_copy_fails_the_official_manifest(mini_bsds):
    with pytest.raises(DatasetError, match="491 of 500"):
        verify_bsd500(mini_bsds)


def test_bad_manifest_file_is_reported(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="m.json"):
        load_manifest(bad)
