import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hinas_core import Genotype, GenotypeError, known_genotypes

CELL = [[["conv", 0], ["sep", 1]], [["dil", 1], ["skip", 2]]]


def make(**kw):
    args = dict(cells=[CELL], levels=[0, 1, 2, 1], widths=[4, 8, 16])
    args.update(kw)
    return Genotype(**args)


def test_json_round_trip(tmp_path):
    g = make(provenance={"sigma": 30})
    assert Genotype.from_json(g.to_json()) == g
    path = g.save(tmp_path / "sub" / "genotype.json")
    loaded = Genotype.load(path)
    assert loaded == g and loaded.provenance == {"sigma": 30}
    assert not list(path.parent.glob(".*tmp"))  # the atomic write left no temp file


def test_untied_cells_round_trip():
    g = make(cells=[CELL] * 4)
    assert Genotype.from_dict(json.loads(g.to_json())) == g
    assert g.cell(3) == g.cells[3]


def test_known_genotypes_load_by_name():
    assert "example_denoise" in known_genotypes()
    g = Genotype.load("example_denoise")
    assert g.num_nodes == 5 and g.num_layers == 4


@pytest.mark.parametrize("kwargs, field", [
    (dict(cells=[[[["pool", 0], ["sep", 1]]]]), r"cells\[0\]\[0\]\[0\].*unknown op 'pool'"),
    (dict(cells=[[[["none", 0], ["sep", 1]]]]), "unknown op 'none'"),
    (dict(cells=[[[["conv", 0], ["sep", 2]]]]), r"cells\[0\]\[0\]\[1\].*input index 2"),
    (dict(cells=[[[["conv", -1], ["sep", 1]]]]), "input index -1"),
    (dict(cells=[[[["conv", 1], ["sep", 1]]]]), "distinct inputs"),
    (dict(cells=[[[["conv", 0]]]]), "exactly two edges"),
    (dict(cells=[[[["conv", 0, 1], ["sep", 1]]]]), "an edge is"),
    (dict(cells=[CELL, CELL]), "2 cells for 4 layers"),
    (dict(cells=[]), "cells"),
    (dict(levels=[0, 2, 1, 0]), r"levels\[1\].*jump"),
    (dict(levels=[2, 1, 1, 1]), r"levels\[0\].*jump"),
    (dict(levels=[0, 1, 2, 3]), r"levels\[3\].*outside"),
    (dict(levels=[]), "levels"),
    (dict(levels=[0, 1.0, 1, 1]), r"levels\[1\]"),
    (dict(widths=[4, 0, 16]), "widths"),
    (dict(widths="4,8"), "widths"),
])
def test_malformed_genotypes_are_rejected_naming_the_field(kwargs, field):
    with pytest.raises(GenotypeError, match=field):
        make(**kwargs)


@pytest.mark.parametrize("text, field", [
    ('{"cells": [', "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"cells": [], "levels": [0]}', "missing field"),
    ('{"cells": [], "levels": [0], "widths": [1], "extra": 1}', r"unknown field\(s\) \['extra'\]"),
    ('{"format": 99, "cells": [], "levels": [0], "widths": [1]}', "format"),
])
def test_malformed_json_is_rejected(text, field):
    with pytest.raises(GenotypeError, match=field):
        Genotype.from_json(text)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(GenotypeError, match="does not exist"):
        Genotype.load(tmp_path / "nope.json")
    (tmp_path / "cut.json").write_text(make().to_json()[:40])
    with pytest.raises(GenotypeError, match="cut.json.*not valid JSON"):
        Genotype.load(tmp_path / "cut.json")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 5) | st.floats(allow_nan=True) | st.sampled_from(["conv", "sep", "none", "x"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["cells", "levels", "widths", "format", "provenance", "x"]), inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_no_input_gives_anything_but_a_genotype_or_a_genotype_error(data):
    try:
        Genotype.from_json(json.dumps(data))
    except GenotypeError:
        pass


def test_table3_cell_edits():
    from hinas_core.genotype import replace_ops, rewire

    g = Genotype.load("example_denoise")
    r1 = replace_ops(g, {"conv": "def"})
    assert "conv" not in r1.ops_used() and r1.ops_used().count("def") == g.ops_used().count("def") + g.ops_used().count("conv")
    r2 = rewire(g)
    assert r2.ops_used() == g.ops_used() or sorted(r2.ops_used()) == sorted(g.ops_used())
    assert r2.cells != g.cells and r2.levels == g.levels
    assert Genotype.from_json(r2.to_json()) == r2  # still valid
    # A cell whose nodes all read the two cell inputs is rewired too (each node after the first).
    plain = Genotype([[[("conv", 0), ("dil", 1)]] * 3], [0, 1], [4, 8])
    rewired = rewire(plain)
    assert [sorted(i for _, i in node) for node in rewired.cells[0]] == [[0, 1], [1, 2], [1, 2]]
    assert [sorted(op for op, _ in node) for node in rewired.cells[0]] == [["conv", "dil"]] * 3


def test_cell_edits_by_name():
    from hinas_core.genotype import GenotypeError, apply_edit, replace_ops, rewire

    g = Genotype.load("example_denoise")
    assert apply_edit(g, None) is g
    assert apply_edit(g, "r1") == replace_ops(g, {"conv": "def"}) and apply_edit(g, "r2") == rewire(g)
    with pytest.raises(GenotypeError, match="r3"):
        apply_edit(g, "r3")
