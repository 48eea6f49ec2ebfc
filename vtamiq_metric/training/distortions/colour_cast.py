"""Colour casts and hue rotation: types 26 (white-balance cast), 27 (channel-gain cast) and 28 (hue rotation).

KADID-10k's 25 types change saturation, shift or diffuse colour locally and quantise colours, but none of them moves
the colour of the whole image the way a wrong white balance, a camera's channel gains or a hue error do. These three
add that. They are ours (not from the MATLAB generator) and follow its conventions: an ``(H, W, 3)`` float64 image in
[0, 1] in and out, five levels with level 1 the weakest, random draws only from the ``rng`` argument.

Unlike the KADID types they are **exempt from the generator's final min-max normalisation** (``mapmm``;
:attr:`~vtamiq_metric.training.distortions.DistortionType.normalise_output` is False). A cast changes the range of
the channels on purpose (a warm cast takes blue out of the highlights, a cool one red); when the image's brightest
values lose some of their level, stretching the result back to the full range would put that back, undoing part of
the cast, and add a brightness and contrast change that is no part of it. Their outputs are clipped to [0, 1]
instead.

- **White-balance cast (26).** The image is rendered as if its white had been balanced for the wrong illuminant: a
  von Kries adaptation in the Bradford cone space from a Planckian illuminant at the sRGB white's correlated colour
  temperature (6504 K) to one ``shift`` mired warmer (lower temperature, orange) or cooler (higher, blue); the
  direction is one fair draw from ``rng``. Chromaticities of the Planckian locus come from Kim et al.'s cubic
  approximation (valid 1667-25000 K), so 0 mired is exactly the identity. The gains act on linear light, with the
  target white's luminance kept at 1, and the result is clipped.
- **Channel-gain cast (27).** Linear R, G, B are multiplied by gains ``exp(m u)``, where ``u`` is a random unit vector
  (three normal draws with their mean removed, normalised) and ``m`` the level's log-gain magnitude: the geometric
  mean of the gains is 1, so the cast changes colour more than brightness. Clipped.
- **Hue rotation (28).** The CIE L*a*b* chroma plane (a*, b*) is rotated by the level's angle (LCh hue plus or minus
  the angle, the sign one fair draw from ``rng``); lightness and chroma are kept, out-of-gamut colours are clipped.
"""

from __future__ import annotations

import math

import numpy as np

from ._matlab import _RGB2XYZ, _XYZ2RGB, lab2rgb, linear_to_srgb, rgb2lab, srgb_to_linear, truncate

__all__ = ["REFERENCE_KELVIN", "channel_gain_cast", "hue_rotation", "planckian_xy", "white_balance_cast",
           "white_balance_matrix"]

REFERENCE_KELVIN = 6504.0
"""Correlated colour temperature of the sRGB white (D65), the illuminant the reference is balanced for."""

# Bradford cone-response matrix (XYZ -> sharpened LMS), the usual space for von Kries-style chromatic adaptation.
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
_BRADFORD_INV = np.linalg.inv(_BRADFORD)


def planckian_xy(kelvin: float) -> tuple[float, float]:
    """CIE 1931 xy chromaticity of a black body (Kim et al. 2002 cubic approximation of the Planckian locus).

    Args:
        kelvin: colour temperature in 1667..25000 K.

    Returns:
        ``(x, y)``.

    Raises:
        ValueError: for a temperature outside 1667..25000 K.
    """
    if not 1667.0 <= kelvin <= 25000.0:
        raise ValueError(f"expected a colour temperature in 1667..25000 K, got {kelvin:.1f}")
    t = float(kelvin)
    if t <= 4000.0:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t <= 2222.0:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t <= 4000.0:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    return x, y


def _white_xyz(kelvin: float) -> np.ndarray:
    """XYZ of the Planckian illuminant at ``kelvin``, luminance Y = 1."""
    x, y = planckian_xy(kelvin)
    return np.array([x / y, 1.0, (1.0 - x - y) / y])


