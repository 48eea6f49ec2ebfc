"""Distortion types: the 25 KADID-10k / KADIS-700k types ported from the MATLAB generator ``imdist_generator``, and
ours beyond them (colour casts, hue rotation, stacked distortions).

One table, :data:`DISTORTION_TYPES`, holds every type (:class:`DistortionType`: id, name, description, level values,
what they mean, the function, and its flags); everything else derives from it. :data:`DISTORTIONS` is the 25 KADID
types (ids 1..25, frozen in :data:`vtamiq_metric.training.seeds.KADIS_TYPE_IDS`), :data:`EXTRA_DISTORTIONS` ours:

- 26 ``wbcast`` (white-balance cast), 27 ``gaincast`` (channel-gain cast), 28 ``huerotate`` (hue rotation), in
  :mod:`.colour_cast`;
- stacks, one type each, every part at the stack's level: 29 ``noise_gaincast`` (11 then 27), 30 ``jpeg_wbcast``
  (10 then 26), 31 ``lblur_jpeg`` (2 then 10), 32 ``lblur_noise`` (2 then 11).

The KADID types are implemented from ``docs/background/distortions.md`` (no MATLAB code is copied) with the generator's
semantics:

1. the input is converted to float64 and min-max normalised (``mapmm``: global minimum -> 0, maximum -> 1, over all
   pixels and channels; a no-op for references that already span 0..255);
2. the type's function is applied with the MATLAB level value (:attr:`DistortionType.levels`);
3. the result is min-max normalised again (``mapmm``), for every KADID type. Our colour casts, the hue rotation and
   the stacks that end in one skip this step (:attr:`DistortionType.normalise_output`), because stretching the
   result back to the full range would undo part of a global cast; their outputs are clipped to [0, 1] instead;
4. uint8 input gets uint8 output with MATLAB's ``imwrite`` rounding (``round(255 J)``, half away from zero);
   float input gets float output of the same dtype in [0, 1].

Fidelity to MATLAB (details in each module's docstring):

- exact up to float rounding, given the same random draws: 1, 2, 3 (blur), 7 (HSV saturation), 11-14 (noise),
  18 (mean shift), 19 (jitter; float32 sampling), 20 (non-eccentricity), 21 (pixelate);
- close (CIE L*a*b* constants within the 4th decimal; unpublished helpers reconstructed as that page says): 4, 5, 8,
  16, 17, 24, 25, 22 (``fminsearch`` termination details), 23 (``insertShape`` rounding), 10 (Pillow's libjpeg
  instead of MATLAB's, +-1-2 grey levels);
- approximate substitutes: 6 (Wu palette + Pillow Floyd-Steinberg instead of ``rgb2ind``), 9 (OpenJPEG instead of
  Kakadu), 15 (DnCNN-B via :func:`load_dncnn`, or by default a non-local-means fallback, instead of MATLAB's
  DnCNN; VTAMIQ skipped type 15, keep it opt-in).

Randomness: types 3, 5, 11, 12, 13, 14, 15, 19, 20, 23 and 26-30, 32 draw from ``numpy.random.default_rng(seed)`` or the
passed Generator, never from a global state. MATLAB's unseeded global stream cannot be reproduced, so outputs are
deterministic per seed but not pixel-equal to the official KADIS-700k images. Seed each (reference, type, level)
separately when generating a dataset.

Every type's function has the same shape on purpose (an ``(H, W, 3)`` float64 image and the MATLAB level value in,
the same Args/Returns docstring giving the KADIS values of the five levels), so that each documents its own
parameters; the ``duplicates`` tool lists these docstrings as same-shape.

Levels that are the identity in MATLAB (up to float rounding): type 1 level 1 (sigma 0.1), type 3 level 1
(length 1), type 8 level 1 (factor 1, Lab round trip) and type 18 level 3 (offset 0).

Example:
    >>> import numpy as np
    >>> from vtamiq_metric.training.distortions import apply_distortion, get_distortion
    >>> ref = np.linspace(0, 1, 48 * 64 * 3).reshape(48, 64, 3)
    >>> apply_distortion(ref, "jpeg", 3, seed=0).shape
    (48, 64, 3)
    >>> get_distortion(10).levels
    (43.0, 36.0, 24.0, 7.0, 4.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from ..seeds import KADIS_TYPE_IDS
from . import blur, brightness, colour, colour_cast, compression, denoise, noise, quantization, sharpness, spatial
from ._matlab import mapmm, to_uint8
from .denoise import PlaneDenoiser, load_dncnn

__all__ = [
    "DISTORTIONS",
    "DISTORTION_TYPES",
    "EXTRA_DISTORTIONS",
    "DistortionType",
    "PlaneDenoiser",
    "apply_distortion",
    "get_distortion",
    "load_dncnn",
]


_Apply = Callable[[np.ndarray, float, np.random.Generator, "PlaneDenoiser | None"], np.ndarray]
"""A type's function: ``(image (H, W, 3) float64 in [0, 1], level value, rng, denoiser) -> image`` of the same shape."""


