"""Tests of the teacher label (VSI + CIEDE2000 + MS-SSIM, each divided by its spread)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vtamiq_metric._validation import load_image
from vtamiq_metric.training.labels import LABELS, compute_label, ms_ssim
from vtamiq_metric.training.labels.teacher import (
    SPREADS,
    ms_ssim_distortion,
    scielab,
    teacher,
    teacher_components,
    teacher_distortion,
)

# The package re-exports the function ``teacher``, which shadows the submodule of the same name as an attribute.
teacher_module = importlib.import_module("vtamiq_metric.training.labels.teacher")

pytest.importorskip("skimage")
pytest.importorskip("piq")

_COFFEE = Path(__file__).resolve().parents[3] / "examples" / "images" / "coffee_ref.png"


def _coffee_crop(side: int = 192) -> torch.Tensor:
    image = load_image(_COFFEE)
    top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
    return image[None, :, top:top + side, left:left + side].double()


def _noise(image: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (image + sigma * torch.randn(image.shape, generator=gen, dtype=image.dtype)).clamp(0, 1)


def _cast(image: torch.Tensor, gains: tuple[float, float, float] = (1.3, 0.8, 0.6)) -> torch.Tensor:
    return (image * torch.tensor(gains, dtype=image.dtype).view(1, 3, 1, 1)).clamp(0, 1)


def test_spreads_are_frozen():
    # The shipped model's labels were computed with these values (examples/bundled_model/teacher_spreads.py).
    assert SPREADS == {"vsi": 0.0503, "scielab": 7.18, "ms_ssim": 0.140}


def test_registered_as_a_similarity_label():
    assert LABELS["teacher"] is teacher
    ref = _coffee_crop(64)
    assert compute_label("teacher", ref, ref).tolist() == [1.0]
    dist = _noise(ref, 0.05)
    d = teacher_distortion(ref, dist)
    assert torch.allclose(compute_label("teacher", ref, dist), 1 / (1 + d))


def test_identical_images_give_exactly_zero():
    ref = _coffee_crop(96)
    parts = teacher_components(ref, ref)
    assert {name: value.tolist() for name, value in parts.items()} == {"vsi": [0.0], "scielab": [0.0],
                                                                       "ms_ssim": [0.0]}
    assert teacher_distortion(ref, ref).tolist() == [0.0]


def test_distortion_is_the_sum_of_the_scaled_measures():
    ref = _coffee_crop(96).expand(2, -1, -1, -1)
    dist = torch.cat([_noise(ref[:1], 0.05), _cast(ref[:1])])
    parts = teacher_components(ref[:1], dist)  # a shared reference of batch size 1 works too
    expected = sum(parts[name] / SPREADS[name] for name in SPREADS)
    assert torch.allclose(teacher_distortion(ref, dist), expected)


def test_scielab_of_uniform_colours_is_their_ciede2000():
    # The filters pass a uniform colour unchanged. sRGB black against white is L* 0 against 100: Delta E 2000 = 100.
    black, white = torch.zeros(1, 3, 16, 16), torch.ones(1, 3, 16, 16)
    assert scielab(black, white).item() == pytest.approx(100.0, abs=1e-6)
    # A uniform image's mean difference is the difference of its colour, computed directly with scikit-image.
    from skimage.color import deltaE_ciede2000, rgb2lab

    a, b = torch.tensor([0.2, 0.5, 0.7], dtype=torch.float64), torch.tensor([0.25, 0.45, 0.7], dtype=torch.float64)
    direct = float(deltaE_ciede2000(rgb2lab(a.view(1, 1, 3).numpy()), rgb2lab(b.view(1, 1, 3).numpy()))[0, 0])
    image_a, image_b = a.view(1, 3, 1, 1).expand(1, 3, 20, 20), b.view(1, 3, 1, 1).expand(1, 3, 20, 20)
    assert scielab(image_a, image_b).item() == pytest.approx(direct, rel=1e-9)


def test_scielab_discounts_fine_noise_but_not_a_cast():
    ref = _coffee_crop(128)
    noisy = _noise(ref, 0.05)
    from skimage.color import deltaE_ciede2000, rgb2lab

    def plain(x: torch.Tensor) -> float:  # CIEDE2000 pixel by pixel, without the spatial filters
        return float(deltaE_ciede2000(rgb2lab(ref[0].permute(1, 2, 0).numpy()), rgb2lab(x[0].permute(1, 2, 0).numpy()))
                     .mean())

    assert scielab(ref, noisy).item() < 0.8 * plain(noisy)
    cast = _cast(ref, (1.05, 1.0, 0.9))
    assert scielab(ref, cast).item() == pytest.approx(plain(cast), rel=0.1)


def test_ms_ssim_matches_the_five_scale_label_where_both_apply():
    ref = _coffee_crop(192)
    dist = _noise(ref, 0.05)
    # piq renormalises weights that are passed to sum to 1; the paper's five sum to 1.0001, hence the tolerance.
    assert torch.allclose(ms_ssim_distortion(ref, dist), 1 - ms_ssim(ref, dist), atol=2e-5)


@pytest.mark.parametrize(("height", "width"), [(256, 256), (193, 200), (160, 163), (45, 60), (11, 11)])
def test_ms_ssim_equals_piq_at_every_number_of_scales(height, width):
    piq = pytest.importorskip("piq")
    gen = torch.Generator().manual_seed(height)
    ref = torch.rand(2, 3, height, width, generator=gen, dtype=torch.float64)
    dist = (ref + 0.05 * torch.randn(ref.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    levels = teacher_module._ms_ssim_levels(height, width)
    weights = torch.tensor(teacher_module._MS_SSIM_WEIGHTS[:levels], dtype=torch.float64)
    expected = piq.multi_scale_ssim(ref, dist, data_range=1.0, reduction="none", scale_weights=weights)
    assert torch.allclose(ms_ssim_distortion(ref, dist), 1 - expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("side", "levels"), [(11, 1), (20, 1), (21, 2), (160, 4), (161, 5), (1000, 5)])
def test_ms_ssim_uses_the_scales_that_fit(side, levels):
    assert teacher_module._ms_ssim_levels(side, side + 7) == levels


def test_ms_ssim_refuses_images_smaller_than_the_window():
    with pytest.raises(ValueError, match="at least 11 x 11"):
        ms_ssim_distortion(torch.rand(1, 3, 10, 30), torch.rand(1, 3, 10, 30))


def test_colour_and_structure_measures_see_the_viewing_distance():
    # A 512 px image is seen through 2 x 2 block averages, so it scores like the averaged 256 px image.
    ref = _coffee_crop(256)
    big_ref = F.interpolate(ref, scale_factor=2, mode="nearest")
    big_dist = _noise(big_ref, 0.1)
    small_dist = F.avg_pool2d(big_dist, 2)
    assert scielab(big_ref, big_dist).item() == pytest.approx(scielab(ref, small_dist).item(), rel=1e-9)
    assert ms_ssim_distortion(big_ref, big_dist).item() == pytest.approx(
        ms_ssim_distortion(ref, small_dist).item(), rel=1e-6)


def test_a_colour_cast_on_top_of_noise_is_worse_for_the_teacher_though_not_for_vsi():
    # The blind spot the teacher exists for (issue 20): VSI scores noise + a strong cast better than the noise alone.
    ref = _coffee_crop(256)
    noisy = _noise(ref, 0.1)
    stacked = _cast(noisy)
    vsi_noisy, vsi_stacked = (teacher_components(ref, x)["vsi"].item() for x in (noisy, stacked))
    assert vsi_stacked < vsi_noisy
    assert teacher_distortion(ref, stacked).item() > teacher_distortion(ref, noisy).item()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="values in \\[0, 1\\]"):
        teacher_distortion(torch.zeros(1, 3, 32, 32), torch.full((1, 3, 32, 32), 2.0))
    with pytest.raises(TypeError, match="floating-point"):
        teacher_distortion(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), torch.zeros(1, 3, 32, 32))
