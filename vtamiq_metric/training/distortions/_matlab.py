"""Shared helpers that emulate the MATLAB / Image Processing Toolbox functions the KADIS-700k generator calls.

Every helper is written from the behaviour described in ``docs/background/distortions.md`` §2 (no MathWorks code is
copied). Images are float64 arrays of shape (H, W, 3) or (H, W) with values nominally in [0, 1] unless a
docstring says otherwise.

Helpers:
    - rounding and clipping: :func:`round_half_away`, :func:`mapmm`, :func:`truncate`, :func:`to_uint8`;
    - tone curves: :func:`curves` (MATLAB ``spline`` = not-a-knot cubic);
    - colour conversions: :func:`rgb2gray`, :func:`rgb2lab`, :func:`lab2rgb`, :func:`rgb2hsv`, :func:`hsv2rgb`,
      :func:`rgb2ycbcr`, :func:`ycbcr2rgb`;
    - kernels: :func:`gaussian_kernel1d`, :func:`fspecial_gaussian`, :func:`fspecial_disk`, :func:`fspecial_motion`;
    - filtering: :func:`imfilter`, :func:`imgaussfilt` (replicate borders, ``'same'`` size);
    - noise: :func:`imnoise_gaussian`, :func:`imnoise_salt_pepper`, :func:`imnoise_speckle`;
    - resampling: :func:`imresize_nearest`.

Colour-space constants: ``rgb2lab``/``lab2rgb`` use sRGB companding, the 7-digit sRGB->XYZ (D65) matrix and the
white ``(0.95047, 1, 1.08883)`` it implies, so white maps to (L*, a*, b*) = (100, 0, 0) within 1e-5 and pure red to
MATLAB's documented ``rgb2lab([1 0 0]) = [53.2408 80.0925 67.2032]``. ``whitepoint('d65')`` displays as
``[0.9504 1.0000 1.0888]``; any remaining difference from MATLAB is in the 4th decimal of L*a*b*
(``docs/background/distortions.md`` §2.3: below one grey level after 8-bit rounding in almost all pixels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage, signal
from scipy.interpolate import CubicSpline

__all__ = [
    "MATLAB_EPS",
    "curves",
    "fspecial_disk",
    "fspecial_gaussian",
    "fspecial_motion",
    "gaussian_kernel1d",
    "hsv2rgb",
    "imfilter",
    "imgaussfilt",
    "imnoise_gaussian",
    "imnoise_salt_pepper",
    "imnoise_speckle",
    "imresize_nearest",
    "lab2rgb",
    "linear_to_srgb",
    "mapmm",
    "rgb2gray",
    "rgb2hsv",
    "rgb2lab",
    "rgb2ycbcr",
    "round_half_away",
    "srgb_to_linear",
    "to_uint8",
    "truncate",
    "ycbcr2rgb",
]

MATLAB_EPS = 2.220446049250313e-16
"""MATLAB ``eps`` (double precision machine epsilon)."""

# Kernels with more taps than this are applied through FFT convolution of the replicate-padded image (same result
# up to float rounding, much faster for the 13x13..17x17 disks and long motion kernels).
_DIRECT_FILTER_MAX_TAPS = 49

# ---------------------------------------------------------------------------------------------------------------
# Rounding and range helpers
# ---------------------------------------------------------------------------------------------------------------


def round_half_away(x: np.ndarray | float) -> np.ndarray:
    """MATLAB ``round``: round half away from zero (``np.round`` rounds half to even).

    Args:
        x: array or scalar of any shape.

    Returns:
        float64 array of the same shape with the rounded values.
    """
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def mapmm(x: np.ndarray) -> np.ndarray:
    """MATLAB ``mapmm``: map the global minimum to 0 and the global maximum to 1.

    The minimum and maximum are taken over the whole array (all pixels and channels). A constant array is returned
    unchanged (as float64), as in the MATLAB helper.

    Args:
        x: array of any shape.

    Returns:
        float64 array of the same shape, in [0, 1] unless ``x`` is constant.
    """
    x = np.asarray(x, dtype=np.float64)
    lo = float(x.min())
    hi = float(x.max())
    if hi == lo:
        return x.copy()
    return (x - lo) / (hi - lo)


def truncate(x: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """KADIS ``truncate``: elementwise ``min(max(x, lo), hi)``.

    Args:
        x: array of any shape.
        lo: lower bound.
        hi: upper bound (``>= lo``).

    Returns:
        float64 array of the same shape with values in [lo, hi].
    """
    return np.clip(np.asarray(x, dtype=np.float64), lo, hi)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """MATLAB ``im2uint8`` / ``imwrite`` of a double image: ``round(255 * x)`` half away from zero, saturated.

    Args:
        x: float array of any shape, nominally in [0, 1].

    Returns:
        uint8 array of the same shape.
    """
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    return np.floor(255.0 * x + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Tone curves
# ---------------------------------------------------------------------------------------------------------------


def curves(x: np.ndarray, control: float | Sequence[float]) -> np.ndarray:
    """KADIS ``curves``: a tone curve through fixed knots, evaluated elementwise and clipped to [0, 1].

    A scalar ``c`` gives the knots (0, 0), (0.5, c), (1, 1); a pair ``(c1, c2)`` gives (0, 0), (0.3, c1),
    (0.5, 0.5), (0.7, c2), (1, 1). The interpolant is MATLAB ``spline``, i.e. the not-a-knot cubic spline (for
    three knots the parabola ``y = (2 - 4c) x**2 + (4c - 1) x``).

    Args:
        x: array of any shape, values in [0, 1].
        control: ``c`` or ``(c1, c2)``.

    Returns:
        float64 array of the same shape, in [0, 1].

    Raises:
        ValueError: if ``control`` has neither one nor two values.
    """
    ctrl = np.atleast_1d(np.asarray(control, dtype=np.float64))
    if ctrl.size == 1:
        xk = np.array([0.0, 0.5, 1.0])
        yk = np.array([0.0, ctrl[0], 1.0])
    elif ctrl.size == 2:
        xk = np.array([0.0, 0.3, 0.5, 0.7, 1.0])
        yk = np.array([0.0, ctrl[0], 0.5, ctrl[1], 1.0])
    else:
        raise ValueError(f"curves: expected one control value or a pair, got {ctrl.size} values")
    spline = CubicSpline(xk, yk, bc_type="not-a-knot")
    x = np.asarray(x, dtype=np.float64)
    return np.clip(spline(x), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------------
# Colour conversions
# ---------------------------------------------------------------------------------------------------------------

_GRAY_WEIGHTS = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])

# Linear sRGB -> XYZ (D65) with the white (0.95047, 1, 1.08883) it implies. With these constants
# rgb2lab([1 0 0]) = [53.2408 80.0925 67.2032] and rgb2lab([1 1 1]) = [100 0 0], MATLAB's documented values.
_RGB2XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
_XYZ2RGB = np.linalg.inv(_RGB2XYZ)
_LAB_DELTA = 6.0 / 29.0


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """The sRGB decoding curve (IEC 61966-2-1), as inside MATLAB ``rgb2lab``; odd-symmetric for negative values.

    Args:
        rgb: (..., 3) float array, sRGB values nominally in [0, 1].

    Returns:
        (..., 3) float64 linear-light values.
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((np.abs(rgb) + 0.055) / 1.055) ** 2.4 * np.sign(rgb))


def linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    """The sRGB encoding curve, as inside MATLAB ``lab2rgb``; not clipped.

    Args:
        lin: (..., 3) float array of linear-light values.

    Returns:
        (..., 3) float64 sRGB values. Negative linear values take the linear branch (-> negative sRGB, removed by the
        caller's ``truncate``).
    """
    lin = np.asarray(lin, dtype=np.float64)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.abs(lin) ** (1.0 / 2.4) - 0.055)


def rgb2gray(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` for float input.

    Args:
        rgb: (H, W, 3) float array.

    Returns:
        (H, W) float64 luminance ``0.2989 R + 0.5870 G + 0.1140 B`` (MATLAB's exact coefficients).
    """
    return np.asarray(rgb, dtype=np.float64) @ _GRAY_WEIGHTS


def rgb2lab(rgb: np.ndarray) -> np.ndarray:
    """Convert sRGB to CIE L*a*b* (D65), as MATLAB ``rgb2lab`` with its defaults.

    Args:
        rgb: (..., 3) float array, sRGB values nominally in [0, 1].

    Returns:
        (..., 3) float64 array (L* in [0, 100], a*, b* roughly in [-128, 127]).
    """
    xyz = (srgb_to_linear(rgb) @ _RGB2XYZ.T) / _D65_WHITE
    f = np.where(xyz > _LAB_DELTA**3, np.cbrt(xyz), xyz / (3 * _LAB_DELTA**2) + 4.0 / 29.0)
    lum = 116.0 * f[..., 1] - 16.0
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([lum, a, b], axis=-1)


def lab2rgb(lab: np.ndarray) -> np.ndarray:
    """Convert CIE L*a*b* (D65) to sRGB, as MATLAB ``lab2rgb``; not clipped (every KADIS call truncates it).

    Args:
        lab: (..., 3) float array.

    Returns:
        (..., 3) float64 sRGB values (may lie outside [0, 1] for out-of-gamut colours).
    """
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = np.where(f > _LAB_DELTA, f**3, 3 * _LAB_DELTA**2 * (f - 4.0 / 29.0)) * _D65_WHITE
    return linear_to_srgb(xyz @ _XYZ2RGB.T)


def rgb2hsv(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2hsv`` for float input (hexcone model).

    Args:
        rgb: (..., 3) float array in [0, 1].

    Returns:
        (..., 3) float64 array: H in [0, 1), S in [0, 1] (0 where V = 0), V = max(R, G, B).
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(axis=-1)
    delta = v - rgb.min(axis=-1)
    safe = np.where(delta > 0, delta, 1.0)
    # Later assignments win on ties, as in MATLAB (blue over green over red); all give the same hue on ties.
    h = np.where(r == v, (g - b) / safe, 0.0)
    h = np.where(g == v, 2.0 + (b - r) / safe, h)
    h = np.where(b == v, 4.0 + (r - g) / safe, h)
    h = np.where(delta > 0, h / 6.0, 0.0)
    h = np.where(h < 0, h + 1.0, h)
    s = np.where(v > 0, delta / np.where(v > 0, v, 1.0), 0.0)
    return np.stack([h, s, v], axis=-1)


def hsv2rgb(hsv: np.ndarray) -> np.ndarray:
    """MATLAB ``hsv2rgb``, including its global normalisation; no clipping.

    With ``k = floor(6H)``, ``f = 6H - k``, the unscaled triple per hexcone sector is built from
    ``t = 1 - S``, ``n = 1 - S f``, ``p = 1 - S (1 - f)``; every triple is then multiplied by ``V / M`` where ``M``
    is the maximum of all unscaled triples over the whole array (``M = 1`` whenever all S are in [0, 1]).

    Args:
        hsv: (..., 3) float array (S may be negative or above 1).

    Returns:
        (..., 3) float64 RGB array.
    """
    hsv = np.asarray(hsv, dtype=np.float64)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    h6 = 6.0 * h
    k = np.floor(h6)
    f = h6 - k
    k = np.mod(k, 6).astype(np.int64)
    t = 1.0 - s
    n = 1.0 - s * f
    p = 1.0 - s * (1.0 - f)
    one = np.ones_like(s)
    choices_r = [one, n, t, t, p, one]
    choices_g = [p, one, one, n, t, t]
    choices_b = [t, t, p, one, one, n]
    sectors = [k == i for i in range(6)]
    rgb = np.stack(
        [np.select(sectors, choices_r), np.select(sectors, choices_g), np.select(sectors, choices_b)], axis=-1
    )
    peak = float(rgb.max()) if rgb.size else 1.0
    if peak <= 0:
        peak = 1.0
    return rgb * (v / peak)[..., None]


_YCBCR_MATRIX = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.000], [112.000, -93.786, -18.214]])
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])
_YCBCR_INVERSE = np.linalg.inv(_YCBCR_MATRIX)


def rgb2ycbcr(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` for float input (ITU-R BT.601, studio range).

    Args:
        rgb: (..., 3) float array in [0, 1].

    Returns:
        (..., 3) float64 (Y, Cb, Cr) with Y in [16/255, 235/255] and Cb, Cr in [16/255, 240/255].
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    return (rgb @ _YCBCR_MATRIX.T + _YCBCR_OFFSET) / 255.0


def ycbcr2rgb(ycbcr: np.ndarray) -> np.ndarray:
    """MATLAB ``ycbcr2rgb`` for float input: exact inverse of :func:`rgb2ycbcr`, clipped to [0, 1].

    Args:
        ycbcr: (..., 3) float array.

    Returns:
        (..., 3) float64 RGB in [0, 1].
    """
    ycbcr = np.asarray(ycbcr, dtype=np.float64)
    return np.clip((255.0 * ycbcr - _YCBCR_OFFSET) @ _YCBCR_INVERSE.T, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------------
# Kernels (fspecial)
# ---------------------------------------------------------------------------------------------------------------


def gaussian_kernel1d(sigma: float) -> np.ndarray:
    """The 1-D kernel of MATLAB ``imgaussfilt``: radius ``ceil(2 sigma)``, weights ``exp(-d**2 / (2 sigma**2))``.

    Args:
        sigma: standard deviation in pixels, > 0.

    Returns:
        float64 array of length ``2 * ceil(2 sigma) + 1`` summing to 1.

    Raises:
        ValueError: if ``sigma`` is not positive.
    """
    if not sigma > 0:
        raise ValueError(f"gaussian_kernel1d: expected sigma > 0, got {sigma}")
    radius = math.ceil(2.0 * sigma)
    d = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-(d**2) / (2.0 * sigma**2))
    return w / w.sum()


def fspecial_gaussian(size: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)`` for a square kernel.

    Args:
        size: kernel side length (>= 1).
        sigma: standard deviation in pixels, > 0.

    Returns:
        (size, size) float64 kernel summing to 1 (entries below ``eps * max`` set to 0 before normalising).
    """
    half = (size - 1) / 2.0
    grid = np.arange(size, dtype=np.float64) - half
    h = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2.0 * sigma**2))
    h[h < MATLAB_EPS * h.max()] = 0.0
    return h / h.sum()


def fspecial_disk(radius: float) -> np.ndarray:
    """MATLAB ``fspecial('disk', radius)``: a pillbox whose weights approximate pixel-area coverage.

    Args:
        radius: disk radius in pixels (>= 1 for the KADIS levels; any value > 0.5 works).

    Returns:
        (2c+1, 2c+1) float64 kernel summing to 1, with ``c = ceil(radius - 0.5)``.
    """
    r = float(radius)
    c = math.ceil(r - 0.5)
    grid = np.arange(-c, c + 1, dtype=np.float64)
    ax = np.abs(grid)[None, :]
    ay = np.abs(grid)[:, None]
    a = np.maximum(ax, ay)
    b = np.minimum(ax, ay)
    r2 = r * r
    m1 = np.where(r2 < (a + 0.5) ** 2 + (b - 0.5) ** 2, b - 0.5, np.sqrt(np.maximum(r2 - (a + 0.5) ** 2, 0.0)))
    m2 = np.where(r2 > (a - 0.5) ** 2 + (b + 0.5) ** 2, b + 0.5, np.sqrt(np.maximum(r2 - (a - 0.5) ** 2, 0.0)))
    cut = ((r2 < (a + 0.5) ** 2 + (b + 0.5) ** 2) & (r2 > (a - 0.5) ** 2 + (b - 0.5) ** 2)) | (
        (b == 0) & (a - 0.5 < r) & (a + 0.5 >= r)
    )
    asin1 = np.arcsin(np.clip(m1 / r, -1.0, 1.0))
    asin2 = np.arcsin(np.clip(m2 / r, -1.0, 1.0))
    area = r2 * (0.5 * (asin2 - asin1) + 0.25 * (np.sin(2 * asin2) - np.sin(2 * asin1)))
    area = area - (a - 0.5) * (m2 - m1) + (m1 - b + 0.5)
    weights = np.where(cut, area, 0.0)
    weights = weights + ((a + 0.5) ** 2 + (b + 0.5) ** 2 < r2)
    weights[c, c] = min(min(math.pi * r2, math.pi / 2.0), 1.0)
    return weights / weights.sum()


def fspecial_motion(length: float, angle: float) -> np.ndarray:
    """MATLAB ``fspecial('motion', length, angle)``: an anti-aliased line of ``length`` pixels at ``angle`` degrees.

    Args:
        length: line length in pixels (values below 1 give the 1x1 identity kernel).
        angle: counter-clockwise angle in degrees (taken modulo 180).

    Returns:
        float64 kernel of odd height and width, summing to 1.
    """
    eps = MATLAB_EPS
    n = max(1.0, float(length))
    half = (n - 1.0) / 2.0
    phi = (float(angle) % 180.0) / 180.0 * math.pi
    cosphi = math.cos(phi)
    sinphi = math.sin(phi)
    xsign = 1.0 if cosphi > 0 else (-1.0 if cosphi < 0 else 0.0)
    width = 1.0
    sx = math.trunc(half * cosphi + width * xsign - n * eps)
    sy = math.trunc(half * sinphi + width - n * eps)
    if xsign == 0.0:  # unreachable for float angles (cos never returns exactly 0), kept for safety
        xs = np.zeros(1)
    else:
        xs = np.arange(0, abs(sx) + 1, dtype=np.float64) * xsign
    ys = np.arange(0, sy + 1, dtype=np.float64)
    x, y = np.meshgrid(xs, ys)  # (R, C) quarter grid, rows = y, columns = x
    dist = y * cosphi - x * sinphi
    rad = np.sqrt(x**2 + y**2)
    last = (rad >= half) & (np.abs(dist) <= width)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x2last = half - np.abs((x + dist * sinphi) / cosphi)
        dist = np.where(last, np.sqrt(dist**2 + x2last**2), dist)
    quarter = width + eps - np.abs(dist)
    quarter = np.where(quarter < 0, 0.0, quarter)
    rows, cols = quarter.shape
    kernel = np.zeros((2 * rows - 1, 2 * cols - 1))
    kernel[:rows, :cols] = quarter[::-1, ::-1]
    kernel[rows - 1 :, cols - 1 :] = quarter
    kernel = kernel / (kernel.sum() + eps * n * n)
    if cosphi > 0:
        kernel = kernel[::-1, :]
    return np.ascontiguousarray(kernel)


# ---------------------------------------------------------------------------------------------------------------
# Filtering
# ---------------------------------------------------------------------------------------------------------------


def imfilter(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """MATLAB ``imfilter(image, kernel, 'replicate', 'same')``: 2-D correlation of every channel.

    Large kernels go through FFT convolution of the replicate-padded image (identical up to float rounding).

    Args:
        image: (H, W) or (H, W, C) float array.
        kernel: (kh, kw) float array with odd sides.

    Returns:
        float64 array of the same shape as ``image``.

    Raises:
        ValueError: if the kernel is not 2-D with odd sides.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"imfilter: expected a 2-D kernel with odd sides, got shape {kernel.shape}")
    image = np.asarray(image, dtype=np.float64)
    planar = image.ndim == 2
    stack = image[..., None] if planar else image
    kh, kw = kernel.shape
    if kernel.size <= _DIRECT_FILTER_MAX_TAPS:
        out = np.empty_like(stack)
        for ch in range(stack.shape[2]):
            out[..., ch] = ndimage.correlate(stack[..., ch], kernel, mode="nearest")
    else:
        ph, pw = kh // 2, kw // 2
        padded = np.pad(stack, ((ph, ph), (pw, pw), (0, 0)), mode="edge")
        flipped = kernel[::-1, ::-1, None]  # correlation = convolution with the rotated kernel
        out = signal.fftconvolve(padded, flipped, mode="valid", axes=(0, 1))
    return out[..., 0] if planar else out


