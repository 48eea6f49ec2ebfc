"""sampling_density() (vtamiq_metric.sampling.density): the exact expected patch coverage of sample_patches, checked
against many real draws."""

from __future__ import annotations

import pytest
import torch

from vtamiq_metric.sampling import SamplingConfig, sample_patches, sampling_density


def _images(height: int = 40, width: int = 56) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    ref = torch.rand(2, 3, height, width, generator=gen)
    dist = ref.clone()
    dist[:, :, 4:20, 30:50] = (dist[:, :, 4:20, 30:50] + 0.4).clamp(0, 1)  # a strongly differing block
    return ref, dist


def _coverage(sample, height: int, width: int, patch_size: int) -> torch.Tensor:
    """(B, H, W) number of the sample's patches covering each full-resolution pixel."""
    batch, count = sample.top_left.shape[:2]
    scale = sample.scale if sample.scale is not None else torch.zeros(batch, count, dtype=torch.long)
    marks = torch.zeros(batch, height + 1, width + 1, dtype=torch.float64)  # 2-D difference array
    factor = 2**scale  # (B, N)
    top, left = sample.top_left[..., 0] * factor, sample.top_left[..., 1] * factor
    bottom, right = top + patch_size * factor, left + patch_size * factor
    b = torch.arange(batch)[:, None].expand(batch, count)
    for rows, cols, sign in ((top, left, 1.0), (top, right, -1.0), (bottom, left, -1.0), (bottom, right, 1.0)):
        marks.index_put_((b, rows, cols), torch.full(rows.shape, sign, dtype=torch.float64), accumulate=True)
    return marks.cumsum(1).cumsum(2)[:, :height, :width]


@pytest.mark.parametrize("config", [
    SamplingConfig(),
    pytest.param(SamplingConfig(2.0, 5.0, 0.25, num_scales=3, scale_ratio=1.0), marks=pytest.mark.slow),
], ids=["single-scale", "three-scales"])
def test_density_is_the_mean_coverage_of_real_draws(config):
    ref, dist = _images()
    patch, count, draws = 8, 24, 150
    density = sampling_density(ref, dist, count, patch_size=patch, config=config).double()
    empirical = sum(_coverage(sample_patches(ref, dist, count, patch_size=patch, config=config, seed=s), 40, 56, patch)
                    for s in range(draws)) / draws
    # Exact totals: every patch covers (P * 2**s)**2 pixels.
    torch.testing.assert_close(density.sum((1, 2)), empirical.sum((1, 2)), rtol=1e-9, atol=1e-6)
    # Pixelwise agreement up to Monte-Carlo noise (150 draws): measured 6-10% of the mean density on average and
    # 4-9% of the peak at worst, against about 50% and 60% for the density of the wrong pair (ref, ref).
    error = (density - empirical).abs()
    assert error.mean() < 0.2 * density.mean(), (error.mean(), density.mean())
    assert error.max() < 0.2 * density.max(), (error.max(), density.max())
    # And the density follows the difference: the changed block is covered more than the rest.
    inside = density[:, 4:20, 30:50].mean()
    assert inside > 1.5 * density.mean()


def test_identical_images_have_no_difference_term_and_uniform_only_is_flat_inside():
    ref, _ = _images()
    uniform = SamplingConfig(centre_weight=0.0, diff_weight=1.0, uniform_weight=1.0)
    density = sampling_density(ref, ref, 30, patch_size=8, config=uniform)
    # No difference, uniform top-left positions: pixels at least P - 1 from every border are covered equally.
    core = density[:, 7:-7, 7:-7]
    torch.testing.assert_close(core, torch.full_like(core, float(core[0, 0, 0])), rtol=0.1, atol=0.0)
    assert density.dtype == torch.float32 and density.shape == (2, 40, 56) and bool((density >= 0).all())


def test_bad_arguments_raise_with_expected_and_got():
    ref, dist = _images()
    with pytest.raises(ValueError, match="expected an int >= 1, got 0"):
        sampling_density(ref, dist, 0)
    with pytest.raises(TypeError, match="expected a SamplingConfig or None, got dict"):
        sampling_density(ref, dist, 4, config={})
    with pytest.raises(ValueError, match=r"expected the same shape"):
        sampling_density(ref, dist[..., :-1], 4)