@dataclass(frozen=True)
class DistortionType:
    """One distortion type: everything the package knows about it, in one entry of :data:`DISTORTION_TYPES`.

    Attributes:
        id: KADID numbering 1..25 for the KADID-10k / KADIS-700k types; 26 and up for ours.
        name: file-name token (e.g. ``"gblur"``); for 1..25 the KADIS token of ``kadis700k_friqa_no15.csv``.
        description: e.g. ``"Gaussian blur"``; for 1..25 the KADID-10k name.
        levels: the level values for levels 1..5 (for 1..25 the MATLAB ones of ``imdist_generator.m``).
        parameter: what a level value means, e.g. ``"Gaussian sigma in pixels"``.
        function: ``(image, level value, rng, denoiser) -> image``, the distortion itself (an ``(H, W, 3)`` float64
            image in [0, 1] in and out; random draws only from ``rng``; ``denoiser`` is used by type 15 only).
        random: whether the type draws random numbers (and so depends on the seed).
        level_is_severity: whether a higher level is a stronger distortion. False for mean shift (18) and contrast
            change (25), whose levels 1-2 and 4-5 change the image in opposite directions around level 3, which
            changes nothing.
        normalise_output: whether :func:`apply_distortion` min-max normalises the result (``mapmm``), as the MATLAB
            generator does for every KADID type. False for the colour casts and hue rotation (26-28) and the stacks
            that end in one: the normalisation would undo part of a global cast (see :mod:`.colour_cast`).
        parts: for a stack of distortions (29 and up), the type ids applied one after the other, each at the stack's
            level; empty otherwise.
    """

    id: int
    name: str
    description: str
    levels: tuple[float, float, float, float, float]
    parameter: str
    function: _Apply = field(repr=False)
    random: bool = False
    level_is_severity: bool = True
    normalise_output: bool = True
    parts: tuple[int, ...] = ()

    def __reduce__(self) -> tuple[Callable[[int], DistortionType], tuple[int]]:
        """Pickle as a reference into the table (the function is a lambda), so a type crosses process boundaries."""
        return get_distortion, (self.id,)


def _levels(*values: float) -> tuple[float, float, float, float, float]:
    return tuple(float(v) for v in values)  # type: ignore[return-value]


