"""``sampling_density``: where CAPS puts its patches, as the exact expected coverage of each pixel."""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import work_dtype
from .config import SamplingConfig
from .footprint import footprint_coverage
from .probability import level_probabilities, plan_draw

__all__ = ["sampling_density"]


def sampling_density(
    ref: Tensor,
    dist: Tensor,
    num_patches: int,
    *,
    patch_size: int = 16,
    config: SamplingConfig | None = None,
) -> Tensor:
    """Expected number of CAPS patches covering each pixel in one draw of :func:`sample_patches`.

    This is the exact expectation of the sampler, not an approximation of it: the probability map (centre bias,
    difference, uniform) is allocated to cells, every cell receives ``n * mass`` patches on average (up to the
    ``2**-32`` quantisation), and inside a cell every candidate position is equally likely. The density of patch
    top-left corners is therefore constant within each cell; summing it over the ``P x P`` footprint of each position
    gives the coverage of every pixel. A level-``s`` patch covers ``(P * 2**s)**2`` full-resolution pixels (the
    ``2**s`` blocks its pooled pixels came from); pixels cut off by the pooling's floor are never covered at that level.

    Args:
        ref: (B, 3, H, W) float reference images in [0, 1], H and W >= patch_size.
        dist: (B, 3, H, W) float distorted images, same shape and device.
        num_patches: patches per image N, as passed to :func:`sample_patches`.
        patch_size: patch side P in pixels.
        config: sampling weights and scales; ``SamplingConfig()`` if None.

    Returns:
        (B, H, W) float32 tensor on the input's device, >= 0: the expected number of drawn patches that contain each
        pixel (average over draws of the coverage count). It sums to ``sum_s n_s * (P * 2**s)**2`` over the image
        (``N * P**2`` for one scale). Higher means the metric looks there more often.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: shapes or devices differ, the images are not (B, 3, H, W), an image is smaller than a patch, or
            ``num_patches`` is out of range.

    Example:
        >>> ref = torch.rand(1, 3, 64, 96)
        >>> density = sampling_density(ref, ref, 32)
        >>> tuple(density.shape), round(float(density.sum()))
        ((1, 64, 96), 8192)
    """
    plan = plan_draw(ref, dist, num_patches, patch_size, config)
    batch, _, height, width = ref.shape
    dtype = work_dtype(ref.device)
    density = torch.zeros(batch, height, width, dtype=dtype, device=ref.device)
    for level, prob in level_probabilities(ref, dist, plan):
        rows, cols = level.sides  # (gh,), (gw,)
        area = (rows[:, None] * cols[None, :]).reshape(-1).to(torch.float64)  # (K,)
        per_candidate = level.count * prob / prob.sum(dim=1, keepdim=True) / area  # (B, K)
        top = per_candidate.view(batch, *level.grid).repeat_interleave(rows, dim=1).repeat_interleave(cols, dim=2)
        cover = footprint_coverage(top.to(ref.device, dtype), level.patch_size)  # (B, H_s, W_s)
        factor = 2**level.index
        cover = cover.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)  # (B, H_s * 2**s, W_s * 2**s)
        density[:, : cover.shape[1], : cover.shape[2]] += cover
    return density.float()
