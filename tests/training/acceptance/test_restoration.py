"""Restoration networks: the loss alone (check 3), the partners (check 4) and the measures they report."""

from __future__ import annotations

import pytest
import torch

from vtamiq_metric.training import acceptance as acc
from vtamiq_metric.training.acceptance import restoration


def test_colour_cast_levels_reads_a_known_offset(textured):
    ref = textured[None]
    shifted = ref.clone()
    shifted[:, 1] += 3 / 255
    assert float(acc.colour_cast_levels(ref, shifted)[0]) == pytest.approx(3.0, abs=1e-6)
    both = ref.clone()
    both[:, 0] += 2 / 255
    both[:, 2] -= 5 / 255
    assert float(acc.colour_cast_levels(ref, both)[0]) == pytest.approx(5.0, abs=1e-6)
    noisy = acc.degrade(textured, "white_noise", 0.02, seed=1)[None]  # noise keeps the means (up to clipping)
    assert float(acc.colour_cast_levels(ref, noisy)[0]) < 1.0
    assert acc.colour_cast_levels(ref, torch.cat([ref, shifted])).tolist() == pytest.approx([0.0, 3.0], abs=1e-6)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        acc.colour_cast_levels(textured, textured)


def test_mean_ranks_of_a_known_table():
    table = {"a": {"fsim": 0.9, "gmsd": 0.05, "haarpsi": 0.8},
             "b": {"fsim": 0.8, "gmsd": 0.03, "haarpsi": 0.8},
             "c": {"fsim": 0.7, "gmsd": 0.04, "haarpsi": 0.9}}
    ranks, mean = acc.mean_ranks(table)
    assert ranks["fsim"] == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert ranks["gmsd"] == {"b": 1.0, "c": 2.0, "a": 3.0}  # lower is better
    assert ranks["haarpsi"] == {"c": 1.0, "a": 2.5, "b": 2.5}  # a tie shares the mean rank
    assert mean == pytest.approx({"a": 6.5 / 3, "b": 5.5 / 3, "c": 2.0})
    with pytest.raises(ValueError, match="missing"):
        acc.mean_ranks({"a": {"fsim": 1.0}})


def test_loss_alone_restoration_starts_from_the_identity(textured, distance_model):
    untrained = acc.loss_alone_restoration(distance_model, [textured], [textured], "denoise", steps=0, crop=32)
    assert untrained["restored"] == untrained["degraded"]  # a zero-initialised residual net returns its input
    assert untrained["psnr_change"] == 0 and untrained["improved_psnr"] == 0
    degraded = untrained["degraded"]
    noisy = restoration._restoration_setup([textured], [textured], "denoise", 32, 0)[2][0]
    assert degraded["psnr"] == pytest.approx(float(acc.psnr(textured[None], noisy[None])))
    assert degraded["cast"] == pytest.approx(float(acc.colour_cast_levels(textured[None], noisy[None])[0]))
    trained = acc.loss_alone_restoration(distance_model, [textured], [textured], "deblur", steps=2, batch_size=2,
                                         crop=32, num_patches=8)
    assert trained["restored"] != trained["degraded"] and trained["steps"] == 2
    assert trained["teacher_change"] == pytest.approx(trained["restored"]["teacher"] - trained["degraded"]["teacher"])
    assert set(trained["restored"]) == {"psnr", "vsi", "teacher", "cast", "cast_max"}


def test_partner_comparison_trains_every_variant_from_the_same_start(textured, distance_model):
    same = acc.partner_comparison(distance_model, [textured], [textured], steps=0, crop=32)
    degraded = {k: same["degraded"][k] for k in ("psnr", "fsim", "gmsd", "haarpsi")}
    for variant in acc.PARTNER_VARIANTS:
        assert {k: same["variants"][variant][k] for k in degraded} == degraded
    assert set(same["mean_rank"].values()) == {2.5}  # all tied
    result = acc.partner_comparison(distance_model, [textured], [textured], steps=2, batch_size=2, crop=32,
                                    num_patches=8)
    assert result["variants"]["l1"]["weight"] is None
    assert all(result["variants"][v]["weight"] > 0 for v in acc.PARTNER_VARIANTS[1:])
    ranks, mean = acc.mean_ranks(result["variants"])
    assert result["ranks"] == ranks and result["mean_rank"] == mean
    assert result["best"] == min(mean, key=mean.get) and result["ms_ssim_scales"] == 2
    with pytest.raises(ValueError, match="one or two loss terms"):
        acc.partner_comparison(distance_model, [textured], [textured], variants=("l1+lpips",), steps=0, crop=32)


def test_restoration_benefit_compares_equal_runs(textured, distance_model):
    result = acc.restoration_benefit(distance_model, [textured], [textured], "denoise", steps=2, batch_size=2,
                                     crop=32, num_patches=8)
    assert set(result) >= {"l1", "l1+vtamiq", "degraded", "weight", "vsi_gain", "psnr_change"}
    assert result["weight"] > 0
    assert result["psnr_change"] == pytest.approx(result["l1+vtamiq"]["psnr"] - result["l1"]["psnr"])
    with pytest.raises(ValueError, match="unknown task"):
        acc.restoration_benefit(distance_model, [textured], [textured], "inpaint")
    with pytest.raises(ValueError, match="at least 96"):
        acc.restoration_benefit(distance_model, [textured], [textured], "denoise", crop=96)
