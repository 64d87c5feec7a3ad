"""From a :class:`DataConfig` to what the search loop consumes: samplers and a validator.

``data.channels`` decides whether images are read grey (BT.601 luma) or RGB, ``data.augment``
the training patches' augmentation and ``data.metric`` what validation and test scores are
computed on; every function here follows them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from hinas.datasets import (ImageSet, Pair, PairPatchSampler, PairSet, PatchSampler, evaluate, load_bsd500, load_rain800,
                            load_sim, noisy_pairs, sample_set, search_split, verify_bsd500)
from hinas.datasets.paths import bsds500_root

from .experiment import PAIR_DATASETS, DataConfig

Validator = Callable[[Callable[[torch.Tensor], torch.Tensor]], Mapping[str, float]]


def gray(cfg: DataConfig) -> bool:
    """Whether images are read as grey (``data.channels: 1``) rather than RGB."""
    return cfg.channels == 1


def stored_pairs(cfg: DataConfig, split: str) -> PairSet:
    """A stored-pair dataset's split, grey or RGB (``data.channels``), limited to ``max_images``
    for training."""
    if not cfg.root:
        raise ValueError(f"data.root: the {cfg.dataset} dataset needs the folder it was built or unpacked in")
    pairs = (load_sim if cfg.dataset == "sim" else load_rain800)(cfg.root, split, gray=gray(cfg))
    if split == "train" and cfg.max_images:
        pairs = PairSet(pairs.name, pairs.pairs[: cfg.max_images])
    return pairs


def crop_pairs(pairs: PairSet, size: int) -> PairSet:
    def crop(a):
        h, w = a.shape[:2]
        y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
        return a[y:y + size, x:x + size]

    return PairSet(pairs.name, tuple(Pair(p.name, crop(p.input), crop(p.target)) for p in pairs))


def training_images(cfg: DataConfig) -> ImageSet:
    images = load_bsd500("train", cfg.root, gray=gray(cfg)) if cfg.dataset == "bsd500" else sample_set("train")
    if cfg.max_images:
        images = images.subset(range(min(cfg.max_images, len(images))), images.name)
    return images


def center_crop(images: ImageSet, size: int) -> ImageSet:
    """Each image's central ``size`` x ``size`` region (or the whole side where it is shorter)."""
    crops = []
    for img in images.images:
        h, w = img.shape[:2]
        y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
        crops.append(img[y:y + size, x:x + size])
    return ImageSet(images.name, images.names, tuple(crops))


@dataclass
class SearchData:
    train_w: PatchSampler
    train_a: PatchSampler
    evaluate: Callable[[Callable[[torch.Tensor], torch.Tensor]], Mapping[str, float]]
    steps_per_epoch: int  # one random crop per Train-W image per epoch
    sizes: Mapping[str, int]


def search_data(cfg: DataConfig, sigma: float, batch_size: int) -> SearchData:
    """Train-W / Train-A samplers with fresh noise, and Validation-V with seeded, fixed noise
    (for stored pairs: the split of the pairs themselves)."""
    if cfg.dataset in PAIR_DATASETS:
        return _pair_search_data(cfg, batch_size)
    images = training_images(cfg)
    w, a, v = search_split(images, seed=cfg.split_seed, val_fraction=cfg.val_fraction).apply(images)
    return SearchData(
        train_w=PatchSampler(w, sigma, cfg.patch_size, augment=cfg.augment, clip=cfg.clip),
        train_a=PatchSampler(a, sigma, cfg.patch_size, augment=cfg.augment, clip=cfg.clip),
        evaluate=_image_validator(cfg, v, sigma),
        steps_per_epoch=max(1, math.ceil(len(w) / batch_size)),
        sizes={"train_w": len(w), "train_a": len(a), "val": len(v)},
    )


def _image_validator(cfg: DataConfig, v: ImageSet, sigma: float) -> Validator:
    """Validation-V of an image dataset: seeded, fixed noise, scored with ``data.val_protocol``."""
    if cfg.val_crop:
        v = center_crop(v, cfg.val_crop)
    val_pairs = noisy_pairs(v, sigma, seed=cfg.noise_seed, clip=cfg.clip)

    def validate(denoise):
        r = evaluate(denoise, val_pairs, protocol=cfg.val_protocol, sigma=sigma, patch=cfg.eval_patch, metric=cfg.metric)
        return {"psnr": r.psnr, "ssim": r.ssim}

    return validate


def _pair_validator(cfg: DataConfig, v: PairSet) -> Validator:
    """Validation-V of a stored-pair dataset, scored with ``data.val_protocol``."""
    val_pairs = crop_pairs(v, cfg.val_crop) if cfg.val_crop else v

    def validate(denoise):
        r = evaluate(denoise, val_pairs, protocol=cfg.val_protocol, patch=cfg.eval_patch, metric=cfg.metric)
        return {"psnr": r.psnr, "ssim": r.ssim}

    return validate


def _pair_split(cfg: DataConfig, train_wa: bool = False) -> tuple:
    """A stored-pair dataset's training pairs as (Train-W, Train-A, Validation-V) PairSets; with
    ``train_wa``, as (Train-W + Train-A in their original order, Validation-V)."""
    pairs = stored_pairs(cfg, "train")
    split = search_split(pairs.names, seed=cfg.split_seed, val_fraction=cfg.val_fraction)
    parts = (sorted(split.train_w + split.train_a), split.val) if train_wa else (split.train_w, split.train_a, split.val)
    return tuple(PairSet(pairs.name, tuple(pairs[i] for i in idx)) for idx in parts)


