"""The CAPS probability of each cell, per pyramid level: the one generator ``sample_patches`` and
``sampling_density`` share.

The probability map over the top-left candidates of a level is ``w_c * C + w_d * D + w_u * U``, each component
normalised to sum 1 first:

- ``C`` (centre bias): an anisotropic Gaussian evaluated at the patch centre, centred on the image centre, with
  standard deviations ``centre_sigma = (0.25, 0.25)`` times the image height and width by default. The authors used
  the DeepGaze II MIT1003 fixation log-density (``centerbias.npy``), which we do not ship; a Gaussian whose standard
  deviation is a quarter of each side is a broad centre bias of comparable spread (most of its mass lies in the
  central half of each axis) and stretches with the aspect ratio, as fixation densities do.
- ``D`` (perceptual difference, :mod:`vtamiq_metric.sampling.difference`). When the images are (numerically)
  identical ``D`` is absent: it contributes nothing and the remaining components are renormalised (a pure-difference
  config then samples uniformly).
- ``U``: uniform over candidates.

A cell's probability is the sum of the map over its candidates. The centre and uniform masses are computed on the CPU
in float64.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from ._common import check_fits_a_patch, check_int, check_pair, check_real
from .config import SamplingConfig
from .difference import diff_cell_masses
from .pyramid import Level, effective_num_scales, plan_levels

__all__ = ["DrawPlan", "centre_bias", "level_probabilities", "plan_draw"]

_logger = logging.getLogger(__name__)

_MAX_PATCHES = 1 << 20
# A difference map whose mean per-pixel footprint value is at or below this is treated as "images identical".
_DIFF_EPS = 1e-20


@dataclass(frozen=True)
class DrawPlan:
    """The checked arguments of a draw and its levels.

    Attributes:
        num_patches: patches per image N.
        patch_size: P.
        config: the sampling settings.
        num_scales: the effective number of scales (:func:`~vtamiq_metric.sampling.pyramid.effective_num_scales`),
            counting levels that receive no patch.
        levels: the levels that receive patches, ``0, 1, ..., len - 1``.
    """

    num_patches: int
    patch_size: int
    config: SamplingConfig
    num_scales: int
    levels: list[Level]


def plan_draw(ref: Tensor, dist: Tensor, num_patches: int, patch_size: int, config: SamplingConfig | None, *,
              allow_uint8: bool = False) -> DrawPlan:
    """Check the arguments of :func:`sample_patches` or :func:`sampling_density` and plan the levels.

    Args:
        ref: (B, 3, H, W) float reference images (or uint8 when ``allow_uint8``).
        dist: the distorted images, same shape, dtype family and device.
        num_patches: patches per image, in ``[1, 2**20]``.
        patch_size: P, >= 1, at most H and W.
        config: sampling settings, or None for ``SamplingConfig()``.
        allow_uint8: accept uint8 images.

    Returns:
        The plan.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: shapes or devices differ, the images are not (B, 3, H, W), an image is smaller than a patch, or
            ``num_patches`` is out of range.
    """
    check_pair(ref, dist, allow_uint8=allow_uint8)
    num_patches = check_int("num_patches", num_patches, minimum=1)
    if num_patches > _MAX_PATCHES:
        raise ValueError(f"num_patches: expected an int <= {_MAX_PATCHES}, got {num_patches}")
    patch_size = check_int("patch_size", patch_size, minimum=1)
    if config is None:
        config = SamplingConfig()
    elif not isinstance(config, SamplingConfig):
        raise TypeError(f"config: expected a SamplingConfig or None, got {type(config).__name__}")
    height, width = ref.shape[-2:]
    check_fits_a_patch(height, width, patch_size)
    return DrawPlan(num_patches=num_patches, patch_size=patch_size, config=config,
                    num_scales=effective_num_scales(height, width, patch_size, config.num_scales),
                    levels=plan_levels(height, width, num_patches, patch_size, config))


def level_probabilities(ref: Tensor, dist: Tensor, plan: DrawPlan) -> Iterator[tuple[Level, Tensor]]:
    """Each level of the plan with the probabilities of its cells.

    Args:
        ref: (B, 3, H, W) reference images, checked by :func:`plan_draw`.
        dist: the distorted images.
        plan: the draw's plan.

    Yields:
        ``(level, prob)`` per level in order, ``prob`` (B, cells) float64 on the CPU: non-negative masses (not
        normalised) with a positive sum per image, cells in raster order.
    """
    config, batch = plan.config, ref.shape[0]
    diff_masses = None
    if config.diff_weight > 0:
        diff_masses = diff_cell_masses(ref, dist, plan.levels, config.diff_type)  # (B, total cells) CPU
    offset = 0
    for level in plan.levels:
        diff = None if diff_masses is None else diff_masses[:, offset : offset + level.cells]  # (B, K)
        offset += level.cells
        yield level, _cell_probabilities(level, diff, config).expand(batch, -1)  # (B, K)


def _centre_profile(size: int, patch_size: int, sigma: float) -> Tensor:
    """Unnormalised 1-D Gaussian over the ``size - P + 1`` top-left candidates, evaluated at patch centres."""
    top = torch.arange(size - patch_size + 1, dtype=torch.float64)  # (size - P + 1,)
    z = (top + patch_size / 2 - size / 2) / (sigma * size)
    z2 = z * z
    return torch.exp(-0.5 * (z2 - z2.min()))  # max 1, never all-zero


def centre_bias(height: int, width: int, sigma: tuple[float, float] = (0.25, 0.25), *, patch_size: int = 16) -> Tensor:
    """Analytic centre-bias probability over patch top-left candidates.

    An anisotropic Gaussian centred on the image centre, evaluated at each candidate patch centre
    ``(top + P/2, left + P/2)``, with standard deviations ``sigma[0] * height`` and ``sigma[1] * width`` pixels.

    Args:
        height: image height H, >= patch_size.
        width: image width W, >= patch_size.
        sigma: (row, col) standard deviations as fractions of H and W, > 0.
        patch_size: patch side P; use 1 for a per-pixel map.

    Returns:
        (H - P + 1, W - P + 1) float64 CPU tensor, non-negative, summing to 1; largest at the centre.

    Raises:
        ValueError: the image is smaller than a patch, or a sigma is not positive.

    Example:
        >>> centre_bias(64, 96).shape
        torch.Size([49, 81])
    """
    height = check_int("height", height, minimum=1)
    width = check_int("width", width, minimum=1)
    patch_size = check_int("patch_size", patch_size, minimum=1)
    check_fits_a_patch(height, width, patch_size)
    if len(sigma) != 2:
        raise ValueError(f"sigma: expected a (row, col) pair, got {sigma!r}")
    for value in sigma:
        check_real("sigma", value, minimum=0.0, strict=True)
    rows = _centre_profile(height, patch_size, float(sigma[0]))  # (H - P + 1,)
    cols = _centre_profile(width, patch_size, float(sigma[1]))  # (W - P + 1,)
    prob = rows[:, None] * cols[None, :]  # (H - P + 1, W - P + 1)
    return prob / prob.sum()


def _cell_probabilities(level: Level, diff: Tensor | None, config: SamplingConfig) -> Tensor:
    """(B or 1, cells) float64 cell probabilities for one level; ``diff`` is (B, cells) difference masses or None."""
    patch_size = level.patch_size
    hc, wc = level.candidates
    row_edges, col_edges = level.edges
    rows, cols = (side.to(torch.float64) for side in level.sides)  # (gh,), (gw,)
    area = (rows[:, None] * cols[None, :]).reshape(-1)  # (cells,) candidates per cell
    prob = config.uniform_weight * area / (hc * wc)  # (cells,)
    if config.centre_weight > 0:
        zero = torch.zeros(1, dtype=torch.float64)
        row_cum = torch.cat([zero, _centre_profile(level.height, patch_size, config.centre_sigma[0]).cumsum(0)])
        col_cum = torch.cat([zero, _centre_profile(level.width, patch_size, config.centre_sigma[1]).cumsum(0)])
        centre = (row_cum[row_edges[1:]] - row_cum[row_edges[:-1]])[:, None] * (
            col_cum[col_edges[1:]] - col_cum[col_edges[:-1]]
        )[None, :]  # (gh, gw)
        prob = prob + config.centre_weight * (centre / centre.sum()).reshape(-1)
    prob = prob.expand(1 if diff is None else diff.shape[0], -1)  # (B or 1, cells)
    if diff is not None:
        total = diff.sum(dim=1, keepdim=True)  # (B, 1)
        present = total > _DIFF_EPS * hc * wc * patch_size * patch_size
        prob = prob + config.diff_weight * torch.where(present, diff / total.clamp(min=1e-300), 0.0)
    empty = prob.sum(dim=1) <= 0  # only when the difference is the sole component and the images are identical
    if bool(empty.any()):
        _logger.debug("difference map is empty and no other component has weight; sampling uniformly")
        prob = torch.where(empty[:, None], area[None, :], prob)
    return prob
