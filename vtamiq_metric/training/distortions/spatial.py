"""Spatial distortions: KADID types 19 (jitter), 20 (non-eccentricity patch), 21 (pixelate), 23 (colour block).

Ports of ``imjitter`` (with ``imscatter``/``imwarpmap``), ``imnoneccentricity``, ``impixelate`` and
``imcolorblock`` (``docs/background/distortions.md``, types 19-21, 23).

Documented deviations:
    - Type 19 resamples with a hand-written cubic-convolution sampler (Keys, a = -0.5), MATLAB ``interp2``'s
      ``'bicubic'``. MATLAB replicate-pads by a finite margin (rows by ``ceil(max |column shift|)``, columns by
      ``ceil(max |row shift|)``, the maxima swapped in the original) and interpolates inside that; we clamp indices
      to the image, i.e. an unbounded replicate padding. Both agree wherever MATLAB's margin covers the 4x4 taps,
      which is every pixel in practice.
    - Type 23 draws with MATLAB ``insertShape``, whose rounding of the fractional block position was not read; we
      use round-half-away of x and y (docs/background/distortions.md, type 23), so a block may sit one pixel off in rare
      cases.
    - All random draws come from the caller's generator (MATLAB: its global stream).
"""

from __future__ import annotations

import numpy as np

from ._matlab import imresize_nearest, round_half_away

__all__ = [
    "COLOR_BLOCK_MIN_SIZE",
    "NON_ECCENTRICITY_MIN_SIZE",
    "color_block",
    "cubic_convolution_warp",
    "jitter",
    "non_eccentricity",
    "pixelate",
]

_JITTER_ITERATIONS = 5
_PATCH = 16  # non-eccentricity patch side and radius
_BLOCK = 32  # colour block side
NON_ECCENTRICITY_MIN_SIZE = 3 * _PATCH
"""Smallest height and width (48) for which the non-eccentricity source range ``[16, size - 32]`` is non-empty."""
COLOR_BLOCK_MIN_SIZE = _BLOCK
"""Smallest height and width (32) that hold a colour block."""


def _checked_size(image: np.ndarray, minimum: int, what: str, why: str = "") -> tuple[int, int]:
    """``(H, W)`` of ``image``, or ValueError naming the distortion when a side is below ``minimum`` pixels."""
    h, w = image.shape[:2]
    if h < minimum or w < minimum:
        raise ValueError(f"{what}: expected an image of at least {minimum}x{minimum} pixels{why}, got {h}x{w}")
    return h, w


