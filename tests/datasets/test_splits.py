"""The Train-W / Train-A / Validation-V search split."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from hinas.datasets import DatasetError, search_split


def _names(n):
    return [f"train/{i:06d}.jpg" for i in range(n)]


def test_bsd500_sizes_and_determinism():
    s = search_split(_names(300), seed=0)
    assert (len(s.train_w), len(s.train_a), len(s.val)) == (147, 147, 6)
    assert s == search_split(_names(300), seed=0)
    assert s != search_split(_names(300), seed=1)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(3, 1500), seed=st.integers(0, 2**32), frac=st.floats(0.005, 0.5))
def test_parts_are_disjoint_and_cover(n, seed, frac):
    s = search_split(_names(n), seed, frac)
    parts = [set(s.train_w), set(s.train_a), set(s.val)]
    assert sum(map(len, parts)) == n and set().union(*parts) == set(range(n))
    assert len(s.val) >= 1 and 0 <= len(s.train_w) - len(s.train_a) <= 1 and len(s.train_a) >= 1


def test_assignment_follows_names_not_listing_order():
    names = _names(50)
    shuffled = names[:]
    random.Random(3).shuffle(shuffled)
    a, b = search_split(names, 7), search_split(shuffled, 7)
    assert {names[i] for i in a.val} == {shuffled[i] for i in b.val}
    assert {names[i] for i in a.train_w} == {shuffled[i] for i in b.train_w}


def test_apply_names_the_parts(mini_bsds):
    from hinas.datasets import load_bsd500

    train = load_bsd500("train", mini_bsds)
    w, a, v = search_split(train, seed=0).apply(train)
    assert (w.name, a.name, v.name) == ("BSD500/train/train-W", "BSD500/train/train-A", "BSD500/train/val-V")
    assert len(w) + len(a) + len(v) == len(train) and len(v) == 1


@pytest.mark.parametrize("n,frac", [(2, 0.02), (10, 0.0), (10, 1.0)])
def test_bad_split_settings(n, frac):
    with pytest.raises(DatasetError):
        search_split(_names(n), 0, frac)
