"""Untrusted files never run code: one crafted malicious file per loader hinas has.

Each malicious file would create a marker file if its payload ran (a pickle's ``__reduce__``,
a YAML Python tag, an Arrow extension type, an archive member aimed outside the target). Every
test asserts the marker never appears and the user gets a clear refusal. A static audit at the
end pins the loaders themselves: the only ``torch.load`` is the weights-only one, YAML goes
through a SafeLoader, nothing unpickles, archives are extracted member-checked.
(Function-level neighbours: tests/core/test_models_retrain.py's pickle test and
tests/datasets/test_fetch.py's archive escapes; these go through the command or the stage.)
"""
from __future__ import annotations

import ast
import hashlib
import io
import os
import pickle
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


class Payload:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a crafted file ran code"


def _evil_torch_file(d: Path, kind: str, marker: Path) -> Path:
    """A model/checkpoint file carrying a pickle payload, in each format torch.load accepts."""
    path = d / f"{kind}.pt"
    if kind == "torch-zip":  # shaped like a hinas model file; the payload sits among the weights
        torch.save({"format": 1, "spec": '{"kind": "dncnn", "depth": 3, "width": 4}', "meta": "{}",
                    "state_dict": {"body.0.weight": Payload(marker)}}, path)
    elif kind == "torch-legacy":  # torch's pre-1.6 format (not a zip archive)
        torch.save({"state_dict": Payload(marker)}, path, _use_new_zipfile_serialization=False)
    else:  # a bare pickle named like a model
        path.write_bytes(pickle.dumps({"format": 1, "state_dict": Payload(marker)}))
    return path


@pytest.mark.parametrize("kind", ["torch-zip", "torch-legacy", "bare-pickle"])
@pytest.mark.parametrize("command", ["evaluate", "denoise"])
def test_model_files_with_a_pickle_payload_are_refused_by_the_cli(cli, make, tmp_path, marker, kind, command):
    from hinas.datasets.images import write_png

    evil = _evil_torch_file(tmp_path, kind, marker)
    if command == "evaluate":
        argv = ["evaluate", make.config(tmp_path / "c.yaml", tmp_path / "runs"), "--model", evil]
    else:
        write_png(tmp_path / "in.png", np.full((32, 32), 128, np.uint8))
        argv = ["denoise", "--model", evil, tmp_path / "in.png", tmp_path / "out.png"]
    code, out, err = cli(*argv)
    assert code == 2 and "Traceback" not in out + err
    assert f"model file '{evil}' cannot be read" in err
    if kind == "torch-zip":
        assert "(posix.system)" in err and "refused without loading them" in err
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("what", ["search checkpoint", "retrain checkpoint"])
def test_trial_checkpoints_with_a_pickle_payload_are_refused(tmp_path, marker, what):
    """The loader both trainables resume through (and the search stage derives from)."""
    from hinas_core.models import ModelError, load_tensors

    evil = _evil_torch_file(tmp_path, "torch-zip", marker)
    with pytest.raises(ModelError, match=f"{what} '{evil}' cannot be read: it pickles objects other than tensors"):
        load_tensors(evil, what)


def test_a_search_trial_whose_checkpoint_carries_a_payload_gives_no_genotype(make, tmp_path, marker):
    """The search stage reads each finished trial's Tune checkpoint to write its genotype.json."""
    from ray.tune import Checkpoint, Result

    from hinas.pipeline.experiment import load_experiment
    from hinas.pipeline.search_stage import CHECKPOINT_FILE, _finish_trial

    exp = load_experiment(make.config(tmp_path / "c.yaml", tmp_path / "runs"))
    ckpt = tmp_path / "checkpoint_000001"
    ckpt.mkdir()
    _evil_torch_file(tmp_path, "torch-zip", marker).rename(ckpt / CHECKPOINT_FILE)
    result = Result(metrics={"config": {"sigma": 30.0, "seed": 0}, "epoch": 2, "es_best_epoch": 2, "es_best_psnr": 25.0},
                    checkpoint=Checkpoint.from_directory(str(ckpt)), error=None, path=str(tmp_path))
    row = _finish_trial(exp, result)
    assert row["status"] == "ERROR" and row["genotype"] is None
    assert "checkpoint refused" in row["stop"] and "posix.system" in row["stop"]
    assert not (tmp_path / "runs").exists()  # no genotype.json, no history.json


