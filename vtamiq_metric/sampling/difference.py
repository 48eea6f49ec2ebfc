"""The perceptual difference CAPS weights, and its mass per cell.

``D`` is computed from the un-normalised [0, 1] images: ``"mse"`` is the per-pixel squared error averaged over
channels; ``"ssim"`` is ``1 - SSIM`` (Gaussian window 11, sigma 1.5, replicate padding, ``C1 = 0.01**2``,
``C2 = 0.03**2`` for data range 1, SSIM averaged over channels) clamped to >= 0. The value of a candidate is the sum of
the per-pixel difference over the patch footprint, i.e. the difference a patch at that position would cover; a cell's
mass is the sum over its candidates (:class:`~vtamiq_metric.sampling.footprint.CellMasses`).

The difference is computed on the input's device in float64 (float32 on MPS, which has no float64) and reduced to
per-cell masses there; only these ``(B, cells)`` masses cross to the CPU, in one transfer. The ``"mse"`` difference is
computed in row strips of at most ``_STRIP_PIXELS`` pixels (a multiple of the deepest level's pooling factor, so that
each pooled row comes from one strip): its float64 working set stays a few hundred MB whatever the image size, and
the masses are bit-identical to a whole-image computation. Pooling is linear, so one pyramid of the signed difference
replaces the two image pyramids. The ``"ssim"`` difference is computed on the whole image (about a dozen float64 maps
per pixel).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import as_float, check_pair, strip_rows, work_dtype
from .config import DIFF_TYPES
from .footprint import CellMasses
from .pyramid import Level

__all__ = ["diff_cell_masses", "difference_map"]

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = 0.01**2
_SSIM_C2 = 0.03**2


def _gaussian_blur(x: Tensor) -> Tensor:
    """Separable Gaussian blur (window 11, sigma 1.5) with replicate padding; keeps the spatial size.

    Implemented as 11 shifted multiply-adds per axis with Python-float weights: much faster than a grouped float64
    convolution on the CPU, and the weights are bit-identical on every device.
    """
    radius = _SSIM_WINDOW // 2
    taps = [math.exp(-0.5 * ((i - radius) / _SSIM_SIGMA) ** 2) for i in range(_SSIM_WINDOW)]
    norm = math.fsum(taps)
    taps = [t / norm for t in taps]
    height, width = x.shape[-2:]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")  # (B, C, H + 10, W + 10)
    rows = x[..., :, 0:width] * taps[0]  # (B, C, H + 10, W)
    for i in range(1, _SSIM_WINDOW):
        rows.add_(x[..., :, i : i + width], alpha=taps[i])
    out = rows[..., 0:height, :] * taps[0]  # (B, C, H, W)
    for i in range(1, _SSIM_WINDOW):
        out.add_(rows[..., i : i + height, :], alpha=taps[i])
    return out


def difference_map(ref: Tensor, dist: Tensor, kind: str = "mse") -> Tensor:
    """Per-pixel perceptual difference used by CAPS.

    Args:
        ref: (B, 3, H, W) float reference images in [0, 1].
        dist: (B, 3, H, W) float distorted images in [0, 1], same shape and device.
        kind: ``"mse"``: squared error averaged over channels, in [0, 1]; ``"ssim"``: ``1 - SSIM`` with a Gaussian
            window (11, sigma 1.5), replicate padding, constants for data range 1, SSIM averaged over channels,
            clamped to >= 0 (range [0, 2]).

    Returns:
        (B, H, W) non-negative map on the input's device, float64 (float32 on MPS). 0 where the images agree; larger
        means more different.

    Raises:
        TypeError: inputs are not float tensors.
        ValueError: shapes differ or are not (B, 3, H, W), or ``kind`` is unknown.

    Example:
        >>> ref = torch.zeros(1, 3, 8, 8)
        >>> difference_map(ref, ref + 0.5).max().item()
        0.25
    """
    check_pair(ref, dist)
    if kind not in DIFF_TYPES:
        raise ValueError(f"kind: expected one of {DIFF_TYPES}, got {kind!r}")
    dtype = work_dtype(ref.device)
    x = ref.to(dtype)
    y = dist.to(dtype)
    if kind == "mse":
        return (x - y).square().mean(dim=1)  # (B, H, W)
    channels = x.shape[1]
    stats = _gaussian_blur(torch.cat([x, y, x * x, y * y, x * y], dim=1))  # (B, 5C, H, W)
    mu_x, mu_y, xx, yy, xy = stats.split(channels, dim=1)  # 5 x (B, C, H, W)
    var_x = xx - mu_x * mu_x
    var_y = yy - mu_y * mu_y
    cov = xy - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu_x * mu_x + mu_y * mu_y + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    )  # (B, C, H, W)
    return (1.0 - ssim.mean(dim=1)).clamp(min=0.0)  # (B, H, W)


def diff_cell_masses(ref: Tensor, dist: Tensor, levels: list[Level], kind: str) -> Tensor:
    """The difference mass of every cell of every level (see the module docstring).

    Args:
        ref: (B, 3, H, W) float images in [0, 1], or uint8 (read as ``v / 255``).
        dist: the distorted images, same shape, dtype family and device.
        levels: the levels of the draw, indices ``0, 1, ..., len - 1``
            (:func:`~vtamiq_metric.sampling.pyramid.plan_levels`).
        kind: ``"mse"`` or ``"ssim"``.

    Returns:
        (B, total cells) float64 CPU masses, the cells of level 0 first, each level's in raster order.
    """
    dtype = work_dtype(ref.device)
    reducers = [CellMasses(level, ref.device) for level in levels]
    if kind != "mse":
        x = as_float(ref.detach()).to(dtype)
        y = as_float(dist.detach()).to(dtype)
        for level, reducer in zip(levels, reducers):
            if level.index > 0:
                x = F.avg_pool2d(x, 2)  # (B, 3, H_s, W_s)
                y = F.avg_pool2d(y, 2)
            reducer.add_rows(difference_map(x, y, kind))  # (B, H_s, W_s)
    else:
        step = strip_rows(ref.shape[-1], 2 ** levels[-1].index)
        for top in range(0, ref.shape[-2], step):
            # A copy of the ref strip becomes the difference in place (the inputs themselves are never written).
            delta = as_float(ref[..., top : top + step, :].detach()).to(dtype, copy=True)  # (B, 3, h, W)
            delta -= as_float(dist[..., top : top + step, :].detach()).to(dtype)
            for level, reducer in zip(levels, reducers):
                if level.index > 0:
                    delta = F.avg_pool2d(delta, 2)  # (B, 3, h_s, W_s)
                reducer.add_rows(delta.square().mean(dim=1))  # (B, h_s, W_s)
            del delta  # before the next strip's x and delta exist
    masses = [reducer.masses() for reducer in reducers]  # (B, gh * gw) each
    return torch.cat(masses, dim=1).to("cpu", torch.float64)  # (B, total cells): the one device -> CPU transfer
