"""The perceptual difference and its cell masses (vtamiq_metric.sampling.difference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.helpers import quadrant_pair
from vtamiq_metric.sampling import SamplingConfig, _common, difference_map, sample_patches
from vtamiq_metric.sampling.difference import diff_cell_masses, ssim_strips
from vtamiq_metric.sampling.footprint import CellMasses
from vtamiq_metric.sampling.pyramid import plan_levels


def test_difference_map_is_zero_where_the_images_agree() -> None:
    ref, dist = quadrant_pair(32)
    for kind in ("mse", "ssim"):
        diff = difference_map(ref, dist, kind)
        assert diff.shape == (2, 32, 32) and bool((diff >= 0).all())
        assert float(diff[:, :12, 20:].min()) > 0 and float(diff[:, 22:, :10].max()) == 0
        assert float(difference_map(ref, ref.clone(), kind).abs().max()) == 0
    mse = difference_map(torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5))
    assert torch.equal(mse, torch.full((1, 4, 4), 0.25, dtype=torch.float64))


@pytest.mark.parametrize("num_scales", [1, 3])
def test_uint8_images_and_strips_give_the_float_paths_patches(num_scales, monkeypatch):
    """uint8 input (v / 255) samples exactly like the float image, and row strips give the same masses bit for bit."""
    gen = torch.Generator().manual_seed(3)
    ref8 = torch.randint(0, 256, (2, 3, 75, 61), generator=gen, dtype=torch.uint8)
    dist8 = (ref8.to(torch.int16) + torch.randint(-40, 40, ref8.shape, generator=gen, dtype=torch.int16)).clamp(0, 255)
    dist8 = dist8.to(torch.uint8)
    config = SamplingConfig(1.0, 2.0, 0.5, num_scales=num_scales)
    ref_f = torch.from_numpy(ref8.numpy().astype(np.float32) / np.float32(255))  # what decoding to float gives
    dist_f = torch.from_numpy(dist8.numpy().astype(np.float32) / np.float32(255))
    whole = sample_patches(ref_f, dist_f, 64, config=config, seed=5)
    small = sample_patches(ref8, dist8, 64, config=config, seed=5)
    monkeypatch.setattr(_common, "_STRIP_PIXELS", 61 * 4)  # strips of 4 rows: 19 strips
    strips = sample_patches(ref8, dist8, 64, config=config, seed=5)
    for sample in (small, strips):
        assert sample.ref.dtype == torch.float32
        assert torch.equal(sample.top_left, whole.top_left)
        assert torch.equal(sample.ref, whole.ref) and torch.equal(sample.dist, whole.dist)
    masses_whole = diff_cell_masses(ref_f, dist_f, plan_levels(75, 61, 64, 16, config), "mse")
    masses_strips = diff_cell_masses(ref8, dist8, plan_levels(75, 61, 64, 16, config), "mse")
    assert torch.equal(masses_strips, masses_whole)


@pytest.mark.parametrize(("height", "width", "num_scales", "dtype"), [
    (75, 61, 3, torch.float32), (130, 90, 4, torch.uint8), (40, 40, 1, torch.float64),
])
def test_ssim_strips_give_the_masses_of_the_whole_image(height, width, num_scales, dtype, monkeypatch):
    gen = torch.Generator().manual_seed(height)
    if dtype == torch.uint8:
        ref = torch.randint(0, 256, (2, 3, height, width), generator=gen, dtype=dtype)
        dist = ref.flip(-1).contiguous()
    else:
        ref = torch.rand(2, 3, height, width, generator=gen, dtype=dtype)
        dist = (ref + 0.1 * torch.randn(ref.shape, generator=gen, dtype=dtype)).clamp(0, 1)
    levels = plan_levels(height, width, 64, 16, SamplingConfig(diff_type="ssim", num_scales=num_scales))
    # The whole-image computation: each level's 1 - SSIM map of the pooled float64 images, summed per cell.
    x, y = (_common.as_float(image).double() for image in (ref, dist))
    whole = []
    for level in levels:
        if level.index > 0:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        reducer = CellMasses(level, ref.device)
        reducer.add_rows(difference_map(x, y, "ssim"))
        whole.append(reducer.masses())
    expected = torch.cat(whole, dim=1)
    assert torch.equal(diff_cell_masses(ref, dist, levels, "ssim"), expected)  # one strip per level
    monkeypatch.setattr(_common, "_STRIP_PIXELS", width * 8 * 12)  # strips of 12 rows or fewer, with their halo
    assert len(ssim_strips(width, levels[0])) > 1
    assert torch.equal(diff_cell_masses(ref, dist, levels, "ssim"), expected)
