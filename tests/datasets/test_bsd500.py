"""BSD500 splits on the real images, and root resolution."""
from __future__ import annotations

import numpy as np
import pytest

from hinas.datasets import DatasetError, load_bsd500
from hinas.datasets.bsd500 import bsd500_files


def test_real_splits_have_paper_sizes(bsds_root):
    train, test = load_bsd500("train", bsds_root), load_bsd500("test", bsds_root)
    assert (len(train), len(test)) == (300, 200)
    assert sum(n.startswith("val/") for n in train.names) == 100
    assert not set(train.names) & set(test.names)
    shapes = {im.shape for im in train.images + test.images}
    assert shapes == {(321, 481), (481, 321)}  # both orientations occur
    assert all(im.dtype == np.uint8 for im in test.images)
    assert train.name == "BSD500/train"


def test_rgb_mode_and_env_root(bsds_root, monkeypatch):
    monkeypatch.setenv("HINAS_BSDS500_ROOT", str(bsds_root))
    test = load_bsd500("test", gray=False)
    assert test.images[0].ndim == 3 and test.images[0].shape[2] == 3 and test.channels == 3


def test_file_order_and_names_are_stable(mini_bsds):
    names = [n for n, _ in bsd500_files("train", mini_bsds)]
    assert names == sorted(names, key=lambda n: (n.split("/")[0] != "train", n))
    assert all(n.split("/")[0] in ("train", "val") for n in names)


def test_no_root_anywhere_names_the_env_var():
    with pytest.raises(DatasetError, match="HINAS_BSDS500_ROOT"):
        load_bsd500("train")


def test_unknown_split_is_refused(mini_bsds):
    with pytest.raises(DatasetError, match="split"):
        load_bsd500("validation", mini_bsds)
