"""Viewing distance: large images are scored at the scale a model's labels describe.

Models whose config sets ``downsample_side`` (the bundled default: 256) see an image whose shorter side is much longer
than that side at a coarser scale: :func:`viewing_downsample` averages ``F x F`` pixel blocks,
``F = max(1, round(min(H, W) / side))`` (:func:`viewing_factor`), before any patch is drawn. This is the
viewing-distance rule of SSIM's reference implementation and of VSI (``side = 256``), the label such models learn
from, so a 512 x 384 image is scored at 256 x 192, the scale its labels describe; images shorter than ``1.5 * side``
are unchanged. The sampler itself never downsamples: :func:`vtamiq_metric.score`, :class:`vtamiq_metric.VTAMIQLoss`,
:func:`vtamiq_metric.damage_map` and the training data call :func:`viewing_downsample` first.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import as_float, check_int, strip_rows

__all__ = ["viewing_downsample", "viewing_factor"]


def viewing_factor(height: int, width: int, side: int = 256) -> int:
    """The viewing-distance factor ``F = max(1, round(min(H, W) / side))``, rounding halves up as MATLAB does.

    ``side = 256`` is the rule of SSIM's reference implementation and of VSI (a 384 x 512 image gets 2: 1.5 rounds up,
    unlike Python's ``round``; 640 x 640 gets 3).

    Args:
        height: image height H in pixels, >= 1.
        width: image width W in pixels, >= 1.
        side: the shorter side, in pixels, at which an image is seen whole, >= 1.

    Returns:
        F >= 1.
    """
    for name, value in (("height", height), ("width", width), ("side", side)):
        check_int(name, value, minimum=1)
    return max(1, math.floor(min(height, width) / side + 0.5))


def viewing_downsample(*images: Tensor, side: int | None) -> tuple[tuple[Tensor, ...], int]:
    """Average ``F x F`` pixel blocks of every image, ``F = viewing_factor(H, W, side)`` (see the module docstring).

    Rows and columns beyond the last whole block (fewer than ``F``) are dropped, as ``avg_pool2d`` does. ``uint8``
    images are pooled from float32 row strips (the values of pooling ``v / 255``), so large 8-bit images never exist
    as full-size float copies. The operation is linear and differentiable; with ``F = 1`` (or ``side=None``) the
    inputs are returned unchanged.

    Args:
        *images: (B, C, H, W) images of one size (e.g. the reference and the distorted batch), float in [0, 1] or
            uint8; each is pooled once.
        side: the model config's ``downsample_side``; None keeps the native resolution.

    Returns:
        ``(images, F)``: the images as float of size ``(H // F, W // F)`` in the order given (the inputs themselves
        when ``F = 1``), and F.

    Raises:
        ValueError: no image, or images of different heights and widths.

    Example:
        >>> ref = torch.rand(1, 3, 512, 768)
        >>> (small, _), factor = viewing_downsample(ref, ref, side=256)
        >>> tuple(small.shape), factor
        ((1, 3, 256, 384), 2)
    """
    sizes = {tuple(image.shape[-2:]) for image in images}
    if len(sizes) != 1:
        raise ValueError(f"viewing_downsample: expected one or more images of one size, got sizes {sorted(sizes)}")
    if side is None:
        return images, 1
    height, width = sizes.pop()
    factor = viewing_factor(int(height), int(width), side)
    if factor == 1:
        return images, 1
    return tuple(_box_pool(image, factor) for image in images), factor


def _box_pool(image: Tensor, factor: int) -> Tensor:
    """``avg_pool2d(image, factor)``; a uint8 image is pooled by float32 row strips (whole blocks per strip)."""
    if image.dtype != torch.uint8:
        return F.avg_pool2d(image, factor)
    step = strip_rows(image.shape[-1], factor)
    usable = image.shape[-2] // factor * factor
    parts = [F.avg_pool2d(as_float(image[..., top : min(top + step, usable), :]), factor)
             for top in range(0, usable, step)]
    return torch.cat(parts, dim=-2)
