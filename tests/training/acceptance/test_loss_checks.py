"""Checks of the loss: gradient cosines and pixel optimisation with the loss alone (check 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vtamiq_metric import VTAMIQ
from vtamiq_metric.training import acceptance as acc
from vtamiq_metric.training.labels.teacher import teacher_distortion


def test_token_distance_gradient_points_towards_the_reference(textured, distance_model):
    refs = [textured] * 3
    dists = [acc.degrade(textured, f, v, seed=2) for f, v in (("gaussian_blur", 2.0), ("white_noise", 0.08),
                                                                 ("jpeg", 10))]
    assert float(np.median(acc.gradient_cosines(distance_model, refs, dists, num_patches=32, draws=2))) > 0.1
    # The paper's architecture without the distance has no such property at random initialisation.
    torch.manual_seed(0)
    plain = VTAMIQ("tiny").eval()
    assert abs(float(np.median(acc.gradient_cosines(plain, refs, dists, num_patches=32, draws=2)))) < 0.1


def test_pixel_optimisation_reports_psnr_vsi_and_the_teacher_before_and_after(textured, distance_model):
    dists = [acc.degrade(textured, "white_noise", 0.1, seed=0), acc.degrade(textured, "gaussian_blur", 2.0)]
    result = acc.pixel_optimisation(distance_model, [textured] * 2, dists, steps=3, num_patches=16)
    assert len(result["psnr_before"]) == 2 and result["steps"] == 3 and result["pairs"] == 2
    assert result["psnr_before"][0] == pytest.approx(float(acc.psnr(textured[None], dists[0][None])))
    assert result["teacher_before"][1] == pytest.approx(float(teacher_distortion(textured[None], dists[1][None])))
    after, before = np.array(result["teacher_after"]), np.array(result["teacher_before"])
    assert result["improved_teacher"] == float(np.mean(after < before))
    assert result["mean_teacher_change"] == pytest.approx(float(np.mean(after - before)))
    assert result["mean_psnr_change"] == pytest.approx(float(np.mean(np.subtract(result["psnr_after"],
                                                                                 result["psnr_before"]))))
    untouched = acc.pixel_optimisation(distance_model, [textured], dists[:1], steps=0, num_patches=16)
    assert untouched["teacher_after"][0] == pytest.approx(untouched["teacher_before"][0], rel=1e-3)