def white_balance_matrix(mired_shift: float) -> np.ndarray:
    """The 3x3 linear-RGB matrix of a white-balance cast of ``mired_shift`` mired.

    Args:
        mired_shift: positive = warmer (lower colour temperature), negative = cooler; the target temperature
            ``1e6 / (1e6 / 6504 + mired_shift)`` must lie in 1667..25000 K (shifts of about -113.7..+446 mired).

    Returns:
        (3, 3) float64 ``M`` with ``linear_out = M @ linear_in``: von Kries gains in Bradford space from the 6504 K
        Planckian white to the shifted one. ``mired_shift=0`` gives the identity (up to float rounding).
    """
    target = 1e6 / (1e6 / REFERENCE_KELVIN + mired_shift)
    gains = (_BRADFORD @ _white_xyz(target)) / (_BRADFORD @ _white_xyz(REFERENCE_KELVIN))
    return _XYZ2RGB @ _BRADFORD_INV @ np.diag(gains) @ _BRADFORD @ _RGB2XYZ


def _apply_linear(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``matrix`` applied to every pixel's linear-light RGB, clipped, encoded back to sRGB."""
    lin = srgb_to_linear(image) @ matrix.T
    return truncate(linear_to_srgb(np.clip(lin, 0.0, 1.0)))


def white_balance_cast(image: np.ndarray, shift: float, rng: np.random.Generator) -> np.ndarray:
    """Type 26: a white-balance cast of ``shift`` mired, warm or cool (one fair draw from ``rng``).

    Args:
        image: (H, W, 3) float64 in [0, 1].
        shift: magnitude in mired (levels 10, 20, 35, 60, 100: 6504 K becomes 6098, 5743, 5282, 4624, 3940 K when
            warm and 6964, 7494, 8449, 10537, 18600 K when cool).
        rng: generator (one uniform draw: warm if below 0.5).

    Returns:
        (H, W, 3) float64 in [0, 1].
    """
    warm = rng.random() < 0.5
    return _apply_linear(image, white_balance_matrix(shift if warm else -shift))


def channel_gain_cast(image: np.ndarray, magnitude: float, rng: np.random.Generator) -> np.ndarray:
    """Type 27: linear R, G, B times ``exp(magnitude u)``, ``u`` a random zero-mean unit vector.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        magnitude: Euclidean norm of the natural-log gains (levels 0.05, 0.1, 0.2, 0.4, 0.8; at 0.8 the largest
            gain is at most ``exp(0.8 sqrt(2/3)) = 1.92``).
        rng: generator (three normal draws).

    Returns:
        (H, W, 3) float64 in [0, 1].
    """
    direction = rng.standard_normal(3)
    direction -= direction.mean()
    norm = float(np.linalg.norm(direction))
    if norm == 0.0:  # probability 0 for continuous draws; keep a defined cast (red up, blue down)
        direction, norm = np.array([1.0, 0.0, -1.0]), math.sqrt(2.0)
    return _apply_linear(image, np.diag(np.exp(magnitude * direction / norm)))


def hue_rotation(image: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    """Type 28: rotate every pixel's CIE LCh hue by ``degrees``, clockwise or not (one fair draw from ``rng``).

    Args:
        image: (H, W, 3) float64 in [0, 1].
        degrees: rotation angle (levels 4, 8, 15, 25, 40 degrees).
        rng: generator (one uniform draw: positive angle if below 0.5).

    Returns:
        (H, W, 3) float64 in [0, 1] (``truncate(lab2rgb(...))``).
    """
    angle = math.radians(degrees if rng.random() < 0.5 else -degrees)
    lab = rgb2lab(image)
    a, b = lab[..., 1].copy(), lab[..., 2].copy()
    lab[..., 1] = math.cos(angle) * a - math.sin(angle) * b
    lab[..., 2] = math.sin(angle) * a + math.cos(angle) * b
    return truncate(lab2rgb(lab))
