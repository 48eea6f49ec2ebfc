"""The CAPS probability of the cells (vtamiq_metric.sampling.probability), seen through the draws."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import CAPS_CENTRE, CAPS_DIFF, CAPS_UNIFORM, caps_pair, quadrant_pair
from vtamiq_metric.sampling import PatchSample, SamplingConfig, centre_bias, sample_patches, sampling_density
from vtamiq_metric.sampling.probability import plan_draw


def test_centre_bias_is_a_gaussian_at_the_image_centre() -> None:
    bias = centre_bias(66, 98, (0.1, 0.4))
    assert bias.shape == (51, 83) and math.isclose(bias.sum().item(), 1.0, rel_tol=1e-12)
    assert divmod(int(bias.argmax()), 83) == (25, 41)  # patch centre (33, 49) = image centre
    rows, cols = bias.sum(1), bias.sum(0)
    assert rows[0] / rows.max() < cols[0] / cols.max()  # narrower along rows


def _central_fraction(sample: PatchSample) -> float:
    centred = ((sample.pos - 0.5).abs() < 0.25).all(dim=-1)
    return centred.double().mean().item()


def test_centre_bias_puts_more_patches_in_the_centre_than_uniform() -> None:
    ref, dist = caps_pair(batch=2, height=128, width=128)
    centre = _central_fraction(sample_patches(ref, dist, 300, config=CAPS_CENTRE, seed=0))
    uniform = _central_fraction(sample_patches(ref, dist, 300, config=CAPS_UNIFORM, seed=0))
    # Uniform over centres in [8, 120]: about (64 / 112)**2 = 0.33 lie in the central square; the centre bias
    # (sigma = 32 px) puts about 0.45 there.
    assert 0.25 < uniform < 0.40
    assert centre > uniform + 0.08


def test_difference_weighting_targets_the_differing_quadrant() -> None:
    ref, dist = quadrant_pair(128)
    sample = sample_patches(ref, dist, 256, config=CAPS_DIFF, seed=0)
    in_quadrant = (sample.pos[..., 0] < 0.5) & (sample.pos[..., 1] >= 0.5)
    # Footprint pooling gives patches straddling the quadrant border some mass; about 93% of it lies inside.
    assert in_quadrant.double().mean().item() > 0.85
    ssim = sample_patches(ref, dist, 256, config=SamplingConfig(0, 1, 0, diff_type="ssim"), seed=0)
    in_quadrant = (ssim.pos[..., 0] < 0.5) & (ssim.pos[..., 1] >= 0.5)
    assert in_quadrant.double().mean().item() > 0.8


def test_identical_images_make_the_difference_term_vanish() -> None:
    ref, _ = caps_pair()
    only_diff = sample_patches(ref, ref.clone(), 60, config=CAPS_DIFF, seed=4)
    only_uniform = sample_patches(ref, ref.clone(), 60, config=CAPS_UNIFORM, seed=4)
    assert torch.equal(only_diff.top_left, only_uniform.top_left)
    centre_and_diff = sample_patches(ref, ref.clone(), 60, config=SamplingConfig(1, 3, 0), seed=4)
    centre_only = sample_patches(ref, ref.clone(), 60, config=CAPS_CENTRE, seed=4)
    assert torch.equal(centre_and_diff.top_left, centre_only.top_left)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"num_patches": 0}, ValueError, r"num_patches: expected an int >= 1, got 0"),
    ({"num_patches": 2**21}, ValueError, r"num_patches: expected an int <= 1048576"),
    ({"patch_size": 33}, ValueError, r"smaller than a patch: expected height and width >= patch_size=33, got 32x32"),
    ({"config": {}}, TypeError, r"config: expected a SamplingConfig or None, got dict"),
    ({"dist": torch.rand(1, 3, 32, 31)}, ValueError, r"expected the same shape"),
])
def test_sample_patches_and_sampling_density_share_one_plan_and_its_checks(kwargs, error, match):
    args = {"ref": torch.rand(1, 3, 32, 32), "dist": torch.rand(1, 3, 32, 32), "num_patches": 8, "patch_size": 16,
            "config": None, **kwargs}
    for function in (sample_patches, sampling_density):
        with pytest.raises(error, match=match):
            function(args["ref"], args["dist"], args["num_patches"], patch_size=args["patch_size"],
                     config=args["config"])
    with pytest.raises(error, match=match):
        plan_draw(args["ref"], args["dist"], args["num_patches"], args["patch_size"], args["config"])


def test_a_plan_counts_the_levels_that_receive_no_patch():
    ref, dist = caps_pair(batch=1, height=128, width=128)
    plan = plan_draw(ref, dist, 3, 16, SamplingConfig(num_scales=4, scale_ratio=3.0))
    assert plan.num_scales == 4 and [level.count for level in plan.levels] == [3]
    sample = sample_patches(ref, dist, 3, config=SamplingConfig(num_scales=4, scale_ratio=3.0))
    assert sample.scale.tolist() == [[0, 0, 0]]  # a pyramid draw, although every patch is at level 0
