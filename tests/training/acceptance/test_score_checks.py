"""Checks of the score: severity ladders, agreement with a label or MOS, identity, stability, whole photographs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vtamiq_metric.training import acceptance as acc


def test_severity_check_counts_ordered_level_pairs(textured):
    result = acc.severity_check([textured, textured.flip(-1)], {"psnr": acc.psnr_scorer,
                                                                 "reversed": lambda r, d: acc.psnr(r, d)})
    assert result["psnr"]["pair_accuracy"] == 1.0 and result["psnr"]["monotone"] == 1.0
    assert result["reversed"]["pair_accuracy"] == 0.0 and result["reversed"]["monotone"] == 0.0
    assert result["psnr"]["pairs"] == 2 * len(acc.LADDERS) * 10 and result["psnr"]["ladders"] == 12


def test_label_and_mos_checks_correlate_in_the_right_direction(textured):
    dists = [acc.degrade(textured, "white_noise", s, seed=0) for s in (0.02, 0.05, 0.1, 0.2)]
    refs = [textured] * 4
    label = np.array([0.1, 0.2, 0.3, 0.4])
    assert acc.label_check(refs, dists, label, {"psnr": acc.psnr_scorer})["psnr"]["srocc"] == pytest.approx(1.0)
    assert acc.mos_check(refs, dists, 5 - label, {"psnr": acc.psnr_scorer})["psnr"]["srocc"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="as many labels"):
        acc.label_check(refs, dists, label[:3], {"psnr": acc.psnr_scorer})


def test_identity_check_sees_zero_at_identity(textured, distance_model):
    scorer = acc.model_scorer(distance_model, num_patches=16)
    dists = [[acc.degrade(textured, "gaussian_blur", 2.0), textured.clone()]]
    result = acc.identity_check(scorer, [textured], dists)
    assert result["max_abs_identical"] < 1e-5
    assert result["min_score"] >= 0 and result["pixel_identical_left_out"] == 1
    assert result["below_all_distorted"] == 1.0


def test_stability_check_reports_the_spread_over_seeds(textured, distance_model):
    dist = acc.degrade(textured, "jpeg", 20)
    result = acc.stability_check(distance_model, [textured], [dist], score_range=1.0, seeds=3, num_patches=16)
    assert result["seeds"] == 3 and result["max_std"] >= 0
    assert result["max_std_over_range"] == result["max_std"]


def test_full_size_pairs_label_every_type_with_vsi_at_its_viewing_distance(textured):
    assert acc.FULL_SIZE_TYPES == tuple(t for t in range(1, 26) if t != 15)
    photo = torch.nn.functional.interpolate(textured[None], size=(192, 160), mode="bilinear")[0].clamp(0, 1)
    types = (1, 10, 11, 16)  # blur, JPEG, white noise, brighten: fast, and each worse at level 5 than at level 1
    refs, dists, label, kinds = acc.full_size_pairs([photo], types=types, levels=(1, 5))
    assert kinds == [1, 1, 10, 10, 11, 11, 16, 16]
    assert all(r.shape == d.shape == photo.shape for r, d in zip(refs, dists, strict=True))
    assert all(r is refs[0] for r in refs)  # one reference tensor per photograph, not one copy per pair
    from vtamiq_metric.training.labels.vsi import vsi

    assert label[2] == pytest.approx(1 - float(vsi(refs[2][None], dists[2][None])[0]))
    assert np.all(label[1::2] > label[0::2]), label
    again = acc.full_size_pairs([photo], types=types, levels=(1, 5))
    assert all(torch.equal(a, b) for a, b in zip(dists, again[1], strict=True))  # seeded


def test_correlations_score_once_and_name_length_mismatches():
    label = np.array([0.1, 0.2, 0.3, 0.4])
    result = acc.correlations({"up": label * 2, "down": -label}, label, groups=["a", "a", "a", "b"])
    assert result["up"]["srocc"] == pytest.approx(1.0) and result["down"]["krocc"] == pytest.approx(-1.0)
    assert result["up"]["srocc_per_group"] == {"a": pytest.approx(1.0)}  # groups of fewer than 3 pairs are left out
    with pytest.raises(ValueError, match="as many scores and groups as labels"):
        acc.correlations({"short": label[:3]}, label)


def test_identity_check_uses_known_scores(textured, distance_model):
    scorer = acc.model_scorer(distance_model, num_patches=16)
    dists = [[acc.degrade(textured, "gaussian_blur", 2.0), acc.degrade(textured, "jpeg", 20)]]
    computed = acc.identity_check(scorer, [textured], dists)
    known = acc.identity_check(scorer, [textured], dists, known_scores=[[-1.0, 5.0]])
    assert known["min_score"] == -1.0 and known["below_all_distorted"] == 0.0  # the given scores are used
    assert computed["below_all_distorted"] == 1.0
    with pytest.raises(ValueError, match="one score per distorted image"):
        acc.identity_check(scorer, [textured], dists, known_scores=[[1.0]])