_SINGLE_TYPES = (
    DistortionType(1, "gblur", "Gaussian blur", _levels(0.1, 0.5, 1, 2, 5), "Gaussian sigma in pixels",
                   lambda x, v, rng, dn: blur.gaussian_blur(x, v)),
    DistortionType(2, "lblur", "Lens blur", _levels(1, 2, 4, 6, 8), "disk radius in pixels",
                   lambda x, v, rng, dn: blur.lens_blur(x, v)),
    DistortionType(3, "mblur", "Motion blur", _levels(1, 2, 4, 6, 10), "line length in pixels",
                   lambda x, v, rng, dn: blur.motion_blur(x, v, rng), random=True),
    DistortionType(4, "colordiffuse", "Color diffusion", _levels(1, 3, 6, 8, 12), "chroma gain k (blur sigma 1.5k + 2)",
                   lambda x, v, rng, dn: colour.color_diffuse(x, v)),
    DistortionType(5, "colorshift", "Color shift", _levels(1, 3, 6, 8, 12), "green-plane shift in pixels",
                   lambda x, v, rng, dn: colour.color_shift(x, v, rng), random=True),
    DistortionType(6, "colorquantize", "Color quantization", _levels(64, 48, 32, 16, 8), "number of colours",
                   lambda x, v, rng, dn: quantization.color_quantize(x, int(v))),
    DistortionType(7, "colorsaturate", "Color saturation 1", _levels(0.4, 0.2, 0.1, 0, -0.4), "HSV saturation factor",
                   lambda x, v, rng, dn: colour.color_saturate(x, v)),
    DistortionType(8, "saturate", "Color saturation 2", _levels(1, 2, 3, 6, 9), "Lab a*, b* factor",
                   lambda x, v, rng, dn: colour.saturate(x, v)),
    DistortionType(9, "jp2k", "JPEG2000", _levels(16, 32, 45, 120, 400), "compression ratio",
                   lambda x, v, rng, dn: compression.jpeg2000(x, v)),
    DistortionType(10, "jpeg", "JPEG", _levels(43, 36, 24, 7, 4), "JPEG quality",
                   lambda x, v, rng, dn: compression.jpeg(x, int(v))),
    DistortionType(11, "noisegauss", "White noise", _levels(0.001, 0.002, 0.003, 0.005, 0.01), "noise variance",
                   lambda x, v, rng, dn: noise.white_noise(x, v, rng), random=True),
    DistortionType(12, "noisecolorcomp", "White noise in color component", _levels(1e-4, 5e-4, 1e-3, 2e-3, 3e-3),
                   "noise variance in YCbCr", lambda x, v, rng, dn: noise.white_noise_color_component(x, v, rng),
                   random=True),
    DistortionType(13, "noiseimpulse", "Impulse noise", _levels(0.001, 0.005, 0.01, 0.02, 0.03), "impulse density",
                   lambda x, v, rng, dn: noise.impulse_noise(x, v, rng), random=True),
    DistortionType(14, "noisemultiplicative", "Multiplicative noise", _levels(0.001, 0.005, 0.01, 0.02, 0.05),
                   "speckle noise variance", lambda x, v, rng, dn: noise.multiplicative_noise(x, v, rng), random=True),
    DistortionType(15, "denoise", "Denoise", _levels(0.01, 0.03, 0.05, 0.1, 0.15), "noise variance before denoising",
                   lambda x, v, rng, dn: denoise.denoise(x, v, rng, dn), random=True),
    DistortionType(16, "brighten", "Brighten", _levels(0.1, 0.2, 0.4, 0.7, 1.1), "amount (curve midpoint 0.5 + a/2)",
                   lambda x, v, rng, dn: brightness.brighten(x, v)),
    DistortionType(17, "darken", "Darken", _levels(0.05, 0.1, 0.2, 0.4, 0.8), "amount (curve midpoint 0.5 - a/2)",
                   lambda x, v, rng, dn: brightness.darken(x, v)),
    DistortionType(18, "meanshift", "Mean shift", _levels(0.15, 0.08, 0, -0.08, -0.15), "intensity offset",
                   lambda x, v, rng, dn: brightness.mean_shift(x, v), level_is_severity=False),
    DistortionType(19, "jitter", "Jitter", _levels(0.05, 0.1, 0.2, 0.5, 1), "shift standard deviation in pixels",
                   lambda x, v, rng, dn: spatial.jitter(x, v, rng), random=True),
    DistortionType(20, "noneccentricity", "Non-eccentricity patch", _levels(20, 40, 60, 80, 100), "number of patches",
                   lambda x, v, rng, dn: spatial.non_eccentricity(x, int(v), rng), random=True),
    DistortionType(21, "pixelate", "Pixelate", _levels(0.01, 0.05, 0.1, 0.2, 0.5), "strength s (scale 0.95 - s^0.6)",
                   lambda x, v, rng, dn: spatial.pixelate(x, v)),
    DistortionType(22, "noisequantize", "Quantization", _levels(20, 16, 13, 10, 7), "number of thresholds",
                   lambda x, v, rng, dn: quantization.quantize(x, int(v))),
    DistortionType(23, "colorblock", "Color block", _levels(2, 4, 6, 8, 10), "number of blocks",
                   lambda x, v, rng, dn: spatial.color_block(x, int(v), rng), random=True),
    DistortionType(24, "sharpenHi", "High sharpen", _levels(1, 2, 3, 6, 12), "unsharp-mask amount",
                   lambda x, v, rng, dn: sharpness.sharpen(x, v)),
    DistortionType(25, "contrastchange", "Contrast change", _levels(0.3, 0.15, 0, -0.4, -0.6), "contrast amount",
                   lambda x, v, rng, dn: sharpness.contrast_change(x, v), level_is_severity=False),
    # Ours (not in KADID-10k): global colour errors, see colour_cast.py.
    DistortionType(26, "wbcast", "White-balance cast", _levels(10, 20, 35, 60, 100),
                   "colour-temperature shift in mired from 6504 K, warm or cool by the seed",
                   lambda x, v, rng, dn: colour_cast.white_balance_cast(x, v, rng), random=True,
                   normalise_output=False),
    DistortionType(27, "gaincast", "Channel-gain cast", _levels(0.05, 0.1, 0.2, 0.4, 0.8),
                   "norm of the log gains of linear R, G, B (zero-mean direction drawn by the seed)",
                   lambda x, v, rng, dn: colour_cast.channel_gain_cast(x, v, rng), random=True,
                   normalise_output=False),
    DistortionType(28, "huerotate", "Hue rotation", _levels(4, 8, 15, 25, 40),
                   "CIE LCh hue angle in degrees, sign drawn by the seed",
                   lambda x, v, rng, dn: colour_cast.hue_rotation(x, v, rng), random=True, normalise_output=False),
)

