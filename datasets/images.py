"""Decoding images and the two containers everything else passes around.

Layouts and ranges
------------------
* A grayscale image is a ``(H, W)`` ``uint8`` numpy array in [0, 255]; a colour image is
  ``(H, W, 3)`` ``uint8`` RGB. Arrays held by :class:`ImageSet` are read-only.
* A :class:`Pair` is (degraded input, clean target) in the same layout, both on the 0-255 scale:
  ``target`` is ``uint8``; ``input`` is ``uint8`` for stored sets (SIM, rain) or ``float32``
  for Gaussian noise added on the fly (unclipped by default, so it may leave [0, 255]).

Luma
----
Grayscale is ITU-R BT.601 luma on the gamma-encoded (sRGB) values, rounded to 8 bits with the
exact integer formula Pillow uses for ``convert("L")``::

    Y = (19595 R + 38470 G + 7471 B + 32768) >> 16     # = round(0.299 R + 0.587 G + 0.114 B)

(the weights are 0.299, 0.587, 0.114 in 16-bit fixed point). It is computed here in numpy so
the result does not depend on the Pillow version; a test checks it matches ``convert("L")``.
Storing the clean gray image as 8-bit is deliberate: it is what a grayscale test image is, and
it keeps the decoded cache and the patch sampler small and fast.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DatasetError

JPEG_SUFFIXES = (".jpg", ".jpeg")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# The decoders an image file may use, whatever its name says: images can be untrusted (`hinas
# denoise`), and Pillow would otherwise also hand EPS/PDF to Ghostscript or try exotic plugins.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "PPM")


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of an ``(H, W, 3)`` uint8 RGB image -> ``(H, W)`` uint8 (see module doc)."""
    if rgb.ndim == 2:
        return rgb
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"to_gray expects (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    c = rgb.astype(np.uint32)
    y = (19595 * c[..., 0] + 38470 * c[..., 1] + 7471 * c[..., 2] + 32768) >> 16
    return y.astype(np.uint8)


def _looks_truncated_jpeg(path: Path) -> bool:
    # Pillow only refuses truncated JPEGs while ImageFile.LOAD_TRUNCATED_IMAGES is False, a global
    # any library may flip; a complete JPEG ends with the EOI marker FF D9 (maybe plus padding).
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 4096))
        return b"\xff\xd9" not in f.read()


def read_image(path: str | os.PathLike, gray: bool = True) -> np.ndarray:
    """Decode one image file.

    Args:
        path: a JPEG/PNG/... file.
        gray: True -> ``(H, W)`` uint8 BT.601 luma; False -> ``(H, W, 3)`` uint8 RGB.

    Raises:
        DatasetError: the file is missing, not an image, truncated or corrupt (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image file {path} does not exist")
    try:
        if path.suffix.lower() in JPEG_SUFFIXES and _looks_truncated_jpeg(path):
            raise DatasetError(f"image file {path} is truncated (no JPEG end marker)")
        with Image.open(path, formats=IMAGE_FORMATS) as im:
            im.load()
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except DatasetError:
        raise
    except UnidentifiedImageError as e:
        raise DatasetError(f"{path} is not a readable image file") from e
    except Image.DecompressionBombError as e:  # a small file that would decode to gigabytes
        raise DatasetError(f"image file {path} is refused: {e}") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"image file {path} is truncated or corrupt: {e}") from e
    return to_gray(rgb) if gray else rgb


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a ``(H, W)`` or ``(H, W, 3)`` uint8 image losslessly as PNG."""
    if image.dtype != np.uint8:
        raise ValueError(f"write_png expects uint8, got {image.dtype}")
    Image.fromarray(image).save(path, format="PNG")


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (hidden files skipped)."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _freeze(a: np.ndarray) -> np.ndarray:
    # A read-only *view*: the set cannot be modified through it, the caller's array is untouched.
    view = np.ascontiguousarray(a).view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True)
class ImageSet:
    """Named clean images: ``images[i]`` is ``(H, W)`` (gray) or ``(H, W, 3)`` uint8, sizes may differ.

    ``name`` says which dataset and split it is (e.g. ``"BSD500/train"``); ``names[i]`` is the
    image's stable identifier (e.g. ``"train/100075.jpg"``), used for seeding and reports.
    """

    name: str
    names: tuple[str, ...]
    images: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.images):
            raise ValueError("names and images differ in length")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"{self.name}: image names are not unique")
        object.__setattr__(self, "images", tuple(_freeze(a) for a in self.images))

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        return iter(zip(self.names, self.images))

    def subset(self, indices: Sequence[int], name: str | None = None) -> "ImageSet":
        """The images at ``indices`` (in that order), as a new set."""
        return ImageSet(name or self.name, tuple(self.names[i] for i in indices),
                        tuple(self.images[i] for i in indices))

    def gray(self) -> "ImageSet":
        """The same set as BT.601 grayscale (a no-op for gray sets)."""
        return ImageSet(self.name, self.names, tuple(to_gray(a) for a in self.images))

    @property
    def channels(self) -> int:
        """1 for grayscale sets, 3 for RGB."""
        return 1 if self.images[0].ndim == 2 else self.images[0].shape[2]


@dataclass(frozen=True)
class Pair:
    """(degraded input, clean target) of one image, both on the 0-255 scale, same layout.

    ``input``: ``(H, W)`` or ``(H, W, C)``, uint8 or float32 (Gaussian noise: unclipped float32).
    ``target``: same shape, uint8.
    """

    name: str
    input: np.ndarray
    target: np.ndarray

    def __post_init__(self) -> None:
        if self.input.shape != self.target.shape:
            raise ValueError(f"pair {self.name}: input {self.input.shape} != target {self.target.shape}")
        object.__setattr__(self, "input", _freeze(self.input))
        object.__setattr__(self, "target", _freeze(self.target))


@dataclass(frozen=True)
class PairSet(Sequence):
    """A named, ordered set of :class:`Pair` (a ``Sequence``: index it, iterate it)."""

    name: str
    pairs: tuple[Pair, ...]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i):  # type: ignore[override]
        return self.pairs[i]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.pairs)
