"""`hinas denoise` on a user's photos (issue #13): colour in -> colour out, grey stays grey,
16-bit grey and alpha kept, 16-bit colour refused in one line, tiles equal the whole image,
`--sigma auto` picks the nearest shipped model, bad --sigma values give one line."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from hinas.pipeline.cli import main
from hinas.pipeline.denoise import OPPONENT, denoise_file, read_photo, tiled
from hinas_core.models import build_model, load_model, save_model


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A tiny DnCNN model file (random weights): fast, and enough to test shapes and file formats."""
    path = tmp_path_factory.mktemp("model") / "small.pt"
    spec = {"kind": "dncnn", "depth": 3, "width": 4}
    torch.manual_seed(0)
    return save_model(path, spec, build_model(spec), {"sigma": 30})


def _photo(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("mode, shape", [("L", (20, 30)), ("RGB", (20, 30, 3)), ("RGBA", (20, 30, 4)), ("LA", (20, 30, 2))])
def test_the_output_has_the_input_channels_and_dtype_and_alpha_passes_through(tmp_path, capsys, small_model, mode, shape):
    pixels = _photo(shape)
    Image.fromarray(pixels, mode).save(tmp_path / "in.png")
    code, out, err = _run(capsys, "denoise", "--model", small_model, tmp_path / "in.png", tmp_path / "out.png")
    assert code == 0, err
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == mode
        result = np.asarray(im)
    assert result.shape == pixels.shape and result.dtype == np.uint8
    if mode in ("RGBA", "LA"):
        assert np.array_equal(result[..., -1], pixels[..., -1])
        assert "alpha kept" in out


def test_a_colour_photo_is_denoised_in_colour_by_the_shipped_model(tmp_path, capsys, bsds_root):
    clean = np.asarray(Image.open(sorted((bsds_root / "images" / "test").glob("*.jpg"))[3]).convert("RGB"))
    clean = clean[100:148, 150:198].astype(np.float64)
    noisy = clean + np.random.default_rng(0).normal(0, 30, clean.shape)
    Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8)).save(tmp_path / "noisy.png")
    code, out, err = _run(capsys, "denoise", "--sigma", "30", tmp_path / "noisy.png", tmp_path / "out.png")
    assert code == 0, err
    assert "colour" in out
    result = np.asarray(Image.open(tmp_path / "out.png")).astype(np.float64)
    assert result.shape == clean.shape
    # Colour survives: the output's chroma (opponent channels 2 and 3) follows the clean one's,
    # pixel by pixel; a grey output has none.
    chroma_clean, chroma_out = (clean @ OPPONENT.T)[..., 1:], (result @ OPPONENT.T)[..., 1:]
    assert np.corrcoef(chroma_clean.ravel(), chroma_out.ravel())[0, 1] > 0.7
    assert np.mean((result - clean) ** 2) < 0.5 * np.mean((np.clip(noisy, 0, 255).round() - clean) ** 2)


def test_the_opponent_transform_is_orthonormal_so_channel_noise_keeps_its_sigma():
    assert np.allclose(OPPONENT @ OPPONENT.T, np.eye(3))
    noise = np.random.default_rng(0).normal(0, 30, (200_000, 3))
    assert np.allclose((noise @ OPPONENT.T).std(axis=0), 30, rtol=0.01)


def test_a_16_bit_grey_png_stays_16_bit(tmp_path, capsys, small_model):
    pixels = (np.random.default_rng(0).random((20, 30)) * 65535).astype(np.uint16)
    Image.fromarray(pixels).save(tmp_path / "in16.png")
    assert read_photo(tmp_path / "in16.png").bits == 16
    code, out, err = _run(capsys, "denoise", "--model", small_model, tmp_path / "in16.png", tmp_path / "out.png")
    assert code == 0, err
    with Image.open(tmp_path / "out.png") as im:
        result = np.asarray(im)
    assert result.dtype == np.uint16 and result.shape == pixels.shape
    assert len(np.unique(result % 256)) > 1  # real 16-bit values, not 8-bit ones scaled up