_SINGLE = {t.id: t for t in _SINGLE_TYPES}


def _chain(parts: tuple[DistortionType, ...]) -> _Apply:
    """The function of a stack: each part at the stack's level (the level value of a stack is the level, 1..5).

    Between two parts the generator's output normalisation of the first is kept (``mapmm`` when that part has it;
    the next part's input normalisation would then be a no-op), so a stack is two ``imdist_generator`` calls, except
    that a cast is never stretched back.
    """

    def apply(image: np.ndarray, level: float, rng: np.random.Generator, denoiser: PlaneDenoiser | None) -> np.ndarray:
        out = image
        for k, part in enumerate(parts):
            out = part.function(out, part.levels[int(level) - 1], rng, denoiser)
            if k < len(parts) - 1 and part.normalise_output:
                out = mapmm(out)
        return out

    return apply


def _stack(type_id: int, name: str, description: str, *part_ids: int) -> DistortionType:
    """A stack of distortions as one type: ``part_ids`` applied in order, all at the same level."""
    parts = tuple(_SINGLE[p] for p in part_ids)
    return DistortionType(
        type_id,
        name,
        description,
        _levels(1, 2, 3, 4, 5),
        "level L applies " + ", then ".join(f"type {p.id} ({p.name}) at level L" for p in parts),
        _chain(parts),
        random=any(p.random for p in parts),
        level_is_severity=all(p.level_is_severity for p in parts),
        normalise_output=parts[-1].normalise_output,
        parts=tuple(part_ids),
    )


_STACKS = (
    _stack(29, "noise_gaincast", "White noise, then channel-gain cast", 11, 27),
    _stack(30, "jpeg_wbcast", "JPEG, then white-balance cast", 10, 26),
    _stack(31, "lblur_jpeg", "Lens blur, then JPEG", 2, 10),
    _stack(32, "lblur_noise", "Lens blur, then white noise", 2, 11),
)

DISTORTION_TYPES: dict[int, DistortionType] = {t.id: t for t in (*_SINGLE_TYPES, *_STACKS)}
"""Every distortion type by id: the 25 KADID types (1..25), then ours (26 and up). **The** table: everything else
(:data:`DISTORTIONS`, the dataset readers' type names, the KADIS generator's checks and messages) derives from it."""

DISTORTIONS: dict[int, DistortionType] = {i: DISTORTION_TYPES[i] for i in KADIS_TYPE_IDS}
"""The 25 KADID-10k / KADIS-700k types by KADID id (1..25), the pool of the KADIS type draw."""

EXTRA_DISTORTIONS: dict[int, DistortionType] = {i: t for i, t in DISTORTION_TYPES.items() if i not in DISTORTIONS}
"""Our types beyond KADID's (26 and up): colour casts, hue rotation and stacks (``make-kadis --extra-types``)."""

_BY_NAME: dict[str, DistortionType] = {t.name: t for t in DISTORTION_TYPES.values()}


def _ids_text(ids: Iterable[int]) -> str:
    """``"1..32"`` for consecutive ids, else the sorted list."""
    ordered = sorted(ids)
    if ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}..{ordered[-1]}"
    return ", ".join(map(str, ordered))


