"""Degradations: the severity ladders, the explicit colour casts of the stacked-distortion check, crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vtamiq_metric.training import acceptance as acc


def test_gains_multiply_the_srgb_channels(textured):
    out = acc.apply_cast(textured, "gains", (1.3, 0.8, 0.6))
    expected = (textured * torch.tensor([1.3, 0.8, 0.6]).view(3, 1, 1)).clamp(0, 1)
    assert torch.allclose(out, expected, atol=0.5 / 255 + 1e-6)
    assert out.shape == textured.shape and float(out.min()) >= 0 and float(out.max()) <= 1


def test_white_balance_moves_the_chroma_and_keeps_the_rest(textured):
    same = acc.apply_cast(textured, "white_balance", (0.0, 0.0))
    assert float((same - textured).abs().max()) <= 1 / 255 + 1e-6
    warm = acc.apply_cast(textured, "white_balance", (0.0, 15.0))
    cool = acc.apply_cast(textured, "white_balance", (0.0, -15.0))
    blue = (float(warm[2].mean() - textured[2].mean()), float(cool[2].mean() - textured[2].mean()))
    assert blue[0] < -0.03 and blue[1] > 0.03  # yellow takes blue out, a cooler balance adds it
    assert float(warm[0].mean()) > float(textured[0].mean())


@pytest.mark.parametrize(("kind", "values", "match"), [("gains", (1.0, 1.0), "three positive gains"),
                                                        ("gains", (1.0, 0.0, 1.0), "three positive gains"),
                                                        ("white_balance", (1.0,), r"\(da\*, db\*\)"),
                                                        ("tint", (1.0, 1.0), "unknown cast")])
def test_apply_cast_names_bad_parameters(textured, kind, values, match):
    with pytest.raises(ValueError, match=match):
        acc.apply_cast(textured, kind, values)


def test_centre_crop_takes_the_middle(textured):
    crop = acc.centre_crop(textured, 32)
    assert torch.equal(crop, textured[:, 16:48, 24:56])
    with pytest.raises(ValueError, match="at least 65 x 65"):
        acc.centre_crop(textured, 65)


@pytest.mark.parametrize("family", sorted(acc.LADDERS))
def test_every_ladder_gets_worse_level_by_level(textured, family):
    errors = [float((acc.degrade(textured, family, value, seed=1) - textured).square().mean())
              for value in acc.LADDERS[family]]
    assert all(np.diff(errors) > 0), errors
    out = acc.degrade(textured, family, acc.LADDERS[family][0], seed=1)
    assert out.shape == textured.shape and 0 <= float(out.min()) and float(out.max()) <= 1


def test_degrade_is_seeded_and_checks_its_input(textured):
    a = acc.degrade(textured, "white_noise", 0.1, seed=5)
    assert torch.equal(a, acc.degrade(textured, "white_noise", 0.1, seed=5))
    assert not torch.equal(a, acc.degrade(textured, "white_noise", 0.1, seed=6))
    with pytest.raises(ValueError, match="unknown degradation"):
        acc.degrade(textured, "fog", 1.0)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        acc.degrade(textured[None], "jpeg", 50)