def _keys_weights(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cubic-convolution weights (a = -0.5) of the taps at floor-1, floor, floor+1, floor+2 for fraction t."""
    t2 = t * t
    t3 = t2 * t
    w0 = -0.5 * t3 + t2 - 0.5 * t  # far kernel at distance 1 + t
    w1 = 1.5 * t3 - 2.5 * t2 + 1.0  # near kernel at distance t
    w2 = -1.5 * t3 + 2.0 * t2 + 0.5 * t  # near kernel at distance 1 - t
    w3 = 0.5 * t3 - 0.5 * t2  # far kernel at distance 2 - t
    return w0, w1, w2, w3


def cubic_convolution_warp(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sample ``image`` at fractional positions with Keys cubic convolution (a = -0.5), borders replicated.

    The image is edge-padded just enough for every 4x4 tap, which equals clamping the tap indices. Sampling and
    accumulation run in float32 (4x faster than float64; errors ~1e-7, far below one grey level).

    Args:
        image: (H, W, C) float array.
        rows: (H', W') float row coordinates (0-based).
        cols: (H', W') float column coordinates (0-based), same shape as ``rows``.

    Returns:
        (H', W', C) float64 samples; integer positions return the pixels (up to float32 rounding).
    """
    h, w, c = image.shape
    r0 = np.floor(rows)
    c0 = np.floor(cols)
    wr = [x.astype(np.float32) for x in _keys_weights(rows - r0)]
    wc = [x.astype(np.float32) for x in _keys_weights(cols - c0)]
    r0 = r0.astype(np.int64)
    c0 = c0.astype(np.int64)
    pad = max(0, 1 - int(r0.min()), int(r0.max()) + 3 - h, 1 - int(c0.min()), int(c0.max()) + 3 - w)
    planes = np.pad(np.moveaxis(np.asarray(image, dtype=np.float32), -1, 0), ((0, 0), (pad, pad), (pad, pad)), "edge")
    wp = w + 2 * pad
    flat = planes.reshape(c, -1)  # (C, (H + 2 pad) * (W + 2 pad))
    base = (r0 + pad - 1) * wp + (c0 + pad - 1)  # (H', W') flat index of the top-left tap
    out = np.zeros((c,) + rows.shape, dtype=np.float32)
    for k in range(4):
        line = np.zeros_like(out)
        for j in range(4):
            line += wc[j] * np.take(flat, base + (k * wp + j), axis=1)  # (C, H', W')
        out += wr[k] * line
    return np.moveaxis(out, 0, -1).astype(np.float64)  # (H', W', C)


def jitter(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Type 19, ``imjitter``: five rounds of per-pixel random displacement with N(0, amount**2) row/column shifts.

    Each round: ``J'(i, j) = J(i - sy(i, j), j - sx(i, j))`` by cubic convolution, borders replicated.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        amount: shift standard deviation in pixels (KADIS 0.05, 0.1, 0.2, 0.5, 1).
        rng: generator (5 x 2 x H x W normal draws).

    Returns:
        (H, W, 3) float64 (cubic convolution can overshoot [0, 1] slightly; the generator's ``mapmm`` follows).
    """
    h, w = image.shape[:2]
    ii, jj = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    out = np.asarray(image, dtype=np.float64)
    for _ in range(_JITTER_ITERATIONS):
        shifts = amount * rng.standard_normal((2, h, w))  # (2, H, W): row shifts, column shifts
        out = cubic_convolution_warp(out, ii - shifts[0], jj - shifts[1])
    return out


def non_eccentricity(image: np.ndarray, num_patches: int, rng: np.random.Generator) -> np.ndarray:
    """Type 20, ``imnoneccentricity``: copy random 16x16 patches to positions offset by up to 8 pixels.

    Per patch (4 uniforms): source corner ``round(u (max - 16)) + 16`` (1-based, max = size - 32), taken from the
    already modified image, pasted at ``round((u' - 0.5) 16 + source)``.

    Args:
        image: (H, W, 3) float64 in [0, 1], with H, W >= :data:`NON_ECCENTRICITY_MIN_SIZE`.
        num_patches: KADIS 20, 40, 60, 80, 100.
        rng: generator (4 uniform draws per patch).

    Returns:
        (H, W, 3) float64 in [0, 1].

    Raises:
        ValueError: if the image is smaller than 48 pixels on a side.
    """
    h, w = _checked_size(image, NON_ECCENTRICITY_MIN_SIZE, "non-eccentricity patch",
                         " (16x16 patches drawn from [16, size - 32])")
    out = np.array(image, dtype=np.float64, copy=True)
    lo = _PATCH
    hmax, wmax = h - 2 * _PATCH, w - 2 * _PATCH
    draws = rng.random((int(num_patches), 4))
    ws_all = round_half_away(draws[:, 0] * (wmax - lo)) + lo
    hs_all = round_half_away(draws[:, 1] * (hmax - lo)) + lo
    wd_all = round_half_away((draws[:, 2] - 0.5) * _PATCH + ws_all)
    hd_all = round_half_away((draws[:, 3] - 0.5) * _PATCH + hs_all)
    for ws, hs, wd, hd in zip(
        ws_all.astype(int), hs_all.astype(int), wd_all.astype(int), hd_all.astype(int), strict=True
    ):
        patch = out[hs - 1 : hs - 1 + _PATCH, ws - 1 : ws - 1 + _PATCH].copy()  # 1-based -> 0-based
        out[hd - 1 : hd - 1 + _PATCH, wd - 1 : wd - 1 + _PATCH] = patch
    return out


def pixelate(image: np.ndarray, strength: float) -> np.ndarray:
    """Type 21, ``impixelate``: nearest-neighbour downscale by ``z = 0.95 - strength**0.6`` and back up.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        strength: KADIS 0.01, 0.05, 0.1, 0.2, 0.5 (z = 0.887 ... 0.290).

    Returns:
        (H, W, 3) float64 in [0, 1].
    """
    h, w = image.shape[:2]
    z = 0.95 - strength**0.6
    small = imresize_nearest(image, scale=z)
    return imresize_nearest(small, size=(h, w))


def color_block(image: np.ndarray, num_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Type 23, ``imcolorblock``: paint opaque 32x32 blocks of uniformly random colour at random positions.

    Per block (5 uniforms): colour (R, G, B), then ``x = u (W - 32)``, ``y = u' (H - 32)``; the block covers
    1-based columns ``round(x) .. round(x) + 31`` and rows ``round(y) .. round(y) + 31``, clipped to the image.
    Later blocks cover earlier ones.

    Args:
        image: (H, W, 3) float64 in [0, 1], with H, W >= :data:`COLOR_BLOCK_MIN_SIZE`.
        num_blocks: KADIS 2, 4, 6, 8, 10.
        rng: generator (5 uniform draws per block).

    Returns:
        (H, W, 3) float64 in [0, 1].

    Raises:
        ValueError: if the image is smaller than 32 pixels on a side.
    """
    h, w = _checked_size(image, COLOR_BLOCK_MIN_SIZE, "colour block")
    out = np.array(image, dtype=np.float64, copy=True)
    draws = rng.random((int(num_blocks), 5))
    for red, green, blue, ux, uy in draws:
        x = int(round_half_away(ux * (w - _BLOCK)))
        y = int(round_half_away(uy * (h - _BLOCK)))
        out[max(y - 1, 0) : y - 1 + _BLOCK, max(x - 1, 0) : x - 1 + _BLOCK] = (red, green, blue)
    return out