def imgaussfilt(image: np.ndarray, sigma: float) -> np.ndarray:
    """MATLAB ``imgaussfilt(image, sigma)``: separable Gaussian, ``2 ceil(2 sigma) + 1`` taps, replicate borders.

    Args:
        image: (H, W) or (H, W, C) float array; every 2-D plane is filtered separately.
        sigma: standard deviation in pixels, > 0.

    Returns:
        float64 array of the same shape.
    """
    w = gaussian_kernel1d(sigma)
    out = ndimage.correlate1d(np.asarray(image, dtype=np.float64), w, axis=0, mode="nearest")
    return ndimage.correlate1d(out, w, axis=1, mode="nearest")


# ---------------------------------------------------------------------------------------------------------------
# Noise (imnoise)
# ---------------------------------------------------------------------------------------------------------------


def imnoise_gaussian(image: np.ndarray, variance: float, rng: np.random.Generator, mean: float = 0.0) -> np.ndarray:
    """MATLAB ``imnoise(I, 'gaussian', mean, variance)``: independent normal noise per element, clipped to [0, 1].

    Args:
        image: float array of any shape, in [0, 1].
        variance: noise variance (>= 0).
        rng: source of the normal draws (one per element).
        mean: noise mean.

    Returns:
        float64 array of the same shape, in [0, 1].
    """
    noise = rng.standard_normal(np.shape(image))
    return np.clip(np.asarray(image, dtype=np.float64) + math.sqrt(variance) * noise + mean, 0.0, 1.0)


