"""Property tests: no text given to the config loader or the genotype parser, *as the `hinas`
command reads them*, ends in a traceback.

The config side drives `cli._load` - what `hinas search/run/retrain` call first: the YAML file
(safe loader, `extends`), `--set` overrides, every key's validation, and the checks of the data,
output folder and resources. The genotype side drives `hinas space --genotype FILE` end to end.
Either the input is accepted, or the command prints one message (a line, maybe followed by an
indented list of files) and returns 2. (Function-level properties of the same parsers are in
tests/pipeline/test_experiment_config.py and tests/core/test_genotype.py.)
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hinas.pipeline.cli import _load, main
from hinas.pipeline.experiment import ExperimentConfig

pytestmark = pytest.mark.timeout(300)

BASE = {"name": "t", "space": {"preset": "tiny"},
        "search": {"max_epochs": 2, "warmup_epochs": 1, "batch_size": 2, "steps_per_epoch": 1},
        "data": {"dataset": "sample", "sigmas": [30], "patch_size": 32, "val_fraction": 0.2, "val_crop": 64},
        "resources": {"cpu": 1, "gpu": 0}}
OPS = ["conv", "sep", "dil", "def", "skip"]
GENOTYPE = {"format": 1, "cells": [[[["conv", 0], ["sep", 1]], [["dil", 1], ["skip", 2]]]], "levels": [0, 1], "widths": [4, 8, 16]}

# YAML made of the pieces that break YAML and configs: indentation, flow brackets, anchors,
# tags (including the Python ones a safe loader must refuse), odd scalars, section names.
TOKENS = ["name", "t", ": ", ":", " ", "\n", "  ", "\t", "- ", "[", "]", "{", "}", ", ", "'", '"', "#", "&a ", "*a",
          "<<: ", "!!python/object/apply:os.system ", "!!binary ", "!!str ", "!!int ", "---\n", "...\n", "? ", "| ", "> ",
          "%YAML 1.1\n", "@", "\x00", "\ufeff", "space", "search", "data", "resources", "preset", "tiny", "sigmas", "dataset",
          "sample", "bsd500", "sim", "root", "patch_size", "max_epochs", "warmup_epochs", "patience", "gpu", "cpu",
          "extends", "optuna", "seeds", "output_dir", "30", "-1", "0", "1.5", ".nan", ".inf", "1e9", "true", "null", "~"]
plausible = st.integers(-2, 120) | st.floats(-1, 2) | st.sampled_from(["tiny", "sample", "decrease", True, None, [30], [30, 50]])
junk = st.recursive(st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=True, allow_infinity=True)
                    | st.text(max_size=6), lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
value = st.one_of(plausible, plausible, junk)  # mostly values a user might type, some junk
section_keys = {
    "space": ["preset", "nodes", "layers", "base_width", "ops", "in_channels", "width_mode", "x"],
    "search": ["max_epochs", "warmup_epochs", "patience", "batch_size", "w_lr", "stop_rule", "y"],
    "data": ["dataset", "sigmas", "root", "patch_size", "val_fraction", "max_images", "val_crop", "channels", "augment",
             "metric", "z"],
    "resources": ["cpu", "gpu", "max_concurrent"],
}


@st.composite
def config_texts(draw):
    """A config file's text: a changed valid config, a mutated YAML text, or YAML-ish noise."""
    kind = draw(st.sampled_from(["changed", "changed", "changed", "mutated", "noise"]))
    if kind == "changed":  # a valid config with a few values replaced, dumped as block or flow YAML
        cfg = json.loads(json.dumps(BASE))
        for _ in range(draw(st.integers(0, 2))):
            section = draw(st.sampled_from([*section_keys, "top"]))
            if section == "top":
                cfg[draw(st.sampled_from(["name", "seeds", "space", "search", "optuna", "extends", "w"]))] = draw(value)
            elif isinstance(cfg.get(section), dict):
                cfg[section][draw(st.sampled_from(section_keys[section]))] = draw(value)
        return yaml.safe_dump(cfg, default_flow_style=draw(st.booleans()))
    if kind == "mutated":  # a valid YAML text with pieces inserted, cut out, or the tail lost
        text = yaml.safe_dump(BASE)
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, len(text)))
            j = draw(st.integers(i, min(len(text), i + 12)))
            text = text[:i] + draw(st.sampled_from(TOKENS + [""])) + text[j:]
        return text[: draw(st.integers(0, len(text)))] if draw(st.booleans()) else text
    return "".join(draw(st.lists(st.sampled_from(TOKENS), max_size=30)))


