"""Evaluation protocols: tiling/border rule, exact joins, scores and the Parquet table."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings, strategies as st

from hinas.datasets import DatasetError, ImageSet, Pair, PairSet, denoise_patchwise, denoise_whole, evaluate, noisy_pairs, save_results
from hinas.datasets.evaluation import tile_starts
from hinas_core.metrics import psnr


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 700), patch=st.integers(1, 96))
def test_tiles_cover_the_side_and_stay_inside(size, patch):
    p = min(patch, size)
    starts = tile_starts(size, p)
    covered = np.zeros(size, bool)
    for s in starts:
        assert 0 <= s and s + p <= size
        covered[s:s + p] = True
    assert covered.all()
    assert all(b - a == p for a, b in zip(starts, starts[1:-1]))  # adjacent, except the shifted last one
    assert len(starts) == -(-size // p)


@pytest.mark.parametrize("shape", [(1, 481, 321), (1, 64, 128), (1, 100, 70), (3, 50, 30), (1, 65, 64)])
def test_pointwise_denoiser_gives_the_same_image_under_both_protocols(shape):
    x = torch.rand(shape) * 1.4 - 0.2  # unclipped inputs
    fn = lambda b: torch.tanh(3 * b) * 0.5 + 0.25  # noqa: E731 - any pointwise map
    whole = denoise_whole(fn, x)
    patch = denoise_patchwise(fn, x, batch_size=7)
    assert patch.shape == x.shape
    assert torch.equal(patch, whole)
    assert torch.equal(denoise_patchwise(lambda b: b, x), x)  # identity reproduces the input exactly


def test_overlap_is_taken_from_the_first_covering_tile():
    h, w = 150, 100
    calls = []

    def tile_index(b):  # each tile becomes its own index
        calls.append(b.shape[0])
        return torch.arange(b.shape[0], dtype=b.dtype).view(-1, 1, 1, 1).expand_as(b).clone()

    out = denoise_patchwise(tile_index, torch.zeros(1, h, w), batch_size=100)[0]
    ys, xs = tile_starts(h, 64), tile_starts(w, 64)
    tiles = [(y, x) for y in ys for x in xs]
    for py in range(0, h, 7):
        for px in range(0, w, 7):
            first = next(i for i, (y, x) in enumerate(tiles) if y <= py < y + 64 and x <= px < x + 64)
            assert out[py, px] == first
    assert calls == [len(tiles)]


def _pairs():
    rng = np.random.default_rng(0)
    images = ImageSet("toy", ("a", "b", "c"), tuple(rng.integers(0, 256, s, dtype=np.uint8)
                                                   for s in [(70, 90), (64, 64), (130, 75)]))
    return noisy_pairs(images, 30, seed=0)


def test_scores_match_the_metrics_module_and_table_is_written(tmp_path):
    pairs = _pairs()
    res = evaluate(lambda b: b, pairs, protocol="patch", sigma=30, out=tmp_path / "r.parquet")
    direct = [float(psnr(torch.from_numpy(np.array(p.input)), torch.from_numpy(np.array(p.target)))[0]) for p in pairs]
    assert res.psnr == pytest.approx(np.mean(direct), abs=1e-4)
    assert 14 < res.psnr < 22 and 0 < res.ssim < 1
    table = pq.read_table(tmp_path / "r.parquet").to_pylist()
    assert [r["image"] for r in table] == ["a", "b", "c"]
    assert {r["protocol"] for r in table} == {"patch"} and {r["sigma"] for r in table} == {30.0}
    assert all(r["seconds"] >= 0 and r["dataset"] == "toy sigma=30" for r in table)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.parquet"]  # no temp files
    whole = evaluate(lambda b: b, pairs, protocol="whole", sigma=30)
    assert whole.psnr == pytest.approx(res.psnr, abs=1e-9)
    save_results([res, whole], tmp_path / "both.parquet")
    assert pq.read_table(tmp_path / "both.parquet").num_rows == 6
    assert res.to_dict()["images"] == 3


def test_a_better_denoiser_scores_higher_and_rgb_pairs_work():
    rng = np.random.default_rng(1)
    ramp = np.linspace(60, 200, 48)[None, :, None] + np.zeros((40, 1, 3))
    clean = ramp.astype(np.uint8)  # smooth: averaging neighbours removes noise, keeps content
    noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    pairs = PairSet("rgb", (Pair("x", noisy, clean),))
    blur = lambda b: torch.nn.functional.avg_pool2d(b, 5, stride=1, padding=2, count_include_pad=False)  # noqa: E731
    worse, better = evaluate(lambda b: b, pairs), evaluate(blur, pairs)
    assert better.psnr > worse.psnr + 5 and better.ssim > worse.ssim
    assert np.isnan(worse.table.column("sigma")[0].as_py())


def test_bad_calls_are_refused():
    pairs = _pairs()
    with pytest.raises(DatasetError, match="shape"):
        evaluate(lambda b: b[..., :-1], pairs, protocol="whole")
    with pytest.raises(DatasetError, match="protocol"):
        evaluate(lambda b: b, pairs, protocol="tiles")
    with pytest.raises(DatasetError, match="empty"):
        evaluate(lambda b: b, PairSet("none", ()))


def test_the_brightness_offset_is_the_output_mean_minus_the_clean_mean():
    clean = np.full((32, 40), 100, np.uint8)
    clean[:, :20] = 60
    pairs = PairSet("flat", (Pair("a", clean.astype(np.float32), clean), Pair("b", clean.astype(np.float32) + 50, clean)))
    brighter = evaluate(lambda b: b + 4 / 255, pairs, protocol="whole")
    assert brighter.offset == pytest.approx(29.0, abs=1e-3)  # (4 + 54) / 2: the mean over images
    assert brighter.table.column("offset").to_pylist() == pytest.approx([4.0, 54.0], abs=1e-3)
    assert brighter.to_dict()["offset"] == brighter.offset
    assert evaluate(lambda b: b * 0 + 2.0, pairs, protocol="patch").offset == pytest.approx(255 - 80, abs=1e-3)  # clipped
