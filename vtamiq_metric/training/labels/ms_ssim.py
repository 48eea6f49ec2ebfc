"""MS-SSIM (Wang, Simoncelli & Bovik 2003) and SSIM (Wang et al. 2004): an alternative weak label to VSI.

Computed by piq (``piq.multi_scale_ssim``, ``piq.ssim``; Apache-2.0), a maintained implementation of the standard
definitions: an 11 x 11 Gaussian window with sigma 1.5, 'valid' filtering (no padding), ``K1 = 0.01``, ``K2 = 0.03``
for data in [0, 1], each RGB channel scored separately and the channel scores averaged. MS-SSIM uses five scales with
the weights ``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)`` of the paper and 2 x 2 average pooling between scales (piq
replicates the first row or column of an odd-sized scale before pooling), the contrast-structure term at scales 1-4
and the full SSIM at scale 5, each clipped at 0 before the weighted geometric mean. This module adds our input
checks (exceptions, not asserts), a shared reference (batch size 1), float32 filtering with float64 results, and the
small-image fallback.

Five scales need ``min(H, W) >= 161`` (the 11-tap window must fit in the 5th scale). Smaller images fall back to
single-scale SSIM with the same window and constants; :func:`ms_ssim` documents this per call through its logger at
debug level. The original MATLAB SSIM also downsamples large images by ``round(min(H, W) / 256)`` first; we do not.

The SSIM of CAPS (:func:`vtamiq_metric.sampling.difference_map`) is a different quantity on purpose: a per-pixel map
of the image's size (replicate padding, float64, bit-identical weights on every device) that says where two images
differ, not one number per image.
"""

from __future__ import annotations

import logging
from types import ModuleType

import torch

from vtamiq_metric.training.labels._common import check_pair

__all__ = ["MS_SSIM_MIN_SIZE", "ms_ssim", "ssim"]

_logger = logging.getLogger(__name__)

_WINDOW_SIZE = 11
_NUM_SCALES = 5
# Filtering runs in float32: faster than float64 on the CPU and accurate to ~1e-6, plenty for a weak label.
_DTYPE = torch.float32

MS_SSIM_MIN_SIZE = (_WINDOW_SIZE - 1) * 2 ** (_NUM_SCALES - 1) + 1
"""Smallest image side (161 pixels) for which :func:`ms_ssim` uses all five scales."""


def _piq() -> ModuleType:
    try:
        import piq
    except ImportError as exc:  # piq is a dependency of the train extra
        raise ImportError("the MS-SSIM and SSIM labels need piq: pip install 'vtamiq-metric[train]'") from exc
    return piq


def _prepare(ref: torch.Tensor, dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked float32 inputs of the same shape, clamped into [0, 1] (``check_pair`` admits 1e-6 of rounding)."""
    check_pair(ref, dist)
    if min(dist.shape[-2:]) < _WINDOW_SIZE:
        raise ValueError(
            f"expected images of at least {_WINDOW_SIZE} x {_WINDOW_SIZE} pixels for SSIM, got "
            f"{dist.shape[-2]} x {dist.shape[-1]}"
        )
    ref32 = ref.to(_DTYPE).clamp(0.0, 1.0).expand_as(dist)  # (B, 3, H, W); a shared reference is a view
    return ref32, dist.to(_DTYPE).clamp(0.0, 1.0)


def _ssim(ref32: torch.Tensor, dist32: torch.Tensor) -> torch.Tensor:
    return _piq().ssim(ref32, dist32, data_range=1.0, reduction="none", downsample=False).to(torch.float64)


def ssim(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Single-scale SSIM (Gaussian window 11 / 1.5, valid filtering), mean over pixels and RGB channels.

    Args:
        ref: (B, 3, H, W) float RGB in [0, 1] (or (1, 3, H, W), compared with every image of ``dist``).
        dist: (B, 3, H, W) float RGB in [0, 1], same device; H, W >= 11.

    Returns:
        (B,) float64 similarity, 1 = identical, lower = more distorted (higher is better); at most 1 and, for
        natural images, in [0, 1] (negative only for anti-correlated content).

    Raises:
        TypeError: if an input is not a floating-point tensor.
        ValueError: on wrong shapes, different devices, values outside [0, 1] or images smaller than 11 x 11.
    """
    return _ssim(*_prepare(ref, dist))


def ms_ssim(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Multi-scale SSIM (5 scales) per pair, or SSIM when ``min(H, W) < 161`` (see the module docstring).

    Args:
        ref: (B, 3, H, W) float RGB in [0, 1] (or (1, 3, H, W), compared with every image of ``dist``).
        dist: (B, 3, H, W) float RGB in [0, 1], same device; H, W >= 11.

    Returns:
        (B,) float64 similarity in [0, 1]; 1 = identical, lower = more distorted (higher is better).

    Raises:
        TypeError: if an input is not a floating-point tensor.
        ValueError: on wrong shapes, different devices, values outside [0, 1] or images smaller than 11 x 11.

    Example:
        >>> ref = torch.rand(1, 3, 192, 192)
        >>> ms_ssim(ref, ref)
        tensor([1.], dtype=torch.float64)
    """
    ref32, dist32 = _prepare(ref, dist)
    if min(dist32.shape[-2:]) < MS_SSIM_MIN_SIZE:
        _logger.debug(
            "ms_ssim: %d x %d is smaller than %d pixels per side; using single-scale SSIM",
            dist32.shape[-2],
            dist32.shape[-1],
            MS_SSIM_MIN_SIZE,
        )
        return _ssim(ref32, dist32).clamp(0.0, 1.0)
    score = _piq().multi_scale_ssim(ref32, dist32, data_range=1.0, reduction="none")  # (B,)
    return score.to(torch.float64).clamp(0.0, 1.0)