def imnoise_salt_pepper(image: np.ndarray, density: float, rng: np.random.Generator) -> np.ndarray:
    """MATLAB ``imnoise(I, 'salt & pepper', d)``: each element becomes 0 with probability d/2 and 1 with d/2.

    Args:
        image: float array of any shape, in [0, 1].
        density: d in [0, 1].
        rng: source of the uniform draws (one per element).

    Returns:
        float64 array of the same shape.
    """
    u = rng.random(np.shape(image))
    out = np.array(image, dtype=np.float64, copy=True)
    out[u < density / 2.0] = 0.0
    out[(u >= density / 2.0) & (u < density)] = 1.0
    return out


def imnoise_speckle(image: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    """MATLAB ``imnoise(I, 'speckle', v)``: ``J = I + I n`` with uniform zero-mean noise of variance v, clipped.

    Args:
        image: float array of any shape, in [0, 1].
        variance: v (>= 0); the noise is uniform on ``[-sqrt(3v), sqrt(3v)]``.
        rng: source of the uniform draws (one per element).

    Returns:
        float64 array of the same shape, in [0, 1].
    """
    image = np.asarray(image, dtype=np.float64)
    u = rng.random(image.shape)
    return np.clip(image + math.sqrt(12.0 * variance) * image * (u - 0.5), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------------
# Resampling
# ---------------------------------------------------------------------------------------------------------------


def _nearest_indices(n_in: int, n_out: int, scale: float) -> np.ndarray:
    """0-based source indices of MATLAB ``imresize(..., 'nearest')`` along one axis."""
    x = np.arange(1, n_out + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    return np.clip(np.floor(u + 0.5).astype(np.int64), 1, n_in) - 1


def imresize_nearest(
    image: np.ndarray, *, scale: float | None = None, size: tuple[int, int] | None = None
) -> np.ndarray:
    """MATLAB ``imresize(image, scale, 'nearest')`` or ``imresize(image, [rows cols], 'nearest')``.

    No antialiasing (MATLAB never antialiases ``'nearest'``). Output size ``ceil(scale * size)`` for a scale factor;
    the index map per axis is ``floor(x / s + 0.5 (1 - 1/s) + 0.5)`` (1-based), clamped to the input.

    Args:
        image: (H, W) or (H, W, C) array.
        scale: resize factor (> 0); exclusive with ``size``.
        size: output (rows, cols); exclusive with ``scale``.

    Returns:
        Array of the input dtype with the new height and width.

    Raises:
        ValueError: unless exactly one of ``scale`` and ``size`` is given, or if the output would be empty.
    """
    h, w = image.shape[:2]
    if (scale is None) == (size is None):
        raise ValueError("imresize_nearest: expected exactly one of scale and size")
    if scale is not None:
        if not scale > 0:
            raise ValueError(f"imresize_nearest: expected scale > 0, got {scale}")
        out_h, out_w = math.ceil(scale * h), math.ceil(scale * w)
        sy = sx = float(scale)
    else:
        out_h, out_w = int(size[0]), int(size[1])  # type: ignore[index]
        if out_h < 1 or out_w < 1:
            raise ValueError(f"imresize_nearest: expected a positive output size, got {size}")
        sy, sx = out_h / h, out_w / w
    rows = _nearest_indices(h, out_h, sy)
    cols = _nearest_indices(w, out_w, sx)
    return image[rows][:, cols]
