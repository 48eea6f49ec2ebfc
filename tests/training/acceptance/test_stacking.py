"""stacking_check: a second distortion that costs at least 1 dB must raise the score (issue 20, check 2)."""

from __future__ import annotations

import pytest
import torch

from vtamiq_metric.training import acceptance as acc


def _sees_only_casts(ref, dist):
    """1 where the channel means moved by more than 2 levels, else 0: a measure blind to all but colour casts."""
    return (acc.colour_cast_levels(ref, dist) > 2.0).float()


def test_psnr_orders_every_stack_that_costs_a_decibel_and_its_negation_none(textured):
    scorers = {"psnr": acc.psnr_scorer, "negated": lambda r, d: acc.psnr(r, d),
               "flat": lambda r, d: torch.zeros(len(d))}
    result = acc.stacking_check([textured, textured.flip(-1)], scorers, crop=64)
    assert result["candidates"] == 2 * sum(len(v) for v in acc.STACK_FIRSTS.values()) * len(acc.STACK_SECONDS)
    assert 0 < result["cases"] < result["candidates"]  # some seconds cost less than 1 dB on top of a strong first
    assert sum(result["cases_by_second"].values()) == result["cases"]
    psnr = result["per_scorer"]["psnr"]
    assert psnr["share"] == 1.0 and set(psnr["by_second"].values()) == {1.0}
    assert result["per_scorer"]["negated"]["share"] == 0.0
    assert result["per_scorer"]["flat"]["share"] == 0.0  # a tie is not "worse"


def test_the_shares_by_second_distortion_count_the_right_cases(textured):
    result = acc.stacking_check([textured], {"casts": _sees_only_casts}, crop=64)
    casts = result["per_scorer"]["casts"]
    assert casts["by_second"] == {"colour_cast": 1.0, "contrast": 0.0, "white_noise": 0.0, "gaussian_blur": 0.0,
                                  "jpeg": 0.0}
    assert casts["share"] == pytest.approx(result["cases_by_second"]["colour_cast"] / result["cases"])
    assert result["cases_by_second"]["colour_cast"] == 6 * 4  # every cast costs more than 1 dB on every first


def test_the_cost_threshold_decides_which_cases_count(textured):
    strict = acc.stacking_check([textured], {"psnr": acc.psnr_scorer}, crop=64, min_cost_db=1.0)
    loose = acc.stacking_check([textured], {"psnr": acc.psnr_scorer}, crop=64, min_cost_db=0.0)
    assert loose["cases"] > strict["cases"]
    none = acc.stacking_check([textured], {"psnr": acc.psnr_scorer}, crop=64, min_cost_db=100.0)
    assert none["cases"] == 0 and none["per_scorer"]["psnr"]["share"] is None


def test_stacking_check_checks_its_inputs(textured):
    with pytest.raises(ValueError, match="at least 96 x 96"):
        acc.stacking_check([textured], {"psnr": acc.psnr_scorer}, crop=96)
    with pytest.raises(ValueError, match="unknown distortions"):
        acc.stacking_check([textured], {"psnr": acc.psnr_scorer}, crop=64, seconds=(("fog", "fog", 1.0),))


def test_stacks_are_seeded(textured):
    scorers = {"psnr": acc.psnr_scorer}
    assert acc.stacking_check([textured], scorers, crop=64) == acc.stacking_check([textured], scorers, crop=64)
