"""Noise distortions: KADID types 11 (white), 12 (white in colour component), 13 (impulse), 14 (multiplicative).

Exact ports of ``imnoisegauss``, ``imnoisecolorcomp``, ``imnoiseimpulse`` and ``imnoisemultiplicative``
(``docs/background/distortions.md``, types 11-14) built on our ``imnoise`` emulation: every element of every channel
gets an independent draw. Only the random numbers differ from MATLAB (our seeded numpy generator instead of MATLAB's
global Mersenne-Twister stream and ziggurat normals); the distributions are the same. Type 15 (denoise) lives in
:mod:`.denoise`.
"""

from __future__ import annotations

import numpy as np

from ._matlab import imnoise_gaussian, imnoise_salt_pepper, imnoise_speckle, rgb2ycbcr, ycbcr2rgb

__all__ = ["impulse_noise", "multiplicative_noise", "white_noise", "white_noise_color_component"]


def white_noise(image: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    """Type 11, ``imnoisegauss``: ``imnoise(I, 'gaussian', 0, variance)`` on all three channels, clipped.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        variance: noise variance (KADIS 0.001, 0.002, 0.003, 0.005, 0.01).
        rng: generator (H*W*3 normal draws).

    Returns:
        (H, W, 3) float64 in [0, 1].
    """
    return imnoise_gaussian(image, variance, rng)


def white_noise_color_component(image: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    """Type 12, ``imnoisecolorcomp``: Gaussian noise on Y, Cb and Cr (BT.601 studio range), clipped, back to RGB.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        variance: noise variance in YCbCr units (KADIS 1e-4, 5e-4, 1e-3, 2e-3, 3e-3).
        rng: generator (H*W*3 normal draws).

    Returns:
        (H, W, 3) float64 in [0, 1].
    """
    return ycbcr2rgb(imnoise_gaussian(rgb2ycbcr(image), variance, rng))


def impulse_noise(image: np.ndarray, density: float, rng: np.random.Generator) -> np.ndarray:
    """Type 13, ``imnoiseimpulse``: salt & pepper per element (coloured impulses), 0 and 1 each with density/2.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        density: KADIS 0.001, 0.005, 0.01, 0.02, 0.03.
        rng: generator (H*W*3 uniform draws).

    Returns:
        (H, W, 3) float64 in [0, 1].
    """
    return imnoise_salt_pepper(image, density, rng)


def multiplicative_noise(image: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    """Type 14, ``imnoisemultiplicative``: ``imnoise(I, 'speckle', variance)`` = ``I + I n`` with uniform n, clipped.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        variance: variance of n (KADIS 0.001, 0.005, 0.01, 0.02, 0.05); n is uniform on ``[-sqrt(3v), sqrt(3v)]``.
        rng: generator (H*W*3 uniform draws).

    Returns:
        (H, W, 3) float64 in [0, 1].
    """
    return imnoise_speckle(image, variance, rng)
