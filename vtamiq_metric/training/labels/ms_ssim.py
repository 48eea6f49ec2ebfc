"""MS-SSIM (Wang, Simoncelli & Bovik 2003) and SSIM (Wang et al. 2004): an alternative weak label to VSI.

Our own batched implementation of the standard definitions (filtering in float32, results in float64): an 11 x 11
Gaussian window with sigma 1.5, 'valid' filtering (no padding), ``K1 = 0.01``, ``K2 = 0.03`` for data in [0, 1], each
RGB channel scored separately and the channel scores averaged. MS-SSIM uses five scales with the weights
``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)`` of the paper, 2 x 2 average pooling between scales (an odd last row or
column is dropped), the contrast-structure term at scales 1-4 and the full SSIM at scale 5, each clipped at 0 before
the weighted geometric mean.

Five scales need ``min(H, W) >= 161`` (the 11-tap window must fit in the 5th scale). Smaller images fall back to
single-scale SSIM with the same window and constants; :func:`ms_ssim` documents this per call through its logger at
debug level. The original MATLAB SSIM also downsamples large images by ``round(min(H, W) / 256)`` first; we do not.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from vtamiq_metric.training.labels._common import check_pair

__all__ = ["MS_SSIM_MIN_SIZE", "ms_ssim", "ssim"]

_logger = logging.getLogger(__name__)

_WINDOW_SIZE = 11
_WINDOW_SIGMA = 1.5
_K1 = 0.01
_K2 = 0.03
_SCALE_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# Filtering runs in float32: 2-3x faster than float64 on the CPU and accurate to ~1e-6, plenty for a weak label.
_DTYPE = torch.float32

MS_SSIM_MIN_SIZE = (_WINDOW_SIZE - 1) * 2 ** (len(_SCALE_WEIGHTS) - 1) + 1
"""Smallest image side (161 pixels) for which :func:`ms_ssim` uses all five scales."""


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian window, (11,)."""
    offsets = torch.arange(_WINDOW_SIZE, dtype=dtype, device=device) - (_WINDOW_SIZE - 1) / 2
    window = torch.exp(-(offsets**2) / (2 * _WINDOW_SIGMA**2))
    return window / window.sum()


def _filter(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filtering of every plane of (B, C, H, W) -> (B, C, H - 10, W - 10).

    Written as weighted sums of shifted slices, which is several times faster on the CPU than a grouped ``conv2d``.
    """
    taps = window.shape[0]
    height, width = x.shape[-2] - taps + 1, x.shape[-1] - taps + 1
    rows = x[..., 0:height, :] * window[0]
    for k in range(1, taps):  # 11 taps, not a loop over pixels or images
        rows += x[..., k : k + height, :] * window[k]
    out = rows[..., 0:width] * window[0]  # (B, C, H - 10, W - 10)
    for k in range(1, taps):
        out += rows[..., k : k + width] * window[k]
    return out


def _ssim_terms(ref: torch.Tensor, dist: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure term per image and channel, each (B, C).

    ``ref`` may have batch size 1: its local statistics are computed once and broadcast.
    """
    c1 = _K1**2
    c2 = _K2**2
    mu_r = _filter(ref, window)  # (1 or B, C, h, w)
    mu_d = _filter(dist, window)  # (B, C, h, w)
    var_r = _filter(ref * ref, window) - mu_r**2
    var_d = _filter(dist * dist, window) - mu_d**2
    cov = _filter(ref * dist, window) - mu_r * mu_d
    cs_map = (2 * cov + c2) / (var_r + var_d + c2)
    ssim_map = (2 * mu_r * mu_d + c1) / (mu_r**2 + mu_d**2 + c1) * cs_map
    return ssim_map.mean(dim=(-2, -1)), cs_map.mean(dim=(-2, -1))


def _prepare(ref: torch.Tensor, dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_pair(ref, dist)
    if min(dist.shape[-2:]) < _WINDOW_SIZE:
        raise ValueError(
            f"expected images of at least {_WINDOW_SIZE} x {_WINDOW_SIZE} pixels for SSIM, got "
            f"{dist.shape[-2]} x {dist.shape[-1]}"
        )
    return ref.to(_DTYPE), dist.to(_DTYPE)


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
    ref32, dist32 = _prepare(ref, dist)
    ssim_val, _ = _ssim_terms(ref32, dist32, _gaussian_window(_DTYPE, dist32.device))
    return ssim_val.to(torch.float64).mean(dim=1)


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
    window = _gaussian_window(_DTYPE, dist32.device)
    if min(dist32.shape[-2:]) < MS_SSIM_MIN_SIZE:
        _logger.debug(
            "ms_ssim: %d x %d is smaller than %d pixels per side; using single-scale SSIM",
            dist32.shape[-2],
            dist32.shape[-1],
            MS_SSIM_MIN_SIZE,
        )
        ssim_val, _ = _ssim_terms(ref32, dist32, window)
        return ssim_val.to(torch.float64).mean(dim=1).clamp(0.0, 1.0)
    log_score = torch.zeros(dist32.shape[:2], dtype=torch.float64, device=dist32.device)  # (B, C)
    for level, weight in enumerate(_SCALE_WEIGHTS):  # 5 scales, not a loop over images
        if level > 0:
            ref32 = F.avg_pool2d(ref32, kernel_size=2)
            dist32 = F.avg_pool2d(dist32, kernel_size=2)
        ssim_val, cs_val = _ssim_terms(ref32, dist32, window)
        term = (ssim_val if level == len(_SCALE_WEIGHTS) - 1 else cs_val).to(torch.float64)
        log_score = log_score + weight * torch.log(term.clamp(min=torch.finfo(torch.float64).tiny))
    score = torch.exp(log_score)  # (B, C); a term clipped at 0 gives exp(-large) ~ 0
    return score.mean(dim=1).clamp(0.0, 1.0)
