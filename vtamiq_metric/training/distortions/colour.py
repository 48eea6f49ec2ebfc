"""Colour distortions: KADID types 4 (colour diffusion), 5 (colour shift), 7 (saturation 1), 8 (saturation 2).

Ports of ``imcolordiffuse``, ``imcolorshift``, ``imcolorsaturate`` and ``imsaturate``
(``docs/background/distortions.md``, types 4, 5, 7, 8). Colour quantization (type 6) lives in :mod:`.quantization`.

Documented deviations / reconstructions:
    - Types 4 and 8 use our CIE L*a*b* conversion (see :mod:`._matlab`), equal to MATLAB's within the 4th decimal.
    - Type 5 depends on two KADIS helpers that were never published (``gradientxy.m``, ``ps2.m``). As in both public
      ports, ``gradientxy`` is taken to be MATLAB ``gradient`` (central differences inside, one-sided at the borders)
      and ``ps2`` to clip the edge map to its [1st, 99th] percentile range and stretch it with ``mapmm``. Percentiles
      use MATLAB ``prctile``'s definition (sorted sample i at ``100 (i - 0.5) / n``, linear interpolation).
"""

from __future__ import annotations

import math

import numpy as np

from ._matlab import hsv2rgb, imgaussfilt, lab2rgb, mapmm, rgb2gray, rgb2hsv, rgb2lab, round_half_away, truncate

__all__ = ["color_diffuse", "color_saturate", "color_shift", "saturate"]


def color_diffuse(image: np.ndarray, amount: float) -> np.ndarray:
    """Type 4, ``imcolordiffuse``: blur the a*, b* planes with ``sigma = 1.5 amount + 2`` and scale them by ``amount``.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        amount: KADIS 1, 3, 6, 8, 12 (sigma 3.5 ... 20; chroma gain x1 ... x12).

    Returns:
        (H, W, 3) float64 in [0, 1] (``truncate(lab2rgb(...))``).
    """
    lab = rgb2lab(image)
    sigma = 1.5 * amount + 2.0
    lab[..., 1:] = imgaussfilt(lab[..., 1:], sigma) * amount
    return truncate(lab2rgb(lab))


def _prctile(x: np.ndarray, p: float) -> float:
    """MATLAB ``prctile(x(:), p)``: sample i of n sorted at percent ``100 (i - 0.5) / n``, linear in between."""
    return float(np.percentile(x, p, method="hazen"))


def _edge_weight(image: np.ndarray) -> np.ndarray:
    """Edge mask of ``imcolorshift``: smoothed gray gradient magnitude, floored at 0.1, percentile-stretched."""
    gray = rgb2gray(image)
    gy, gx = np.gradient(gray)
    e = np.sqrt(gx**2 + gy**2)
    e = mapmm(imgaussfilt(e, 4.0))
    e = truncate(e, 0.1, 1.0)
    hi = _prctile(e, 99.0)
    lo = 1.0 - _prctile(1.0 - e, 99.0)
    return mapmm(np.clip(e, lo, hi))


def color_shift(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Type 5, ``imcolorshift``: shift the green plane by ``round(amount v / |v|)`` pixels at strong edges.

    ``v`` holds two U[0, 1) draws (row, column), so the shift always points down/right; the uncovered border is
    filled by edge replication. The shifted plane is blended with the original through an edge mask ``e`` in
    [0, 1]: ``G' = e G_shift + (1 - e) G``. Red and blue are unchanged.

    Args:
        image: (H, W, 3) float64 in [0, 1]; both sides >= 2.
        amount: shift length in pixels (KADIS 1, 3, 6, 8, 12).
        rng: generator for the direction (two uniform draws).

    Returns:
        (H, W, 3) float64 in [0, 1].
    """
    weight = _edge_weight(image)
    v = rng.random(2)
    norm = math.hypot(float(v[0]), float(v[1]))
    if norm == 0.0:  # probability ~2**-106; MATLAB would produce NaNs, we shift down instead
        v, norm = np.array([1.0, 0.0]), 1.0
    dy, dx = (int(d) for d in round_half_away(amount * v / norm))
    h, w = image.shape[:2]
    green = image[..., 1]
    rows = np.maximum(np.arange(h) - dy, 0)
    cols = np.maximum(np.arange(w) - dx, 0)
    shifted = green[rows][:, cols]
    out = image.copy()
    out[..., 1] = weight * shifted + (1.0 - weight) * green
    return out


def color_saturate(image: np.ndarray, factor: float) -> np.ndarray:
    """Type 7, ``imcolorsaturate``: HSV saturation times ``factor``, no clipping.

    A negative factor flips the hue to its complement with values above V; MATLAB's ``hsv2rgb`` divides by the
    global maximum of the unscaled triples, which the generator's final ``mapmm`` cancels anyway.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        factor: KADIS 0.4, 0.2, 0.1, 0, -0.4 (0 gives the gray image ``max(R, G, B)``).

    Returns:
        (H, W, 3) float64, in [0, 1] up to the global normalisation.
    """
    hsv = rgb2hsv(image)
    hsv[..., 1] *= factor
    return hsv2rgb(hsv)


def saturate(image: np.ndarray, factor: float) -> np.ndarray:
    """Type 8, ``imsaturate``: multiply a* and b* by ``factor`` in CIE L*a*b*, back to sRGB, clip.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        factor: KADIS 1, 2, 3, 6, 9 (1 is the identity up to the Lab round trip).

    Returns:
        (H, W, 3) float64 in [0, 1].
    """
    lab = rgb2lab(image)
    lab[..., 1:] *= factor
    return truncate(lab2rgb(lab))
