"""Quantization distortions: KADID types 6 (colour quantization) and 22 (quantization).

Type 6, ``imcolorquantize`` (``docs/background/distortions.md``, type 6): MATLAB ``rgb2ind(I, n)`` = minimum-variance
colour quantization with Floyd-Steinberg dithering, then ``ind2rgb``. MathWorks' MEX internals cannot be reproduced, so
this is a substitute: our implementation of Wu's greedy variance-minimising quantiser (Graphics Gems II) on a
32x32x32 colour histogram of the 8-bit image gives the palette (box centroids, rounded to 8 bit), and
Pillow's Floyd-Steinberg error diffusion maps the image onto that palette. Differences from MATLAB: palette choice
(MATLAB's own minimum-variance splitting rule), palette precision (8-bit here), the inverse colour map (Pillow's
nearest-colour cache; MATLAB ``dither``: 5 bits per axis) and the error arithmetic. The visual character (banding plus
dither noise) is the same.

Type 22, ``imnoisequantize`` (type 22): ``multithresh(I, N)`` on the whole RGB array (pooled 256-bin histogram of
``round(255 I)``) optimised with Nelder-Mead exactly as MATLAB's ``fminsearch`` is configured (``TolX = 1``,
``TolFun = 1e-4``, ``200 N`` iterations and evaluations, same initial simplex), then ``imquantize`` to the values
``[0, t2, ..., tN, 1]``. Termination details of scipy's Nelder-Mead may differ from ``fminsearch`` in rare images.
Empty classes (zero histogram weight) contribute 0 to the between-class variance instead of MATLAB's NaN.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.optimize import minimize

from ._matlab import round_half_away, to_uint8

__all__ = ["color_quantize", "imquantize", "multithresh", "quantize", "wu_palette"]

_WU_BITS = 5
_WU_SIDE = (1 << _WU_BITS) + 1  # 33: index 0 is the zero border of the cumulative moments


def _wu_moments(pixels: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cumulative 3-D moments (weight, sum R, sum G, sum B, sum of squares) of an (N, 3) uint8 pixel list."""
    q = (pixels.astype(np.int64) >> (8 - _WU_BITS)) + 1  # (N, 3) in 1..32
    flat = (q[:, 0] * _WU_SIDE + q[:, 1]) * _WU_SIDE + q[:, 2]  # (N,)
    size = _WU_SIDE**3
    values = pixels.astype(np.float64)
    moments = [
        np.bincount(flat, minlength=size).astype(np.float64),
        np.bincount(flat, weights=values[:, 0], minlength=size),
        np.bincount(flat, weights=values[:, 1], minlength=size),
        np.bincount(flat, weights=values[:, 2], minlength=size),
        np.bincount(flat, weights=(values**2).sum(axis=1), minlength=size),
    ]
    out = []
    for m in moments:
        cube = m.reshape(_WU_SIDE, _WU_SIDE, _WU_SIDE)
        out.append(cube.cumsum(0).cumsum(1).cumsum(2))
    return tuple(out)


def _box_sum(cum: np.ndarray, box: tuple[int, int, int, int, int, int]) -> float:
    """Sum of a moment over the box (r0, r1] x (g0, g1] x (b0, b1] by inclusion-exclusion."""
    r0, r1, g0, g1, b0, b1 = box
    return float(
        cum[r1, g1, b1]
        - cum[r1, g1, b0]
        - cum[r1, g0, b1]
        + cum[r1, g0, b0]
        - cum[r0, g1, b1]
        + cum[r0, g1, b0]
        + cum[r0, g0, b1]
        - cum[r0, g0, b0]
    )


def _slab_sums(cum: np.ndarray, box: tuple[int, int, int, int, int, int], axis: int) -> np.ndarray:
    """For every cut t along ``axis``, the moment summed over the box restricted to (lo, t] on that axis."""
    r0, r1, g0, g1, b0, b1 = box
    if axis == 0:
        f = cum[:, g1, b1] - cum[:, g1, b0] - cum[:, g0, b1] + cum[:, g0, b0]
        lo, hi = r0, r1
    elif axis == 1:
        f = cum[r1, :, b1] - cum[r1, :, b0] - cum[r0, :, b1] + cum[r0, :, b0]
        lo, hi = g0, g1
    else:
        f = cum[r1, g1, :] - cum[r1, g0, :] - cum[r0, g1, :] + cum[r0, g0, :]
        lo, hi = b0, b1
    return f[lo + 1 : hi] - f[lo]  # cuts t = lo+1 .. hi-1


