import itertools

import numpy as np
import pytest
import torch

from hinas_core import derive_cell, num_edges, path_probability, viterbi_path

OPS6 = ["conv", "sep", "dil", "def", "skip", "none"]


def rows_of(node):
    start = num_edges(node)
    return range(start, start + node + 2)


def brute_force_cell(alpha, op_names, num_nodes):
    """Every pair of inputs per node; keep the pair whose weaker strength is largest."""
    names = list(op_names)
    keep = [k for k, n in enumerate(names) if n != "none"]
    out = []
    for node in range(num_nodes):
        rows = list(rows_of(node))
        strength = {j: max(alpha[r][k] for k in keep) for j, r in enumerate(rows)}
        best = max(itertools.combinations(range(node + 2), 2),
                   key=lambda p: (min(strength[p[0]], strength[p[1]]), max(strength[p[0]], strength[p[1]]), -p[0], -p[1]))
        out.append(sorted([(names[max(keep, key=lambda k: (alpha[rows[j]][k], -k))], j) for j in best], key=lambda e: e[1]))
    return out


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("num_nodes", [1, 2, 5])
def test_derive_cell_matches_brute_force(seed, num_nodes):
    rng = np.random.default_rng(seed)
    alpha = rng.random((num_edges(num_nodes), len(OPS6)))
    assert derive_cell(alpha, OPS6, num_nodes) == brute_force_cell(alpha, OPS6, num_nodes)


def test_dominant_none_is_never_chosen():
    n = 3
    alpha = np.full((num_edges(n), 6), 0.01)
    alpha[:, OPS6.index("none")] = 100.0
    alpha[rows_of(2)[3], OPS6.index("dil")] = 0.5  # node 2, input 3 (node 1): a clear winner
    cell = derive_cell(alpha, OPS6, n)
    assert all(op != "none" for node in cell for op, _ in node)
    assert ("dil", 3) in cell[2]
    # Dominant none on one input does not demote it: only non-none weights rank inputs.
    alpha2 = np.zeros((num_edges(1), 3))
    alpha2[0] = [0.9, 0.1, 50.0]
    alpha2[1] = [0.5, 0.4, 0.0]
    assert derive_cell(alpha2, ["conv", "skip", "none"], 1) == [[("conv", 0), ("conv", 1)]]


def test_ties_go_to_lower_input_and_first_listed_op():
    n = 2
    alpha = np.ones((num_edges(n), 6))
    cell = derive_cell(alpha, OPS6, n)
    assert cell == [[("conv", 0), ("conv", 1)], [("conv", 0), ("conv", 1)]]


def test_derive_cell_accepts_tensors_and_checks_shape():
    alpha = torch.rand(num_edges(2), 6)
    assert len(derive_cell(alpha, OPS6, 2)) == 2
    with pytest.raises(ValueError, match="shape"):
        derive_cell(np.zeros((4, 6)), OPS6, 2)
    with pytest.raises(ValueError, match="NaN"):
        derive_cell(np.full((num_edges(1), 6), np.nan), OPS6, 1)


def brute_force_path(t):
    num_layers, num_levels, _ = t.shape
    best = max(itertools.product(range(num_levels), repeat=num_layers), key=lambda p: path_probability(t, p))
    return path_probability(t, best)


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (3, 2), (4, 3), (5, 4)])
def test_viterbi_matches_brute_force(seed, shape):
    rng = np.random.default_rng(seed)
    t = rng.random((shape[0], shape[1], 3))
    path = viterbi_path(t)
    assert len(path) == shape[0]
    assert path_probability(t, path) == pytest.approx(brute_force_path(t), rel=1e-12)
    assert path_probability(t, path) > 0


def test_viterbi_is_not_greedy():
    # Greedy would go up at layer 0 (0.6) and then be stuck with 0.1 moves.
    t = np.zeros((2, 2, 3))
    t[0, 0] = [0, 0.4, 0.6]
    t[1, 0] = [0, 1.0, 0.0]
    t[1, 1] = [0.1, 0.1, 0]
    assert viterbi_path(t) == [0, 0]


def test_masked_moves_are_never_chosen_whatever_their_value():
    t = np.full((4, 3, 3), 0.01)
    t[:, 0, 0] = 1e9  # down from the lowest level
    t[:, 2, 2] = 1e9  # up from the highest level
    for _ in range(3):
        path = viterbi_path(t)
        assert all(0 <= s < 3 for s in path)
        assert path_probability(t, path) == pytest.approx(brute_force_path(t))


def test_viterbi_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        viterbi_path(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        viterbi_path(-np.ones((2, 3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        viterbi_path(np.full((2, 3, 3), np.nan))
