"""The quickstart's searched networks denoise (issue #13): its retraining recipe, run briefly on
CPU, must take a held-out noisy image clearly above the noisy input."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from hinas.datasets import evaluate, noisy_pairs, sample_set
from hinas.pipeline.data import center_crop, training_sampler
from hinas.pipeline.experiment import load_experiment
from hinas_core import Genotype
from hinas_core.models import hinas_spec
from hinas_core.retrain import Trainer

# What the quickstart's tiny search derived at sigma 30 (skip-dominated, as a 24-step search gives).
SEARCHED = {"format": 1, "cells": [[[["skip", 0], ["def", 1]], [["skip", 0], ["skip", 2]]]],
            "levels": [0, 1], "widths": [4, 8, 16]}


def test_a_short_retrain_of_the_quickstart_recipe_beats_the_noisy_input(repo_root):
    exp = load_experiment(repo_root / "tune_configs/quickstart.yaml")
    sigma = 30.0
    spec = hinas_spec(Genotype.from_dict(SEARCHED), width=exp.model.width, activation=exp.space.activation,
                      output=exp.space.output)
    torch.set_num_threads(1)
    trainer = Trainer(spec, replace(exp.retrain, iterations=40, cuda_graph=False), training_sampler(exp.data, sigma))
    while not trainer.done:
        trainer.run()
    held_out = noisy_pairs(center_crop(sample_set("test"), 96), sigma, seed=0)  # never trained on
    denoised = evaluate(trainer.denoiser(), held_out, protocol="whole")
    noisy = evaluate(lambda x: x, held_out, protocol="whole")
    assert denoised.psnr > noisy.psnr + 3.0, (denoised.psnr, noisy.psnr)
    assert abs(denoised.offset) < 3.0  # no brightness bias
