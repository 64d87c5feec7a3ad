"""Bad input through the real `hinas` command: one clear line, a non-zero exit, nothing written.

Every case runs `hinas ...` in this process (`cli.main`) on a real crafted file or config and
asserts: the exit code is non-zero; stderr is exactly one line that starts with the command's
prefix and names the offending key, file or value; no traceback anywhere; and no file under the
test's folder or the crafted inputs was created, changed or removed (validation happens before
any work). A few cases also run as real subprocesses. Function-level checks of the same loaders
live beside them (tests/pipeline/test_experiment_config.py, tests/core/test_genotype.py,
tests/datasets/test_bad_input.py); these drive the command users type.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import types

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.timeout(120)  # a case that slipped past validation would start real work

TINY_CELL = [[["conv", 0], ["sep", 1]], [["dil", 1], ["skip", 2]]]
TINY_GENOTYPE = {"format": 1, "cells": [TINY_CELL], "levels": [0, 1], "widths": [4, 8, 16]}


@pytest.fixture(scope="session")
def crafted(tmp_path_factory, bsds_root):
    """The bad files, made once: genotypes, model files and images a user could hand to hinas."""
    from hinas.datasets.images import write_png
    from hinas_core.models import build_model, save_model

    d = tmp_path_factory.mktemp("crafted")

    def genotype(name, **changes):
        (d / name).write_text(json.dumps({**TINY_GENOTYPE, **changes}))

    genotype("good_genotype.json")
    (d / "truncated_genotype.json").write_text(json.dumps(TINY_GENOTYPE, indent=2)[:70])
    genotype("unknown_op_genotype.json", cells=[[[["conv", 0], ["pool", 1]], [["dil", 1], ["skip", 2]]]])
    genotype("bad_index_genotype.json", cells=[[[["conv", 0], ["sep", 5]], [["dil", 1], ["skip", 2]]]])
    genotype("jump_genotype.json", levels=[0, 2])
    (d / "deep_genotype.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "yaml_genotype.json").write_text("cells:\n  - conv\n")

    dncnn = {"kind": "dncnn", "depth": 3, "width": 4}
    save_model(d / "good.pt", dncnn, build_model(dncnn), {"sigma": 30})
    save_model(d / "other_arch.pt", {**dncnn, "depth": 4}, build_model({**dncnn, "depth": 5}), {"sigma": 30})
    save_model(d / "rgb.pt", {**dncnn, "in_channels": 3}, build_model({**dncnn, "in_channels": 3}), {"sigma": 30})
    save_model(d / "pairs.pt", dncnn, build_model(dncnn), {"sigma": 0.0})
    good = (d / "good.pt").read_bytes()
    (d / "truncated.pt").write_bytes(good[: len(good) // 2])
    (d / "text.pt").write_text("this is not a model\n")
    torch.save(build_model(dncnn).state_dict(), d / "state_dict.pt")

    (d / "text.png").write_text("I am a text file with a .png name\n")
    write_png(d / "small.png", np.full((16, 16), 120, np.uint8))
    jpg = sorted((bsds_root / "images" / "test").glob("*.jpg"))[0].read_bytes()
    (d / "truncated.jpg").write_bytes(jpg[: len(jpg) // 3])
    (d / "not_a_tar.tgz").write_text("<html>404 not found</html>\n")
    with tarfile.open(d / "cut.tgz", "w:gz") as tar:  # a real archive of real images, cut mid-way
        for p in sorted((bsds_root / "images" / "train").glob("*.jpg"))[:4]:
            tar.add(p, f"BSR/BSDS500/data/images/train/{p.name}")
    data = (d / "cut.tgz").read_bytes()
    (d / "cut.tgz").write_bytes(data[: len(data) // 2])
    return d


@pytest.fixture
def c(tmp_path, crafted, bsds_root, make):
    """What a case needs: its folder, the crafted files, the real images, a config writer."""
    out = tmp_path / "runs"
    return types.SimpleNamespace(
        tmp=tmp_path, out=out, x=crafted, bsds=bsds_root, make=make,
        cfg=lambda **changes: make.config(tmp_path / "c.yaml", out, **changes))


def _text(c, name, text):
    (c.tmp / name).write_text(text)
    return c.tmp / name


def _bsd_missing(c):
    root = c.make.bsds_links(c.tmp / "bsds", c.bsds)
    victim = sorted((root / "images" / "test").iterdir())[0]
    victim.unlink()
    return root, victim.name


def _bsd_truncated(c):
    root = c.make.bsds_links(c.tmp / "bsds", c.bsds)
    victim = sorted((root / "images" / "val").iterdir())[3]
    data = victim.read_bytes()
    victim.unlink()
    victim.write_bytes(data[: len(data) // 2])
    return root, victim.name


def _pairs(c, **kw):
    return c.make.stored_pairs(c.tmp / "pairs", c.bsds, **kw)


def _empty_train(c):
    root = _pairs(c)
    for p in (root / "train").rglob("*.png"):
        p.unlink()
    return root


def _text_png(c):
    root = _pairs(c)
    (root / "test" / "input" / "0001.png").write_text("not an image\n")
    return root


def _existing_experiment(c):
    (c.out / "t" / "search").mkdir(parents=True)
    (c.out / "t" / "search_summary.json").write_text("{}")
    return ["run", c.cfg()]


def _sim_out_exists(c):
    (c.tmp / "sim").mkdir()
    (c.tmp / "sim" / "keep.txt").write_text("mine")
    return ["data", "make-sim", "--out", c.tmp / "sim", "--bsds-root", c.make.mini_bsds(c.tmp / "mb", c.bsds)]


def _finished_evaluation(c):
    (c.out / "t" / "evaluation").mkdir(parents=True)
    (c.out / "t" / "evaluation" / "summary.json").write_text(json.dumps([{
        "label": "hinas-sigma30-seed0", "kind": "hinas", "sigma": 30.0, "params": 1000, "psnr_patch": 25.0, "ssim_patch": 0.7,
        "psnr_whole": 25.1, "ssim_whole": 0.71, "inference_s": 0.1, "images": 1}]))
    (c.tmp / "out-is-a-folder").mkdir()
    return ["report", c.cfg(), "--out", c.tmp / "out-is-a-folder"]


def _truncated_summary(c):
    (c.out / "t" / "evaluation").mkdir(parents=True)
    (c.out / "t" / "evaluation" / "summary.json").write_text('[{"label": "hinas-sigma30-seed0", "sigma": 3')
    return ["report", c.cfg(), "--out", c.tmp / "report.md"]


# (id, setup -> argv, words the error line must contain, exit code)
CASES = [
    # --- the experiment config: YAML, keys, types, ranges (hinas run / hinas search) ---
    ("yaml-unclosed-bracket", lambda c: ["run", _text(c, "c.yaml", "name: t\nsearch: {max_epochs: [1,\n")],
     ["c.yaml", "malformed YAML at line"], 2),
    ("yaml-tab-indent", lambda c: ["search", _text(c, "c.yaml", "name: t\nsearch:\n\tmax_epochs: 3\n")],
     ["c.yaml", "malformed YAML at line 3"], 2),
    ("yaml-duplicate-section", lambda c: ["run", _text(c, "c.yaml", "name: t\nsearch: {patience: 3}\nsearch: {max_epochs: 4}\n")],
     ["c.yaml", "'search' is given twice", "line 3"], 2),
    ("config-missing", lambda c: ["run", c.tmp / "nope.yaml"], ["nope.yaml", "does not exist"], 2),
    ("config-is-a-folder", lambda c: ["search", c.tmp], ["cannot be read", "Is a directory"], 2),
    ("config-empty", lambda c: ["run", _text(c, "c.yaml", "# nothing here\n")], ["c.yaml", "empty"], 2),
    ("config-a-list", lambda c: ["run", _text(c, "c.yaml", "- name: t\n")], ["must be a mapping", "list"], 2),
    ("unknown-top-level-key", lambda c: ["search", c.cfg(serach={"patience": 3})], ["unknown top-level key", "'serach'"], 2),
    ("unknown-section-key", lambda c: ["run", c.cfg(search={"epochs": 3})], ["search: unknown key", "'epochs'"], 2),
    ("missing-name", lambda c: ["run", c.cfg(name=None)], ["name:", "None"], 2),
    ("mistyped-batch-size", lambda c: ["run", c.cfg(search={"batch_size": "12"})], ["search.batch_size", "'12'"], 2),
    ("mistyped-section", lambda c: ["run", c.cfg(search=[])], ["search: expected a mapping", "list"], 2),
    ("sigma-zero", lambda c: ["run", c.cfg(data={"sigmas": [30, 0]})], ["data.sigmas", "> 0", "got 0"], 2),
    ("sigma-negative", lambda c: ["search", c.cfg(), "--set", "data.sigmas=[-15]"], ["data.sigmas", "-15"], 2),
    ("epochs-negative", lambda c: ["run", c.cfg(search={"max_epochs": -1})], ["search.max_epochs", "-1"], 2),
    ("warmup-not-below-epochs", lambda c: ["search", c.cfg(search={"warmup_epochs": 2})],
     ["search.warmup_epochs", "search.max_epochs = 2"], 2),
    ("gpu-fraction-above-1", lambda c: ["run", c.cfg(resources={"gpu": 1.5})], ["resources.gpu", "1.5"], 2),
    ("gpu-on-a-cpu-machine", lambda c: ["run", c.cfg(resources={"gpu": 1})], ["resources.gpu", "this machine has 0"], 2),
    ("cpu-above-the-machine", lambda c: ["search", c.cfg(resources={"cpu": 4096})], ["resources.cpu", "4096"], 2),
    ("patience-N-zero", lambda c: ["search", c.cfg(search={"patience": 0})], ["search.patience", "got 0"], 2),
    ("nodes-zero", lambda c: ["run", c.cfg(space={"preset": "tiny", "nodes": 0})], ["nodes", "got 0"], 2),
    ("in-channels-rgb", lambda c: ["run", c.cfg(space={"preset": "tiny", "in_channels": 3})], ["space.in_channels", "got 3"], 2),
    ("patch-below-11", lambda c: ["run", c.cfg(data={"patch_size": 8})], ["data.patch_size", "got 8"], 2),
    ("set-without-equals", lambda c: ["run", c.cfg(), "--set", "search.patience"], ["search.patience", "key=value"], 2),
    ("set-malformed-value", lambda c: ["search", c.cfg(), "--set", "data.sigmas=[30"], ["data.sigmas=[30", "not valid YAML"], 2),
    ("extends-missing-parent", lambda c: ["run", _text(c, "c.yaml", "extends: base.yaml\nname: t\n")], ["base.yaml", "does not exist"], 2),
    ("output-dir-is-a-file", lambda c: ["run", c.cfg(output_dir=str(_text(c, "afile", "x")))], ["output_dir", "afile", "not a writable folder"], 2),
    ("experiment-exists", _existing_experiment, ["already exists", "--resume", "--overwrite"], 2),
    # --- the data a config points at ---
    ("bsd500-root-missing", lambda c: ["run", c.cfg(data={"dataset": "bsd500", "root": str(c.tmp / "nowhere")})],
     ["nowhere", "does not exist"], 2),
    ("bsd500-image-missing", lambda c: ["run", c.cfg(data={"dataset": "bsd500", "root": str(_bsd_missing(c)[0])})],
     ["1 of 500 files", "missing: test/"], 2),
    ("bsd500-image-truncated", lambda c: ["search", c.cfg(data={"dataset": "bsd500", "root": str(_bsd_truncated(c)[0])})],
     ["1 of 500 files", "truncated?): val/"], 2),
    ("sim-root-missing-info", lambda c: ["run", c.cfg(data={"dataset": "sim", "root": str(c.tmp)})], ["DATASET.json", "missing"], 2),
    ("sim-root-of-another-kind", lambda c: ["run", c.cfg(data={"dataset": "sim", "root": str(_pairs(c, kind="rain-standin"))})],
     ["'rain-standin' dataset", "expected 'sim'"], 2),
    ("sim-empty-train-split", lambda c: ["run", c.cfg(data={"dataset": "sim", "root": str(_empty_train(c))})],
     ["train", "empty split"], 2),
    ("sim-png-that-is-text", lambda c: ["run", c.cfg(data={"dataset": "sim", "root": str(_text_png(c))})],
     ["0001.png", "not a readable image file"], 2),
    ("image-smaller-than-patch", lambda c: ["run", c.cfg(data={"dataset": "sim", "root": str(_pairs(c, size=16)), "patch_size": 64})],
     ["(16x16) is smaller than patch_size=64"], 2),
    ("sample-patch-above-images", lambda c: ["search", c.cfg(data={"patch_size": 2000})], ["is smaller than patch_size=2000"], 2),
    ("too-few-training-images", lambda c: ["run", c.cfg(data={"max_images": 2})], ["at least 3 training images", "got 2"], 2),
    # --- genotype files (hinas retrain --genotype, hinas space --genotype) ---
    ("genotype-truncated", lambda c: ["retrain", c.cfg(), "--genotype", c.x / "truncated_genotype.json"],
     ["truncated_genotype.json", "not valid JSON"], 2),
    ("genotype-unknown-op", lambda c: ["retrain", c.cfg(), "--genotype", c.x / "unknown_op_genotype.json"],
     ["unknown_op_genotype.json", "unknown op 'pool'"], 2),
    ("genotype-wrong-index", lambda c: ["retrain", c.cfg(), "--genotype", c.x / "bad_index_genotype.json"],
     ["cells[0][0][1]", "input index 5"], 2),
    ("genotype-level-jump", lambda c: ["retrain", c.cfg(), "--genotype", c.x / "jump_genotype.json"],
     ["levels[1]", "jump from level 0 to 2"], 2),
    ("genotype-missing", lambda c: ["retrain", c.cfg(), "--genotype", c.tmp / "gone.json"], ["gone.json", "does not exist"], 2),
    ("genotype-other-preset", lambda c: ["retrain", c.cfg(space={"preset": "journal"}), "--genotype", "example_denoise"],
     ["['def']", "preset 'journal'"], 2),
    ("retrain-sigma-negative", lambda c: ["retrain", c.cfg(), "--genotype", c.x / "good_genotype.json", "--sigma", "-5"],
     ["--sigma", "-5"], 2),
    ("retrain-sigma-on-pairs", lambda c: ["retrain", c.cfg(data={"dataset": "sim", "root": str(_pairs(c))}),
                                          "--genotype", c.x / "good_genotype.json", "--sigma", "25"],
     ["--sigma", "sim dataset carries its own degradation"], 2),
    ("space-genotype-other-preset", lambda c: ["space", "--preset", "journal", "--genotype", "example_denoise"],
     ["['def']", "preset 'journal'"], 2),
    ("space-genotype-nested-too-deep", lambda c: ["space", "--genotype", c.x / "deep_genotype.json"],
     ["deep_genotype.json", "nested too deeply"], 2),
    ("space-genotype-is-yaml", lambda c: ["space", "--genotype", c.x / "yaml_genotype.json"],
     ["yaml_genotype.json", "not valid JSON"], 2),
    ("space-width-zero", lambda c: ["space", "--preset", "tiny", "--genotype", c.x / "good_genotype.json", "--width", "0"],
     ["--width", "got 0"], 2),
    ("space-unknown-preset", lambda c: ["space", "--preset", "huge"], ["unknown space preset 'huge'"], 2),
    # --- model files (hinas evaluate --model, hinas denoise --model) ---
    ("model-missing", lambda c: ["evaluate", c.cfg(), "--model", c.tmp / "gone.pt"], ["gone.pt", "does not exist"], 2),
    ("model-is-text", lambda c: ["evaluate", c.cfg(), "--model", c.x / "text.pt"], ["text.pt", "not a PyTorch file"], 2),
    ("model-truncated", lambda c: ["evaluate", c.cfg(), "--model", c.x / "truncated.pt"], ["truncated.pt", "cannot be read"], 2),
    ("model-other-architecture", lambda c: ["evaluate", c.cfg(), "--model", c.x / "other_arch.pt"],
     ["other_arch.pt", "do not fit the architecture"], 2),
    ("model-plain-state-dict", lambda c: ["evaluate", c.cfg(), "--model", c.x / "state_dict.pt"],
     ["state_dict.pt", "not a hinas model file"], 2),
    ("model-rgb-on-gray-data", lambda c: ["evaluate", c.cfg(), "--model", c.x / "rgb.pt"], ["rgb.pt", "3-channel"], 2),
    ("model-without-noise-level", lambda c: ["evaluate", c.cfg(), "--model", c.x / "pairs.pt"], ["pairs.pt", "give --sigma"], 2),
    ("evaluate-sigma-negative", lambda c: ["evaluate", c.cfg(), "--model", c.x / "good.pt", "--sigma", "-5"], ["--sigma", "-5"], 2),
    ("evaluate-second-model-bad", lambda c: ["evaluate", c.cfg(), "--model", c.x / "good.pt", "--model", c.x / "text.pt"],
     ["text.pt"], 2),
    ("denoise-input-is-text", lambda c: ["denoise", "--model", c.x / "good.pt", c.x / "text.png", c.tmp / "o.png"],
     ["text.png", "not a readable image file"], 2),
    ("denoise-input-truncated-jpeg", lambda c: ["denoise", "--model", c.x / "good.pt", c.x / "truncated.jpg", c.tmp / "o.png"],
     ["truncated.jpg", "truncated"], 2),
    ("denoise-input-missing", lambda c: ["denoise", "--model", c.x / "good.pt", c.tmp / "gone.png", c.tmp / "o.png"],
     ["gone.png", "does not exist"], 2),
    ("denoise-model-other-architecture", lambda c: ["denoise", "--model", c.x / "other_arch.pt", c.x / "text.png", c.tmp / "o.png"],
     ["other_arch.pt", "do not fit"], 2),
    ("denoise-model-truncated", lambda c: ["denoise", "--model", c.x / "truncated.pt", c.x / "text.png", c.tmp / "o.png"],
     ["truncated.pt", "cannot be read"], 2),
    # --- hinas report ---
    ("report-without-evaluation", lambda c: ["report", c.cfg()], ["evaluation/summary.json", "run `hinas run`"], 2),
    ("report-truncated-summary", _truncated_summary, ["summary.json", "cannot be read"], 2),
    ("report-out-is-a-folder", _finished_evaluation, ["--out", "out-is-a-folder", "Is a directory"], 2),
    ("denoise-output-is-a-folder", lambda c: (c.tmp / "outdir").mkdir() or
     ["denoise", "--model", c.x / "good.pt", c.x / "small.png", c.tmp / "outdir"], ["outdir", "is a folder"], 2),
    ("denoise-output-under-a-file", lambda c: ["denoise", "--model", c.x / "good.pt", c.x / "small.png", c.x / "good.pt" / "o.png"],
     ["good.pt", "is a file"], 2),
    ("denoise-sigma-zero", lambda c: ["denoise", "--sigma", "0", c.x / "small.png", c.tmp / "o.png"], ["--sigma", "> 0"], 2),
    # --- hinas data ---
    ("data-check-root-missing", lambda c: ["data", "check", "bsd500", "--root", c.tmp / "nowhere"], ["nowhere", "does not exist"], 1),
    ("data-check-no-root", lambda c: ["data", "check", "bsd500"], ["--root", "HINAS_BSDS500_ROOT"], 1),
    ("data-check-truncated-image", lambda c: ["data", "check", "bsd500", "--root", _bsd_truncated(c)[0]],
     ["1 of 500 files", "truncated?): val/"], 1),
    ("make-sim-out-exists", _sim_out_exists, ["sim", "already exists"], 1),
    ("make-sim-workers-zero", lambda c: ["data", "make-sim", "--out", c.tmp / "sim", "--workers", "0", "--bsds-root", c.bsds],
     ["--workers 0"], 1),
    ("make-sim-crop-above-images", lambda c: ["data", "make-sim", "--out", c.tmp / "sim", "--crop", "600", "--train", "2",
                                              "--test", "1", "--bsds-root", c.make.mini_bsds(c.tmp / "mb", c.bsds)],
     ["smaller than crop=600"], 1),
    ("make-rain-no-pairs", lambda c: ["data", "make-rain-standin", "--out", c.tmp / "rain", "--train", "0", "--test", "0",
                                      "--bsds-root", c.bsds], ["--train 0 --test 0"], 1),
    ("fetch-not-a-tar", lambda c: ["data", "fetch", "bsd500", "--root", c.tmp / "bsds", "--url", f"file://{c.x / 'not_a_tar.tgz'}"],
     ["not_a_tar.tgz", "not a readable tar archive"], 1),
    ("fetch-truncated-tar", lambda c: ["data", "fetch", "bsd500", "--root", c.tmp / "bsds", "--url", f"file://{c.x / 'cut.tgz'}"],
     ["cut.tgz", "truncated or damaged"], 1),
    ("fetch-url-missing", lambda c: ["data", "fetch", "bsd500", "--root", c.tmp / "bsds", "--url", f"file://{c.tmp / 'gone.tgz'}"],
     ["gone.tgz", "failed"], 1),
]


# Cases known to fail (strict xfail: fixing one turns its test red, as a reminder to drop it).
KNOWN_GAPS: dict = {}


@pytest.mark.parametrize("setup, words, code", [
    pytest.param(*case[1:], id=case[0], marks=[pytest.mark.xfail(reason=KNOWN_GAPS[case[0]], strict=True)]
                 if case[0] in KNOWN_GAPS else []) for case in CASES])
def test_bad_input_is_one_clear_error_and_writes_nothing(cli, c, setup, words, code):
    argv = setup(c)
    before = c.make.snapshot(c.tmp, c.x)
    got, out, err = cli(*argv)
    assert got == code, (got, out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    prefix = "error:" if argv[0] == "data" else f"hinas {argv[0]}:"
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert c.make.snapshot(c.tmp, c.x) == before, "a rejected command wrote, changed or removed files"


def test_there_are_at_least_30_distinct_cases():
    assert len({case[0] for case in CASES}) == len(CASES) >= 30 + len(KNOWN_GAPS)


@pytest.mark.parametrize("argv, words", [
    (["evaluate", "c.yaml"], ["the following arguments are required: --model"]),
    (["retrain", "c.yaml", "--genotype", "g.json", "--sigma", "thirty"], ["--sigma", "'thirty'"]),
], ids=["evaluate-without-model", "sigma-not-a-number"])
def test_usage_errors_are_argparse_messages(cli, argv, words):
    code, out, err = cli(*argv)
    last = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in out + err
    assert last.startswith(f"hinas {argv[0]}: error:") and all(w in last for w in words)


@pytest.mark.parametrize("case", ["yaml-duplicate-section"])
def test_bad_input_in_a_real_process(c, case):
    """The same through `python -m hinas.pipeline.cli`: the process's exit status and stderr
    (one case: a process start costs seconds)."""
    setup, words, code = next(x[1:] for x in CASES if x[0] == case)
    argv = [str(a) for a in setup(c)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "hinas.pipeline.cli", *argv], cwd=c.tmp, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == code and "Traceback" not in done.stdout + done.stderr
    line, = done.stderr.strip().splitlines()
    assert all(w in line for w in words)