YAML_PAYLOADS = {
    "apply": 'name: !!python/object/apply:os.system ["touch {m}"]\n',
    "new": "!!python/object/new:os.system [touch {m}]\n",
    "name-tag": "name: t\nsearch: {{patience: !!python/name:os.system }}\n",
    "module-tag": "name: !!python/module:os\n",
}


@pytest.mark.parametrize("how", [*YAML_PAYLOADS, "in-extends-parent", "in-set"])
def test_yaml_with_python_tags_is_refused(cli, make, tmp_path, marker, how):
    cfg = make.config(tmp_path / "c.yaml", tmp_path / "runs")
    extra = []
    if how in YAML_PAYLOADS:
        cfg.write_text(YAML_PAYLOADS[how].format(m=marker))
    elif how == "in-extends-parent":
        (tmp_path / "parent.yaml").write_text(YAML_PAYLOADS["apply"].format(m=marker))
        cfg.write_text("extends: parent.yaml\n" + cfg.read_text())
    else:
        extra = ["--set", f'name=!!python/object/apply:os.system ["touch {marker}"]']
    code, out, err = cli("run", cfg, *extra)
    assert code == 2 and "Traceback" not in out + err
    assert ("not valid YAML" if how == "in-set" else "malformed YAML") in err
    assert ("parent.yaml" if how == "in-extends-parent" else "c.yaml" if how != "in-set" else "--set") in err
    assert not (tmp_path / "runs").exists()


def _tar(path: Path, members) -> str:
    """A .tgz of (name, data, type, link) members; returns its sha256."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("attack", ["dotdot", "absolute", "symlink-then-write-through"])
def test_archives_cannot_write_outside_their_target(cli, tmp_path, marker, bsds_root, attack):
    """`hinas data fetch` with a checksum that matches: the archive itself is the attacker's."""
    real = sorted((bsds_root / "images" / "train").glob("*.jpg"))[0].read_bytes()
    prefix = "BSR/BSDS500/data/images/train"
    members = [(f"{prefix}/{i}.jpg", real, tarfile.REGTYPE, "") for i in range(3)]
    if attack == "dotdot":  # aimed at tmp_path/PWNED from every depth the extraction could sit at
        members += [("../" * k + "PWNED", b"x", tarfile.REGTYPE, "") for k in range(1, 6)]
    elif attack == "absolute":
        members += [(str(marker), b"x", tarfile.REGTYPE, "")]
    else:  # a link to the folder holding the marker, then a file written through the link
        members += [(f"{prefix}/out", b"", tarfile.SYMTYPE, str(tmp_path)), (f"{prefix}/out/PWNED", b"x", tarfile.REGTYPE, "")]
    digest = _tar(tmp_path / "evil.tgz", members)
    root = tmp_path / "target" / "bsds"
    code, out, err = cli("data", "fetch", "bsd500", "--root", root, "--url", f"file://{tmp_path / 'evil.tgz'}", "--sha256", digest)
    assert code == 1 and "Traceback" not in out + err
    assert "evil.tgz refused" in err and ("escapes the target" in err or "points outside the target" in err)
    assert not (tmp_path / "target").exists()  # nothing extracted, the root it created removed again


