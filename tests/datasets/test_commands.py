"""The `data` CLI hooks, driven through a real argparse parser."""
from __future__ import annotations

import argparse
import hashlib
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from hinas.datasets.commands import register


@pytest.fixture
def parser():
    p = argparse.ArgumentParser(prog="hinas")
    register(p.add_subparsers(dest="command", required=True))
    return p


def _run(parser, argv):
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize("sub,words", [
    ("fetch", ["--sha256", "--url", "manifest"]),
    ("check", ["--root", "sha256"]),
    ("make-sim", ["--crop", "--train", "--seed", "SIM-style"]),
    ("make-rain-standin", ["NOT Rain800", "--out"]),
])
def test_help_texts(parser, capsys, sub, words):
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["data", sub, "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(w in text for w in words)


def test_check_real_and_broken_roots(parser, capsys, bsds_root, mini_bsds):
    assert _run(parser, ["data", "check", "bsd500", "--root", str(bsds_root)]) == 0
    assert "500 files match" in capsys.readouterr().out
    assert _run(parser, ["data", "check", "bsd500", "--root", str(mini_bsds)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "missing: test/" in err and "and 441 more" in err


def test_check_uses_env_and_decode(parser, capsys, bsds_root, monkeypatch):
    monkeypatch.setenv("HINAS_BSDS500_ROOT", str(bsds_root))
    assert _run(parser, ["data", "check", "bsd500", "--decode"]) == 0
    out = capsys.readouterr().out
    assert "train: 300 images decode" in out and "test: 200 images decode" in out


def test_fetch_from_a_file_url(parser, capsys, tmp_path):
    archive = tmp_path / "a.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("train/1.jpg", "val/2.jpg", "test/3.jpg"):
            buf = io.BytesIO()
            Image.fromarray(np.full((20, 20, 3), 99, np.uint8)).save(buf, format="JPEG")
            info = tarfile.TarInfo(f"BSR/BSDS500/data/images/{name}")
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    argv = ["data", "fetch", "bsd500", "--root", str(tmp_path / "b"), "--url", archive.as_uri()]
    assert _run(parser, argv + ["--sha256", digest]) == 0
    assert "HINAS_BSDS500_ROOT" in capsys.readouterr().out
    assert _run(parser, argv + ["--sha256", "ab" * 32, "--force"]) == 1
    assert "checksum mismatch" in capsys.readouterr().err
    assert (tmp_path / "b" / "images" / "val" / "2.jpg").is_file()  # the earlier good copy survives


def test_make_sim_and_rain_standin(parser, capsys, mini_bsds, tmp_path):
    common = ["--bsds-root", str(mini_bsds), "--train", "2", "--test", "1", "--workers", "1"]
    assert _run(parser, ["data", "make-sim", "--out", str(tmp_path / "sim"), "--crop", "48", *common]) == 0
    assert "made 3/3 pairs" in capsys.readouterr().out
    assert len(list((tmp_path / "sim" / "train" / "input").glob("*.png"))) == 2
    assert _run(parser, ["data", "make-rain-standin", "--out", str(tmp_path / "rain"), *common]) == 0
    assert "NOT Rain800" in capsys.readouterr().out
    assert _run(parser, ["data", "make-rain-standin", "--out", str(tmp_path / "rain"), *common]) == 1
    assert "already exists" in capsys.readouterr().err


def test_required_arguments(parser):
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "make-sim"])
    with pytest.raises(SystemExit):
        parser.parse_args(["data"])
