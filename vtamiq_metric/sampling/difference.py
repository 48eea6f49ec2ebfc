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
replaces the two image pyramids. The ``"ssim"`` difference (about a dozen float64 maps per pixel) is computed per
level in row strips of at most ``_STRIP_PIXELS // 8`` full-resolution pixels, each with the five rows above and below
that its blur reads (the image's edge rows repeated at the borders), pooled from the full-resolution rows under it:
the same values, bit for bit, as from the whole image.
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
_HALO = _SSIM_WINDOW // 2
# An "ssim" strip reads at most _STRIP_PIXELS // _SSIM_SHARE pixels of the image (it needs ten times the memory of
# an "mse" strip per pixel).
_SSIM_SHARE = 8


def _gaussian_blur(x: Tensor, *, rows_padded: bool = False) -> Tensor:
    """Separable Gaussian blur (window 11, sigma 1.5) with replicate padding.

    Implemented as 11 shifted multiply-adds per axis with Python-float weights: much faster than a grouped float64
    convolution on the CPU, and the weights are bit-identical on every device.

    Args:
        x: (B, C, H, W) maps.
        rows_padded: ``x`` already holds ``_HALO`` rows above and below the rows to blur (a row strip with its
            neighbours, or the image's edge rows repeated); only the columns are padded here.

    Returns:
        (B, C, H, W) blurred maps, or (B, C, H - 2 * _HALO, W) when ``rows_padded``.
    """
    taps = [math.exp(-0.5 * ((i - _HALO) / _SSIM_SIGMA) ** 2) for i in range(_SSIM_WINDOW)]
    norm = math.fsum(taps)
    taps = [t / norm for t in taps]
    height, width = x.shape[-2] - (2 * _HALO if rows_padded else 0), x.shape[-1]
    pad = (_HALO, _HALO, 0, 0) if rows_padded else (_HALO, _HALO, _HALO, _HALO)
    x = F.pad(x, pad, mode="replicate")  # (B, C, H + 10, W + 10)
    rows = x[..., :, 0:width] * taps[0]  # (B, C, H + 10, W)
    for i in range(1, _SSIM_WINDOW):
        rows.add_(x[..., :, i : i + width], alpha=taps[i])
    out = rows[..., 0:height, :] * taps[0]  # (B, C, H, W)
    for i in range(1, _SSIM_WINDOW):
        out.add_(rows[..., i : i + height, :], alpha=taps[i])
    return out


def _one_minus_ssim(x: Tensor, y: Tensor, *, rows_padded: bool = False) -> Tensor:
    """(B, H, W) ``1 - SSIM`` of float (B, C, H, W) images, clamped to >= 0 (see :func:`difference_map`); with
    ``rows_padded``, of the rows between the ``_HALO`` first and last ones."""
    channels = x.shape[1]
    stats = _gaussian_blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), rows_padded=rows_padded)  # (B, 5C, H, W)
    mu_x, mu_y, xx, yy, xy = stats.split(channels, dim=1)  # 5 x (B, C, H, W)
    var_x = xx - mu_x * mu_x
    var_y = yy - mu_y * mu_y
    cov = xy - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu_x * mu_x + mu_y * mu_y + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    )  # (B, C, H, W)
    return (1.0 - ssim.mean(dim=1)).clamp(min=0.0)  # (B, H, W)


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
    return _one_minus_ssim(x, y)


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
        for level, reducer in zip(levels, reducers, strict=True):
            for top, bottom, first, last in ssim_strips(ref.shape[-1], level):
                x, y = (_level_rows(image, level.index, first, last, dtype) for image in (ref, dist))
                # The image's edge rows repeated: the replicate padding a whole-image blur would see.
                index = torch.arange(top - _HALO, bottom + _HALO, device=ref.device).clamp(0, level.height - 1)
                index -= first
                reducer.add_rows(_one_minus_ssim(x.index_select(-2, index), y.index_select(-2, index),
                                                 rows_padded=True))  # (B, bottom - top, W_s)
                del x, y
    else:
        step = strip_rows(ref.shape[-1], 2 ** levels[-1].index)
        for top in range(0, ref.shape[-2], step):
            # A copy of the ref strip becomes the difference in place (the inputs themselves are never written).
            delta = as_float(ref[..., top : top + step, :].detach()).to(dtype, copy=True)  # (B, 3, h, W)
            delta -= as_float(dist[..., top : top + step, :].detach()).to(dtype)
            for level, reducer in zip(levels, reducers, strict=True):
                if level.index > 0:
                    delta = F.avg_pool2d(delta, 2)  # (B, 3, h_s, W_s)
                reducer.add_rows(delta.square().mean(dim=1))  # (B, h_s, W_s)
            del delta  # before the next strip's x and delta exist
    masses = [reducer.masses() for reducer in reducers]  # (B, gh * gw) each
    return torch.cat(masses, dim=1).to("cpu", torch.float64)  # (B, total cells): the one device -> CPU transfer


def ssim_strips(width: int, level: Level) -> list[tuple[int, int, int, int]]:
    """The row strips of one level's ``"ssim"`` difference.

    Args:
        width: the width W of the full-resolution image.
        level: the level.

    Returns:
        ``(top, bottom, first, last)`` per strip, level rows: the strip's rows ``[top, bottom)`` cover the level,
        and ``[first, last)`` are the rows its blur reads (``_HALO`` more on each side, within the level). At most
        about ``_STRIP_PIXELS // _SSIM_SHARE`` full-resolution pixels are read per strip.
    """
    factor = 2**level.index
    step = max(2 * _HALO, strip_rows(width, factor, share=_SSIM_SHARE) // factor - 2 * _HALO)
    return [(top, min(top + step, level.height), max(0, top - _HALO), min(level.height, top + step + _HALO))
            for top in range(0, level.height, step)]


def _level_rows(image: Tensor, index: int, first: int, last: int, dtype: torch.dtype) -> Tensor:
    """Rows ``[first, last)`` of level ``index`` of ``image``'s 2x2 average pyramid, pooled in ``dtype`` from the
    full-resolution rows under them (the same values as pooling the whole image)."""
    factor = 2**index
    x = as_float(image[..., first * factor : last * factor, :].detach()).to(dtype)  # (B, 3, h * 2**s, W)
    for _ in range(index):
        x = F.avg_pool2d(x, 2)
    return x  # (B, 3, last - first, W_s)