def _box_variance(moments: tuple[np.ndarray, ...], box: tuple[int, int, int, int, int, int]) -> float:
    """Sum of squared distances to the centroid of the pixels in the box (0 for a single histogram cell)."""
    r0, r1, g0, g1, b0, b1 = box
    if (r1 - r0) * (g1 - g0) * (b1 - b0) <= 1:
        return 0.0
    wt, mr, mg, mb, m2 = moments
    weight = _box_sum(wt, box)
    if weight <= 0:
        return 0.0
    sr, sg, sb = _box_sum(mr, box), _box_sum(mg, box), _box_sum(mb, box)
    return _box_sum(m2, box) - (sr * sr + sg * sg + sb * sb) / weight


def _cut_box(
    moments: tuple[np.ndarray, ...], box: tuple[int, int, int, int, int, int]
) -> tuple[tuple[int, int, int, int, int, int], tuple[int, int, int, int, int, int]] | None:
    """Split a box where the two halves' summed squared-centroid terms are largest; None if it cannot be split."""
    wt, mr, mg, mb, _ = moments
    whole = np.array([_box_sum(m, box) for m in (wt, mr, mg, mb)])
    best_score, best_axis, best_cut = -np.inf, -1, -1
    for axis in range(3):
        lows = np.stack([_slab_sums(m, box, axis) for m in (wt, mr, mg, mb)])  # (4, n_cuts)
        if lows.shape[1] == 0:
            continue
        highs = whole[:, None] - lows
        valid = (lows[0] > 0) & (highs[0] > 0)
        if not valid.any():
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            score = (lows[1:] ** 2).sum(0) / lows[0] + (highs[1:] ** 2).sum(0) / highs[0]
        score = np.where(valid, score, -np.inf)
        i = int(np.argmax(score))
        if score[i] > best_score:
            best_score, best_axis, best_cut = float(score[i]), axis, box[2 * axis] + 1 + i
    if best_axis < 0:
        return None
    lower = list(box)
    upper = list(box)
    lower[2 * best_axis + 1] = best_cut
    upper[2 * best_axis] = best_cut
    return tuple(lower), tuple(upper)  # type: ignore[return-value]


def wu_palette(pixels: np.ndarray, num_colors: int) -> np.ndarray:
    """Wu's minimum-variance colour quantiser: greedy box splitting of the 5-bit colour histogram.

    Args:
        pixels: (N, 3) uint8 RGB values.
        num_colors: maximum palette size (>= 1).

    Returns:
        (K, 3) uint8 palette of box centroids, K <= num_colors (fewer when the image has fewer distinct cells).

    Raises:
        ValueError: if ``pixels`` is not (N, 3) uint8 with N >= 1 or ``num_colors < 1``.
    """
    if pixels.ndim != 2 or pixels.shape[1] != 3 or pixels.dtype != np.uint8 or pixels.shape[0] == 0:
        raise ValueError(f"wu_palette: expected (N, 3) uint8 pixels with N >= 1, got {pixels.shape} {pixels.dtype}")
    if num_colors < 1:
        raise ValueError(f"wu_palette: expected num_colors >= 1, got {num_colors}")
    moments = _wu_moments(pixels)
    top = _WU_SIDE - 1
    boxes: list[tuple[int, int, int, int, int, int]] = [(0, top, 0, top, 0, top)]
    variances = [_box_variance(moments, boxes[0])]
    while len(boxes) < num_colors:
        k = int(np.argmax(variances))
        if variances[k] <= 0:
            break
        halves = _cut_box(moments, boxes[k])
        if halves is None:
            variances[k] = 0.0
            continue
        boxes[k], new = halves
        boxes.append(new)
        variances[k] = _box_variance(moments, boxes[k])
        variances.append(_box_variance(moments, new))
    wt = moments[0]
    palette = []
    for box in boxes:
        weight = _box_sum(wt, box)
        if weight > 0:
            palette.append([_box_sum(m, box) / weight for m in moments[1:4]])
    return np.clip(round_half_away(np.array(palette)), 0, 255).astype(np.uint8)


