"""Sharpness and contrast distortions: KADID types 24 (high sharpen) and 25 (contrast change).

Ports of ``imsharpenHi`` and ``imcontrastc`` (``docs/background/distortions.md``, types 24, 25).

Documented deviations / reconstructions:
    - Type 24 calls MATLAB ``imsharpen`` with ``'Radius', 3`` (Gaussian sigma = 3, 13x13 kernel, replicate borders,
      threshold 0) on L* of CIE L*a*b*. MATLAB converts with ``makecform('srgb2lab')``; we use our D65 Lab
      conversion (equal within the 4th decimal).
    - Type 25 relies on the unpublished ``curves.m``: not-a-knot cubic spline through (0, 0), (0.3, 0.25 - k/4),
      (0.5, 0.5), (0.7, 0.75 + k/4), (1, 1), clipped (docs/background/distortions.md §2.2; the 0.3/0.7 abscissae are
      the one residual uncertainty, and with them level 3, k = 0, is not the identity).
"""

from __future__ import annotations

import numpy as np

from ._matlab import curves, imgaussfilt, lab2rgb, rgb2lab, truncate

__all__ = ["contrast_change", "sharpen"]

_SHARPEN_RADIUS = 3.0


def sharpen(image: np.ndarray, amount: float) -> np.ndarray:
    """Type 24, ``imsharpenHi``: unsharp masking of L*, ``L' = L + amount (L - G * L)``, then back to sRGB, clipped.

    ``G`` is ``fspecial('gaussian', 13, 3)``, applied separably with replicate borders; L' is not clipped.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        amount: KADIS 1, 2, 3, 6, 12.

    Returns:
        (H, W, 3) float64 in [0, 1].
    """
    lab = rgb2lab(image)
    lum = lab[..., 0]
    blurred = imgaussfilt(lum, _SHARPEN_RADIUS)  # 13 taps, sigma 3 = fspecial('gaussian', 13, 3), separable
    lab[..., 0] = lum + amount * (lum - blurred)
    return truncate(lab2rgb(lab))


def contrast_change(image: np.ndarray, amount: float) -> np.ndarray:
    """Type 25, ``imcontrastc``: tone curve through (0.3, 0.25 - amount/4) and (0.7, 0.75 + amount/4).

    Args:
        image: (H, W, 3) float64 in [0, 1].
        amount: KADIS 0.3, 0.15, 0, -0.4, -0.6 (positive raises contrast, negative lowers it).

    Returns:
        (H, W, 3) float64 in [0, 1].
    """
    return curves(image, (0.25 - amount / 4.0, 0.75 + amount / 4.0))
