"""Blur distortions: KADID types 1 (Gaussian blur), 2 (lens blur) and 3 (motion blur).

All three are exact ports (``docs/background/distortions.md``, types 1-3): the MATLAB kernels (``imgaussfilt`` Gaussian,
``fspecial('disk')``, ``fspecial('motion')``) are rebuilt tap for tap and applied with replicate borders.
Only the motion-blur angle is random (one integer in 0..180 per call), drawn from the caller's generator instead of
MATLAB's global stream.
"""

from __future__ import annotations

import numpy as np

from ._matlab import fspecial_disk, fspecial_motion, imfilter, imgaussfilt

__all__ = ["gaussian_blur", "lens_blur", "motion_blur"]


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Type 1, ``imblurgauss``: ``imgaussfilt(I, sigma)`` (``2 ceil(2 sigma) + 1`` taps, replicate borders).

    Args:
        image: (H, W, 3) float64 in [0, 1].
        sigma: Gaussian standard deviation in pixels (KADIS: 0.1, 0.5, 1, 2, 5; 0.1 is numerically the identity).

    Returns:
        (H, W, 3) float64 in [0, 1].
    """
    return imgaussfilt(image, sigma)


def lens_blur(image: np.ndarray, radius: float) -> np.ndarray:
    """Type 2, ``imblurlens``: correlation with ``fspecial('disk', radius)``, replicate borders.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        radius: disk radius in pixels (KADIS: 1, 2, 4, 6, 8).

    Returns:
        (H, W, 3) float64 in [0, 1].
    """
    return imfilter(image, fspecial_disk(radius))


def motion_blur(image: np.ndarray, length: float, rng: np.random.Generator) -> np.ndarray:
    """Type 3, ``imblurmotion``: correlation with ``fspecial('motion', length, angle)``, replicate borders.

    The angle is a uniform random integer in 0..180 degrees (0 and 180 give the same kernel).

    Args:
        image: (H, W, 3) float64 in [0, 1].
        length: line length in pixels (KADIS: 1, 2, 4, 6, 10; length 1 is the identity).
        rng: generator for the angle (one draw).

    Returns:
        (H, W, 3) float64 in [0, 1].
    """
    angle = int(rng.integers(0, 181))
    return imfilter(image, fspecial_motion(length, angle))