def test_an_image_cache_carrying_a_pickled_arrow_extension_type_runs_nothing(make, tmp_path, marker, bsds_root):
    """Arrow IPC files once unpickled `arrow.py_extension_type` fields (CVE-2023-47248)."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from hinas.datasets import load_bsd500

    root = make.mini_bsds(tmp_path / "bsds", bsds_root)
    cache = tmp_path / "cache"
    clean = load_bsd500("test", root, cache_dir=cache)
    (path,) = cache.glob("*.arrow")
    with pa.OSFile(str(path), "rb") as f:
        table = ipc.open_file(f).read_all()
    evil = {b"ARROW:extension:name": b"arrow.py_extension_type", b"ARROW:extension:metadata": pickle.dumps(Payload(marker))}
    schema = pa.schema([f.with_metadata(evil) if f.name == "pixels" else f for f in table.schema], metadata=table.schema.metadata)
    with pa.OSFile(str(path), "wb") as f, ipc.new_file(f, schema) as writer:
        writer.write_table(table.cast(schema))
    again = load_bsd500("test", root, cache_dir=cache)
    assert again.names == clean.names and all(np.array_equal(a, b) for a, b in zip(again.images, clean.images))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` 8-bit gray pixels: a few hundred bytes on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


def test_a_decompression_bomb_image_is_refused_by_hinas_denoise(cli, tmp_path):
    from hinas_core.models import build_model, save_model

    spec = {"kind": "dncnn", "depth": 3, "width": 4}
    model = save_model(tmp_path / "m.pt", spec, build_model(spec), {"sigma": 30})
    (tmp_path / "bomb.png").write_bytes(_png_header_only(60_000, 60_000))  # 3.6 G pixels
    code, out, err = cli("denoise", "--model", model, tmp_path / "bomb.png", tmp_path / "out.png")
    assert code == 2 and "Traceback" not in out + err
    assert "bomb.png is refused" in err and "decompression bomb" in err
    assert not (tmp_path / "out.png").exists()


def test_an_image_that_would_need_ghostscript_is_refused_by_hinas_denoise(cli, tmp_path, marker):
    """Pillow hands EPS to Ghostscript; hinas decodes only plain image formats, whatever the name."""
    from hinas_core.models import build_model, save_model

    spec = {"kind": "dncnn", "depth": 3, "width": 4}
    model = save_model(tmp_path / "m.pt", spec, build_model(spec), {"sigma": 30})
    (tmp_path / "noisy.png").write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"
                                        f"({marker}) (w) file closefile\nshowpage\n")
    code, out, err = cli("denoise", "--model", model, tmp_path / "noisy.png", tmp_path / "out.png")
    assert code == 2 and "Traceback" not in out + err
    assert "noisy.png is not a readable image file" in err and not (tmp_path / "out.png").exists()


# ---- the audit: every loader of a file in hinas, pinned -----------------------------------------
SOURCES = sorted(p for folder in ("hinas_core", "pipeline", "datasets", "hinas") for p in (REPO / folder).rglob("*.py"))


def _calls():
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                yield path.relative_to(REPO).as_posix(), ast.unparse(node.func), node


def test_audit_the_only_torch_load_is_weights_only_and_every_loader_uses_it():
    loads = [(where, node) for where, func, node in _calls() if func == "torch.load"]
    assert [where for where, _ in loads] == ["hinas_core/models.py"]
    (_, node), = loads
    assert any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True for k in node.keywords)
    users = {where for where, func, _ in _calls() if func == "load_tensors"}
    assert {"hinas_core/models.py", "pipeline/search_stage.py", "pipeline/retrain_stage.py", "pipeline/state.py"} <= users


def test_audit_nothing_unpickles_and_yaml_is_read_safely():
    from hinas.pipeline.experiment import _SafeUniqueLoader
    import yaml

    unsafe = {"pickle.load", "pickle.loads", "cloudpickle.load", "cloudpickle.loads", "dill.load", "joblib.load",
              "marshal.load", "marshal.loads", "shelve.open", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all",
              "eval", "exec", "np.load", "numpy.load"}
    found = [(where, func) for where, func, _ in _calls() if func in unsafe]
    assert not found
    yaml_loads = [(where, node) for where, func, node in _calls() if func == "yaml.load"]
    for where, node in yaml_loads:
        loader = next(k.value for k in node.keywords if k.arg == "Loader")
        assert ast.unparse(loader) == "_SafeUniqueLoader", where
    assert issubclass(_SafeUniqueLoader, yaml.SafeLoader)


def test_audit_archives_are_extracted_member_by_member_with_the_data_filter():
    extracts = [(where, node) for where, func, node in _calls() if func.endswith((".extractall", ".extract"))]
    assert [where for where, _ in extracts] == ["datasets/fetch.py"]
    (_, node), = extracts
    assert {k.arg for k in node.keywords} >= {"members", None}  # checked members; **{"filter": "data"}
    assert hasattr(tarfile, "data_filter")  # so that filter="data" is passed (Python >= 3.11.4)
    assert not [where for where, func, _ in _calls() if func.startswith("zipfile.ZipFile")]
