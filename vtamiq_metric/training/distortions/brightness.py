"""Brightness distortions: KADID types 16 (brighten), 17 (darken) and 18 (mean shift).

Ports of ``imbrighten``, ``imdarken`` and ``immeanshift`` (``docs/background/distortions.md``, types 16-18).

Documented reconstructions:
    - The tone-curve helper ``curves.m`` was never published; it is reconstructed as MATLAB ``spline`` (not-a-knot
      cubic) through (0, 0), (0.5, c), (1, 1), clipped to [0, 1] (docs/background/distortions.md §2.2).
    - ``imdarken.m`` was never published; type 17 is the ports' reconstruction: the RGB tone curve only, no Lab
      branch (the default of the reconstructed ``dolab`` flag).
    - Type 16 uses our CIE L*a*b* conversion (equal to MATLAB's within the 4th decimal).

Note that the generator's final ``mapmm`` partly undoes the global gain of type 18 (and is a no-op for 17).
"""

from __future__ import annotations

import numpy as np

from ._matlab import curves, lab2rgb, rgb2lab, truncate

__all__ = ["brighten", "darken", "mean_shift"]


def brighten(image: np.ndarray, amount: float) -> np.ndarray:
    """Type 16, ``imbrighten``: ``(2 curve(RGB) + truncate(lab2rgb(curve on L*))) / 3`` with ``c = 0.5 + amount/2``.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        amount: KADIS 0.1, 0.2, 0.4, 0.7, 1.1 (c = 0.55 ... 1.05).

    Returns:
        (H, W, 3) float64 in [0, 1].
    """
    c = 0.5 + amount / 2.0
    lab = rgb2lab(image)
    lab[..., 0] = 100.0 * curves(lab[..., 0] / 100.0, c)
    via_lab = truncate(lab2rgb(lab))
    via_rgb = curves(image, c)
    return (2.0 * via_rgb + via_lab) / 3.0


def darken(image: np.ndarray, amount: float) -> np.ndarray:
    """Type 17, ``imdarken`` (reconstructed): the RGB tone curve with ``c = 0.5 - amount/2`` on every channel.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        amount: KADIS 0.05, 0.1, 0.2, 0.4, 0.8 (c = 0.475 ... 0.1).

    Returns:
        (H, W, 3) float64 in [0, 1].
    """
    return curves(image, 0.5 - amount / 2.0)


def mean_shift(image: np.ndarray, offset: float) -> np.ndarray:
    """Type 18, ``immeanshift``: ``truncate(I + offset)``.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        offset: KADIS +0.15, +0.08, 0, -0.08, -0.15 (0 is the identity).

    Returns:
        (H, W, 3) float64 in [0, 1].
    """
    return truncate(image + offset)
