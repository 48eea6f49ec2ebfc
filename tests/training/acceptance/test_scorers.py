"""Scorers: the teacher and its measures share one computation per batch; score_table keeps the input order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vtamiq_metric.training import acceptance as acc
from vtamiq_metric.training.acceptance import scorers
from vtamiq_metric.training.labels.teacher import teacher_distortion
from vtamiq_metric.training.labels.vsi import vsi


def test_teacher_scorers_match_the_teacher_and_cost_one_computation(textured, monkeypatch):
    dists = [acc.degrade(textured, "white_noise", s, seed=0) for s in (0.02, 0.08)]
    calls = []
    original = scorers.teacher_components
    monkeypatch.setattr(scorers, "teacher_components", lambda r, d: calls.append(len(d)) or original(r, d))
    table = acc.score_table(acc.teacher_scorers(), [textured] * 2, dists)
    assert calls == [2]  # one batch, four measures, one computation
    expected = teacher_distortion(textured[None].expand(2, -1, -1, -1), torch.stack(dists)).numpy()
    np.testing.assert_allclose(table["teacher"], expected, rtol=1e-5)
    np.testing.assert_allclose(table["vsi"], 1 - vsi(textured[None], torch.stack(dists)).numpy(), rtol=1e-5)
    assert table["teacher"][1] > table["teacher"][0] > 0 and np.all(table["scielab"] > 0)
    with pytest.raises(ValueError, match="unknown teacher measures"):
        acc.teacher_scorers(("teacher", "lpips"))


def test_classical_scorers_are_distortions(textured):
    refs = [textured] * 3
    dists = [textured.clone(), acc.degrade(textured, "gaussian_blur", 1.0), acc.degrade(textured, "gaussian_blur", 2.5)]
    table = acc.score_table({"gmsd": acc.gmsd_scorer, "fsimc": acc.fsimc_scorer, "ciede2000": acc.ciede2000_scorer},
                            refs, dists)
    for name, values in table.items():
        assert values[0] == pytest.approx(0.0, abs=1e-4), name
        assert values[2] > values[1] > values[0], name


def test_score_table_batches_by_size_and_keeps_the_order(textured):
    small = textured[:, :32, :32]
    refs = [textured, small, textured, small]
    dists = [acc.degrade(r, "white_noise", s, seed=0) for r, s in zip(refs, (0.01, 0.02, 0.04, 0.08), strict=True)]
    seen = []

    def recording(ref, dist):
        seen.append(tuple(dist.shape))
        return acc.psnr_scorer(ref, dist)

    table = acc.score_table({"psnr": recording}, refs, dists, batch=8)
    assert sorted(seen) == [(2, 3, 32, 32), (2, 3, 64, 80)]
    expected = [float(-acc.psnr(r[None], d[None])) for r, d in zip(refs, dists, strict=True)]
    np.testing.assert_allclose(table["psnr"], expected, rtol=1e-6)
    np.testing.assert_allclose(acc.score_pairs(acc.psnr_scorer, refs, dists), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="one distorted image per reference"):
        acc.score_table({"psnr": acc.psnr_scorer}, refs, dists[:3])


def test_reference_scorers_name_the_model_teacher_vsi_and_psnr(distance_model):
    assert list(acc.reference_scorers(distance_model)) == ["model", "teacher", "vsi", "psnr"]
    extended = acc.reference_scorers(distance_model, extended=True)
    assert set(extended) == {"model", "teacher", "vsi", "psnr", "ms_ssim", "scielab", "gmsd", "fsimc", "ciede2000"}