def _pair_search_data(cfg: DataConfig, batch_size: int) -> SearchData:
    w, a, v = _pair_split(cfg)
    return SearchData(PairPatchSampler(w, cfg.patch_size, cfg.augment), PairPatchSampler(a, cfg.patch_size, cfg.augment), _pair_validator(cfg, v),
                      max(1, math.ceil(len(w) / batch_size)), {"train_w": len(w), "train_a": len(a), "val": len(v)})


def test_pairs(cfg: DataConfig, sigma: float, max_images: int = 0, crop: int = 0):
    """The test set with fixed, per-image seeded noise (BSD500 test-200, or the sample set's test split);
    for stored pairs, their test split."""
    if cfg.dataset in PAIR_DATASETS:
        pairs = stored_pairs(cfg, "test")
        if max_images:
            pairs = PairSet(pairs.name, pairs.pairs[:max_images])
        return crop_pairs(pairs, crop) if crop else pairs
    images = load_bsd500("test", cfg.root, gray=gray(cfg)) if cfg.dataset == "bsd500" else sample_set("test")
    if max_images:
        images = images.subset(range(min(max_images, len(images))), images.name)
    if crop:
        images = center_crop(images, crop)
    return noisy_pairs(images, sigma, seed=cfg.noise_seed, clip=cfg.clip)


@dataclass
class RetrainData:
    """What a retraining job consumes: training patches, the validator, and the set sizes
    (``train``, ``val``: images, or pairs for stored-pair datasets; ``val_held_out``)."""

    sampler: PatchSampler | PairPatchSampler
    validate: Validator
    sizes: Mapping[str, int]


def _retrain_split(cfg: DataConfig, hold_out_val: bool):
    """(training set, Validation-V): V is the search's (same split seed and fraction); the
    training set is Train-W + Train-A in their original order, or every image when not
    ``hold_out_val``. Images for image datasets, PairSets for stored pairs."""
    if cfg.dataset in PAIR_DATASETS:
        train, v = _pair_split(cfg, train_wa=True)
        return (train if hold_out_val else stored_pairs(cfg, "train")), v
    images = training_images(cfg)
    split = search_split(images, seed=cfg.split_seed, val_fraction=cfg.val_fraction)
    v = images.subset(split.val, f"{images.name}/val-V")
    train = images.subset(sorted(split.train_w + split.train_a), f"{images.name}/train-WA") if hold_out_val else images
    return train, v


def retrain_data(cfg: DataConfig, sigma: float, hold_out_val: bool = True) -> RetrainData:
    """Retraining patches with fresh noise per sample, without Validation-V's images when
    ``hold_out_val`` (``retrain.hold_out_val``), and V's validator: the search's images, seeded
    noise and ``data.val_protocol``, so search and retraining curves are on one scale."""
    train, v = _retrain_split(cfg, hold_out_val)
    if cfg.dataset in PAIR_DATASETS:
        sampler, validate = PairPatchSampler(train, cfg.patch_size, cfg.augment), _pair_validator(cfg, v)
    else:
        sampler, validate = PatchSampler(train, sigma, cfg.patch_size, augment=cfg.augment, clip=cfg.clip), _image_validator(cfg, v, sigma)
    return RetrainData(sampler, validate, {"train": len(train), "val": len(v), "val_held_out": hold_out_val})


def validation_pairs(cfg: DataConfig, sigma: float):
    """Validation-V as (noisy, clean) pairs: the search's held-out images with their seeded noise
    (stored pairs: the split's own), whole and uncropped."""
    _, v = _retrain_split(cfg, True)
    return v if cfg.dataset in PAIR_DATASETS else noisy_pairs(v, sigma, seed=cfg.noise_seed, clip=cfg.clip)


def training_sampler(cfg: DataConfig, sigma: float, hold_out_val: bool = True) -> PatchSampler | PairPatchSampler:
    """Retraining patches (see :func:`retrain_data`), without building the validator."""
    train, _ = _retrain_split(cfg, hold_out_val)
    if cfg.dataset in PAIR_DATASETS:
        return PairPatchSampler(train, cfg.patch_size, cfg.augment)
    return PatchSampler(train, sigma, cfg.patch_size, augment=cfg.augment, clip=cfg.clip)


def check_data(cfg: DataConfig, splits: Sequence[str] = ("train", "test")) -> None:
    """Build what the trials will build from ``splits``, so that a data problem is an error before
    any trial starts: a missing root or folder, a missing, corrupt or non-image file, an empty
    split, too few images for the search split, an image smaller than ``data.patch_size``.

    Raises:
        DatasetError (a ValueError): names the file or the setting. Decoded images land in the
        cache, so the trials read them from there.
    """
    if cfg.dataset == "bsd500" and splits:
        verify_bsd500(bsds500_root(cfg.root))  # names a missing or damaged file before decoding any
    sigma = cfg.sigmas[0]
    if "train" in splits:
        search_data(cfg, sigma, batch_size=1)  # the W / A / V split and the patch size of W and A
        training_sampler(cfg, sigma, hold_out_val=False)  # retraining may crop every training image
    if "test" in splits:
        test_pairs(cfg, sigma, max_images=1)  # decodes (and caches) every test image