def get_distortion(type_id_or_name: int | str) -> DistortionType:
    """Look up a distortion type of :data:`DISTORTION_TYPES` by id or name token (e.g. ``"gblur"``).

    Args:
        type_id_or_name: integer id (1..25 KADID, 26 and up ours) or exact name token.

    Returns:
        The :class:`DistortionType`.

    Raises:
        TypeError: if the argument is neither an int nor a str.
        ValueError: if no type has that id or name.
    """
    if isinstance(type_id_or_name, (bool, np.bool_)):
        raise TypeError(f"expected a distortion id (int {_ids_text(DISTORTION_TYPES)}) or name (str), got bool")
    if isinstance(type_id_or_name, (int, np.integer)):
        key = int(type_id_or_name)
        if key not in DISTORTION_TYPES:
            raise ValueError(f"expected a distortion id in {_ids_text(DISTORTION_TYPES)}, got {key}")
        return DISTORTION_TYPES[key]
    if isinstance(type_id_or_name, str):
        if type_id_or_name not in _BY_NAME:
            raise ValueError(f"expected a distortion name among {', '.join(sorted(_BY_NAME))}, got {type_id_or_name!r}")
        return _BY_NAME[type_id_or_name]
    raise TypeError(f"expected a distortion id (int {_ids_text(DISTORTION_TYPES)}) or name (str), got "
                    f"{type(type_id_or_name).__name__}")


def _as_float_image(image: np.ndarray) -> np.ndarray:
    """Validate an (H, W, 3) uint8 / float image and return it as float64 in [0, 1]."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected image as a numpy.ndarray of shape (H, W, 3), got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected image of shape (H, W, 3), got shape {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"expected image of at least 2x2 pixels, got {image.shape[0]}x{image.shape[1]}")
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    if image.dtype not in (np.float32, np.float64):
        raise TypeError(f"expected image dtype uint8, float32 or float64, got {image.dtype}")
    if not np.isfinite(image).all():
        raise ValueError("expected finite image values in [0, 1], got NaN or inf")
    lo, hi = float(image.min()), float(image.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"expected float image values in [0, 1], got range [{lo:.6g}, {hi:.6g}]")
    return image.astype(np.float64)


def _as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"expected seed as an int, a numpy.random.Generator or None, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"expected a non-negative seed, got {seed}")
    return np.random.default_rng(int(seed))


def apply_distortion(
    image: np.ndarray,
    distortion: int | str,
    level: int,
    *,
    seed: int | np.random.Generator | None = 0,
    denoiser: PlaneDenoiser | None = None,
) -> np.ndarray:
    """Distort an image as ``imdist_generator(image, type, level)`` does (mapmm, distortion, mapmm).

    Types whose :attr:`DistortionType.normalise_output` is False (the colour casts and hue rotation 26-28 and the
    stacks ending in one) skip the final ``mapmm``: it would stretch a global cast back towards the full range.

    Args:
        image: (H, W, 3) RGB, uint8 in 0..255 or float32/float64 in [0, 1]; H, W >= 2 (types 20 and 23 need at least
            48x48 and 32x32).
        distortion: an id or name token of :data:`DISTORTION_TYPES` (KADID ids 1..25, ours 26 and up).
        level: severity level 1..5 (the MATLAB level order; not monotone in severity for types 18 and 25).
        seed: int seed for ``numpy.random.default_rng``, a Generator (advanced in place), or None for fresh
            entropy. Only the random types (:attr:`DistortionType.random`) use it.
        denoiser: type 15 only: a plane denoiser such as ``load_dncnn(path)``; None uses the non-local-means
            fallback. Ignored by the other types.

    Returns:
        (H, W, 3) array of the input dtype: uint8 rounded as MATLAB ``imwrite``, or float in [0, 1].

    Raises:
        TypeError: for a non-array image, an unsupported dtype, or a wrongly typed distortion, level or seed.
        ValueError: for a wrong shape, NaN/inf or out-of-range values, an unknown distortion, a level outside 1..5,
            a negative seed, or an image too small for the type.
    """
    dist = get_distortion(distortion)
    if isinstance(level, (bool, np.bool_)) or not isinstance(level, (int, np.integer)):
        raise TypeError(f"expected level as an int in 1..5, got {type(level).__name__}")
    if not 1 <= int(level) <= 5:
        raise ValueError(f"expected level in 1..5, got {int(level)}")
    x = _as_float_image(image)
    rng = _as_generator(seed)
    out = dist.function(mapmm(x), dist.levels[int(level) - 1], rng, denoiser)
    if dist.normalise_output:
        out = mapmm(out)
    if image.dtype == np.uint8:
        return to_uint8(out)
    return np.clip(out, 0.0, 1.0).astype(image.dtype)
