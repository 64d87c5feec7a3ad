"""A shipped model's card says what its retraining validated (issue #12): images trained on and
held out, the best and last validation PSNR, an early stop with its reason, and the curve."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ship_models():
    spec = importlib.util.spec_from_file_location("ship_models", ROOT / "scripts" / "ship_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENTRY = {"sigma": 30.0, "file": "hinas_sigma30.pt", "config": "tune_configs/bsd500_campaign.yaml", "width": 12,
         "params": 630_000, "device": "NVIDIA H200", "date": "2026-12-01", "commit": "abc1234", "paper": "29.14 / 0.8403",
         "below_paper_db": 0.5, "check": {"psnr": 30.1234, "ssim": 0.81234}}
ROW = {"psnr_patch": 28.64, "ssim_patch": 0.81, "psnr_whole": 28.5, "ssim_whole": 0.8}
GENOTYPE = {"levels": [0, 1, 1, 2], "cells": [[[["conv", 0], ["skip", 1]]]]}
RETRAIN = {"iterations": 600_000, "batch_size": 12, "optimizer": "adam", "lr": 1e-3, "schedule": "poly"}


def test_the_card_has_the_data_split_the_validation_curve_and_an_early_stop():
    curve = [{"iteration": i, "patches": 12 * i, "val_psnr": 28.0 + i / 1e6, "val_ssim": 0.8} for i in (100_000, 200_000, 300_000)]
    meta = {"retrain": RETRAIN, "iterations": 300_000, "train_images": 294, "val_images": 6, "val_held_out": True,
            "validation": curve, "stop_reason": "plateau: +0.030 dB over the last 1.0 M patches"}
    card = ship_models().card(ENTRY, ROW, {}, meta, GENOTYPE, "")
    assert "294 of the 300 images trained on, 6 held out as Validation-V" in card
    assert "300,000 of 600,000 planned iterations" in card
    assert "3 validations on Validation-V; best 28.30 dB / 0.8000 after 3,600,000 patches" in card
    assert "stopped early: plateau: +0.030 dB over the last 1.0 M patches" in card
    assert "| 200,000 | 2,400,000 | 28.200 | 0.8000 |" in card  # the curve, one row per validation


def test_a_card_of_a_model_trained_before_validation_says_so():
    meta = {"retrain": RETRAIN, "iterations": 4000}
    card = ship_models().card(ENTRY, ROW, {}, meta, GENOTYPE, "")
    assert "| data | BSD500 train+val: all 300 images; grayscale" in card
    assert "none recorded (trained before retraining validated)" in card and "<details>" not in card


def test_the_card_sets_the_model_against_bm3d_on_the_same_images_and_says_its_gpu_time():
    meta = {"retrain": RETRAIN, "iterations": 4000}
    bm3d = {"kind": "bm3d", "sigma": 30.0, "psnr_whole": 27.98, "ssim_whole": 0.786}
    card = ship_models().card(ENTRY, ROW, {}, meta, GENOTYPE, "", bm3d, "166 device-minutes of H200")
    assert "| BM3D, the same noisy test-200 images (whole images) | PSNR 27.98 dB, SSIM 0.7860 " \
           "(this model: +0.52 dB, +0.0140) |" in card
    assert "| GPU time | 166 device-minutes of H200 |" in card
    plain = ship_models().card(ENTRY, ROW, {}, meta, GENOTYPE, "")
    assert "BM3D" not in plain and "GPU time" not in plain


def test_the_card_of_a_calibrated_model_says_what_was_refitted_and_what_it_did_on_validation():
    meta = {"retrain": RETRAIN, "iterations": 4000}
    assert "output bias" not in ship_models().card(ENTRY, ROW, {}, meta, GENOTYPE, "")
    meta["calibration"] = {"patches": 2400, "date": "2026-12-02", "commit": "abc1234", "offset_before": 1.06,
                           "offset_after": -0.08, "validation_before": {"images": 6, "offset": 1.18, "psnr": 26.533},
                           "validation_after": {"images": 6, "offset": 0.15, "psnr": 26.592}}
    card = ship_models().card(ENTRY, ROW, {}, meta, GENOTYPE, "")
    assert ("| output bias | re-fitted after training by least squares on 2,400 training patches "
            "(scripts/calibrate_output_bias.py, 2026-12-02, commit abc1234") in card
    assert "offset on those patches +1.06 -> -0.08 grey levels" in card
    assert "Validation-V (6 whole images) offset +1.18 -> +0.15, PSNR 26.53 -> 26.59 dB |" in card