overrides = st.just([]) | st.lists(st.builds(lambda k, v: f"{k}={v}",
                               st.sampled_from(["search.patience", "data.sigmas", "data.patch_size", "name", "space",
                                                "space.nodes.x", "", "a..b"]),
                               st.sampled_from(["3", "40", "[30]", "[30", "[-1]", "{}", "!!python/object/apply:os.system [x]",
                                                "", "x=y", ".nan"])),
                     max_size=2)


def _one_message(err: str, prefix: str) -> bool:
    lines = err.rstrip("\n").splitlines()
    return bool(lines) and lines[0].startswith(prefix) and all(line.startswith("  ") for line in lines[1:])


@pytest.fixture
def folder(tmp_path):
    return tmp_path


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=config_texts(), sets=overrides)
def test_no_config_text_makes_the_cli_loader_raise(folder, text, sets, monkeypatch):
    monkeypatch.chdir(folder)  # relative paths in a config resolve here, never in the checkout
    path = folder / "c.yaml"
    path.write_text(text)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        exp = _load(argparse.Namespace(config=str(path), set=sets), "search", splits=("train",))
    if exp is None:
        assert _one_message(err.getvalue(), "hinas search: "), err.getvalue()
    else:
        assert isinstance(exp, ExperimentConfig) and not err.getvalue()
    assert sorted(p.name for p in folder.iterdir()) == ["c.yaml"]  # validation wrote nothing


leaf = (st.none() | st.booleans() | st.integers(-3, 6) | st.floats(allow_nan=True, allow_infinity=True)
        | st.sampled_from(["conv", "sep", "dil", "def", "skip", "none", "pool", ""]))
json_value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["format", "cells", "levels", "widths", "provenance", "x"]), inner, max_size=5), max_leaves=20)


def _paths(obj, here=()):
    yield here
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, here + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, here + (i,))


@st.composite
def genotype_files(draw):
    """A genotype file's bytes: a valid genotype with one part replaced, its JSON cut short,
    any JSON value, or bytes that are not text."""
    kind = draw(st.sampled_from(["valid", "changed", "cut", "any", "bytes"]))
    if kind == "valid":  # any well-formed genotype: 1-3 nodes, a level path, 1-3 widths
        nodes = []
        for n in range(draw(st.integers(1, 3))):
            a, b = draw(st.lists(st.integers(0, n + 1), min_size=2, max_size=2, unique=True))
            nodes.append([[draw(st.sampled_from(OPS)), a], [draw(st.sampled_from(OPS)), b]])
        widths = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
        levels, level = [], 0
        for _ in range(draw(st.integers(1, 3))):
            level = min(len(widths) - 1, max(0, level + draw(st.integers(-1, 1))))
            levels.append(level)
        return json.dumps({"cells": [nodes], "levels": levels, "widths": widths}).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "any":
        return json.dumps(draw(json_value)).encode()
    g = json.loads(json.dumps(GENOTYPE))
    text = json.dumps(g)
    if kind == "changed":
        where = draw(st.sampled_from([p for p in _paths(g) if p][::-1]))  # leaves first: they shrink better
        node = g
        for k in where[:-1]:
            node = node[k]
        node[where[-1]] = draw(leaf | json_value)  # often another op or index: still valid
        return json.dumps(g).encode()
    return text[: draw(st.integers(0, len(text) - 1))].encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=genotype_files())
def test_no_genotype_file_makes_hinas_space_raise(folder, data):
    path = folder / "g.json"
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["space", "--preset", "tiny", "--genotype", str(path), "--width", "2"])
    assert code in (0, 2)
    if code == 2:
        assert _one_message(err.getvalue(), "hinas space: ") and not out.getvalue(), err.getvalue()
    else:
        assert "derived parameters" in out.getvalue() and not err.getvalue()