def _png_rgb16(path, pixels: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    h, w, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_a_16_bit_colour_png_is_refused_in_one_line(tmp_path, capsys, small_model):
    _png_rgb16(tmp_path / "rgb16.png", (np.random.default_rng(0).random((8, 9, 3)) * 65535).astype(np.uint16))
    code, out, err = _run(capsys, "denoise", "--model", small_model, tmp_path / "rgb16.png", tmp_path / "out.png")
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1 and "16-bit colour" in err and "rgb16.png" in err
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("value, words", [("0", "> 0"), ("-5", "> 0"), ("abc", "a number"), ("nan", "> 0")])
def test_a_bad_sigma_is_one_clear_line(tmp_path, capsys, value, words):
    Image.fromarray(_photo((8, 8))).save(tmp_path / "in.png")
    code, out, err = _run(capsys, "denoise", "--sigma", value, tmp_path / "in.png", tmp_path / "out.png")
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1 and "--sigma" in err and words in err, err


FAULTS = """
import resource, sys
import numpy as np
from hinas_core.inference import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "keep" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    a = np.ones(8 << 20)  # 64 MiB written, freed: a CPU forward pass's feature maps
    del a
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_a_denoise_process_keeps_freed_feature_maps_instead_of_faulting_them_in_again(repo_root):
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    runs = {m: subprocess.run([sys.executable, "-c", FAULTS, m], capture_output=True, text=True, env=env, check=True).stdout.split()
            for m in ("keep", "default")}
    if runs["keep"][0] != "True":
        pytest.skip("this C library has no mallopt")
    kept, default = int(runs["keep"][1]), int(runs["default"][1])
    assert default > 20 * 100  # by default each 64 MiB block is faulted in again (here ~540 faults: huge pages)
    assert kept < default / 5, (kept, default)


def test_denoise_threads_leave_out_the_cores_other_programs_are_using_now():
    from hinas.pipeline.denoise import free_cores, runnable_now

    if runnable_now() is None:
        pytest.skip("no /proc/loadavg here")
    cores = len(os.sched_getaffinity(0))
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.3)
        assert runnable_now() >= cores - 0.5
        assert free_cores() == 1  # every core is taken: one thread, not one per core
    finally:
        for p in spin:
            p.kill()
            p.wait()


def test_tiles_with_overlap_equal_the_whole_image():
    # The sigma-50 genotype (deformable and dilated ops) at a small width, with random weights
    # and offset predictors, so that deformable taps really move.
    _, spec, _ = load_model(str(__import__("hinas.models", fromlist=["x"]).HERE / "hinas_sigma50.pt"))
    torch.manual_seed(0)
    net = build_model({**spec, "width": 6}).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "offset_mask" in name:
                p.normal_(0, 0.05)
    x = torch.rand(1, 1, 110, 130)  # 3 x 3 tiles
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a network this small gains nothing from threads; on a busy box they cost
    try:
        with torch.inference_mode():
            whole = net(x)
            pieces = tiled(net, x, tile=48, overlap=24)
            seams = tiled(net, x, tile=48, overlap=0)
    finally:
        torch.set_num_threads(threads)
    assert pieces.shape == whole.shape
    assert (pieces - whole).abs().max().item() < 1 / 255 / 4  # well under one 8-bit grey level
    assert (seams - whole).abs().max().item() > 1 / 255  # without overlap the seams show: the test can fail


@pytest.mark.parametrize("sigma", [30, 70])
def test_auto_sigma_estimates_the_noise_and_picks_the_nearest_shipped_model(tmp_path, sigma):
    yy, xx = np.mgrid[0:64, 0:64]
    clean = 128 + 40 * np.sin(xx / 9.0) * np.cos(yy / 13.0)  # smooth: the noise is all the detail
    noisy = clean + np.random.default_rng(sigma).normal(0, sigma, clean.shape)
    Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8)).save(tmp_path / "in.png")
    said = []
    summary = denoise_file(tmp_path / "in.png", tmp_path / "out.png", sigma="auto", say=said.append)
    assert len(said) == 1 and said[0].startswith("estimated noise sigma")
    estimated = float(said[0].split()[3])
    assert abs(estimated - sigma) < 5, said
    assert f"sigma {sigma:.1f}" in summary


def test_auto_sigma_warns_when_the_photo_is_far_from_every_shipped_noise_level(tmp_path):
    yy, xx = np.mgrid[0:64, 0:64]
    clean = 128 + 40 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    said = {}
    for sigma in (2, 30, 160):
        noisy = clean + np.random.default_rng(sigma).normal(0, sigma, clean.shape)
        Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8)).save(tmp_path / "in.png")
        lines = []
        denoise_file(tmp_path / "in.png", tmp_path / "out.png", sigma="auto", say=lines.append)
        assert len(lines) == 1
        said[sigma] = lines[0]
    assert "much less noisy" in said[2] and "for sigma 30" in said[2]
    assert "much" not in said[30]
    assert "much noisier" in said[160] and "for sigma 70" in said[160]


def test_the_noise_estimate_skips_areas_where_8_bit_clipping_hides_the_noise():
    from skimage.restoration import estimate_sigma as skimage_sigma

    from hinas.pipeline.denoise import estimate_sigma

    clean = np.full((128, 128), 245.0)
    clean[:, 64:] = 120.0  # half the photo near white: there clipping at 255 eats the noise
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 60, clean.shape), 0, 255).round() / 255
    assert abs(estimate_sigma(noisy) - 60) < 5
    assert abs(255 * skimage_sigma(noisy) - 60) > 10  # the plain estimator is fooled: the test can tell