def color_quantize(image: np.ndarray, num_colors: int) -> np.ndarray:
    """Type 6, ``imcolorquantize``: ``rgb2ind(I, n)`` (minimum variance + Floyd-Steinberg) and ``ind2rgb``.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        num_colors: palette size (KADIS 64, 48, 32, 16, 8).

    Returns:
        (H, W, 3) float64 in [0, 1], every pixel one of at most ``num_colors`` palette colours.
    """
    rgb8 = to_uint8(image)
    palette = wu_palette(rgb8.reshape(-1, 3), int(num_colors))
    pal_image = Image.new("P", (1, 1))
    pal_image.putpalette(palette.ravel().tolist())
    indexed = Image.fromarray(rgb8).quantize(palette=pal_image, dither=Image.Dither.FLOYDSTEINBERG)
    index = np.asarray(indexed, dtype=np.int64)
    return palette[index].astype(np.float64) / 255.0


def multithresh(image: np.ndarray, num_thresholds: int) -> np.ndarray:
    """MATLAB ``multithresh(A, N)`` for N >= 1 on an array already spanning [0, 1] (Otsu, Nelder-Mead search).

    The objective is the between-class variance of the 256-bin histogram of ``round(255 A)`` for real thresholds
    theta (bin units), with class boundaries ``round(theta) + 1``; infeasible (non-increasing or out-of-range)
    boundaries score +inf.

    Args:
        image: float array of any shape with values in [0, 1].
        num_thresholds: N (>= 1).

    Returns:
        (N,) float64 increasing thresholds in (0, 1).

    Raises:
        ValueError: if ``num_thresholds`` is not in 1..253.
    """
    n = int(num_thresholds)
    if not 1 <= n <= 253:
        raise ValueError(f"multithresh: expected 1 <= num_thresholds <= 253, got {num_thresholds}")
    levels = to_uint8(image).ravel()
    p = np.bincount(levels, minlength=256).astype(np.float64) / levels.size
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(1, 257))
    mu_t = mu[-1]

    def neg_between_class_variance(theta: np.ndarray) -> float:
        bounds = round_half_away(theta).astype(np.int64) + 1  # 1-based histogram bins
        if bounds[0] < 2 or bounds[-1] > 255 or np.any(np.diff(bounds) <= 0):
            return np.inf
        idx = np.append(bounds, 256) - 1
        w = np.diff(omega[idx], prepend=0.0)
        m = np.diff(mu[idx], prepend=0.0)
        filled = w > 0
        return -float(np.sum((m[filled] - w[filled] * mu_t) ** 2 / w[filled]))

    theta0 = np.linspace(0.0, 255.0, n + 2)[1:-1]
    result = minimize(
        neg_between_class_variance,
        theta0,
        method="Nelder-Mead",
        options={"xatol": 1.0, "fatol": 1e-4, "maxiter": 200 * n, "maxfev": 200 * n},
    )
    theta = result.x if np.isfinite(result.fun) else theta0
    return round_half_away(theta) / 255.0


def imquantize(image: np.ndarray, thresholds: np.ndarray, values: np.ndarray) -> np.ndarray:
    """MATLAB ``imquantize(A, thresholds, values)``: ``A <= t1 -> values[0]``, ``t(k) < A <= t(k+1) -> values[k]``.

    Args:
        image: float array of any shape.
        thresholds: (N,) increasing thresholds.
        values: (N + 1,) output values.

    Returns:
        float64 array of the same shape as ``image``.

    Raises:
        ValueError: if ``values`` does not have one more entry than ``thresholds``.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (thresholds.size + 1,):
        raise ValueError(f"imquantize: expected {thresholds.size + 1} values, got shape {values.shape}")
    return values[np.searchsorted(thresholds, image, side="left")]


def quantize(image: np.ndarray, num_thresholds: int) -> np.ndarray:
    """Type 22, ``imnoisequantize``: Otsu multi-thresholds of all RGB values, each element set to its class value.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        num_thresholds: N (KADIS 20, 16, 13, 10, 7), giving N + 1 output levels per channel.

    Returns:
        (H, W, 3) float64 with values in ``{0, t2, ..., tN, 1}``.
    """
    thresholds = multithresh(image, num_thresholds)
    values = np.concatenate([[0.0], thresholds[1:], [1.0]])
    return imquantize(image, thresholds, values)
