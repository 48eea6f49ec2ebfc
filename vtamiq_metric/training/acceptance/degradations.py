"""Degradations of the acceptance checks: the severity ladders, explicit colour casts, centre crops, image loading.

Every degradation takes a (3, H, W) float RGB image in [0, 1] and returns one of the same size, clipped and quantised to
8 bits like a saved image; the random ones draw only from their ``seed``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..._validation import load_image

__all__ = ["CASTS", "LADDERS", "apply_cast", "centre_crop", "degrade", "load_images"]


#: Severity ladders, weakest first: the parameter of each of the five levels.
LADDERS: dict[str, tuple[float, ...]] = {
    "jpeg": (90, 70, 50, 30, 10),  # IJG quality (Pillow, 4:2:0)
    "gaussian_blur": (0.5, 1.0, 1.5, 2.5, 4.0),  # sigma in pixels
    "white_noise": (0.02, 0.04, 0.07, 0.10, 0.15),  # standard deviation, values in [0, 1], clipped
    "resample": (1.5, 2.0, 3.0, 4.0, 6.0),  # bicubic down-scaling factor, then bicubic back up
    "contrast": (0.85, 0.70, 0.55, 0.40, 0.25),  # share of the contrast kept around the image mean
    "salt_pepper": (0.005, 0.01, 0.02, 0.05, 0.10),  # share of pixels set to black or white
}


#: Colour casts of :func:`apply_cast` (the second distortions of :func:`stacking_check`). Deliberately simple and
#: unlike the training distortion types 26-32 (which work on linear light, in Bradford cone space or by hue
#: rotation), so that the check does not test the training data:
#:
#: - ``"gains"``: each gamma-encoded sRGB channel multiplied by its gain ``(g_R, g_G, g_B)``, as a naive edit does;
#: - ``"white_balance"``: every pixel's CIE L*a*b* (D65) chroma moved by ``(da*, db*)``, lightness kept (a
#:   white-balance shift: positive ``db*`` warmer, yellow; negative cooler, blue; ``da*`` a magenta or green tint).
CASTS = ("gains", "white_balance")


def _gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    padded = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)[0]


def _to_pil(image: Tensor) -> Image.Image:
    return Image.fromarray((image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


def _from_pil(image: Image.Image) -> Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).float() / 255


def _check_image(image: Tensor) -> None:
    if not isinstance(image, Tensor):
        raise TypeError(f"expected a (3, H, W) float tensor, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {tuple(image.shape)}")


def _quantise(image: Tensor) -> Tensor:
    """Clipped to [0, 1] and rounded to 8 bits, like a saved image."""
    return (image.clamp(0, 1) * 255).round() / 255


def degrade(image: Tensor, family: str, value: float, *, seed: int = 0) -> Tensor:
    """One degradation of :data:`LADDERS` at parameter ``value``.

    Args:
        image: (3, H, W) float RGB in [0, 1].
        family: a key of :data:`LADDERS`.
        value: the family's parameter (see :data:`LADDERS`).
        seed: seed of the random families (white noise, salt-and-pepper).

    Returns:
        (3, H, W) float32 in [0, 1], quantised to 8 bits like a saved image.

    Raises:
        ValueError: an unknown family or a bad image shape.
    """
    _check_image(image)
    image = image.float()
    gen = torch.Generator().manual_seed(seed)
    if family == "jpeg":
        buffer = io.BytesIO()
        _to_pil(image).save(buffer, format="JPEG", quality=int(value), subsampling="4:2:0")
        return _from_pil(Image.open(buffer))
    if family == "gaussian_blur":
        out = _gaussian_blur(image, float(value))
    elif family == "white_noise":
        out = image + float(value) * torch.randn(image.shape, generator=gen)
    elif family == "resample":
        height, width = image.shape[1:]
        small = (max(1, round(width / value)), max(1, round(height / value)))
        bicubic = Image.Resampling.BICUBIC
        return _from_pil(_to_pil(image).resize(small, bicubic).resize((width, height), bicubic))
    elif family == "contrast":
        mean = image.mean(dim=(1, 2), keepdim=True)
        out = mean + float(value) * (image - mean)
    elif family == "salt_pepper":
        u = torch.rand(image.shape[1:], generator=gen)
        out = image.clone()
        out[:, u < value / 2] = 0.0
        out[:, (u >= value / 2) & (u < value)] = 1.0
    else:
        raise ValueError(f"unknown degradation {family!r}; expected one of {sorted(LADDERS)}")
    return _quantise(out)


def apply_cast(image: Tensor, kind: str, values: Sequence[float]) -> Tensor:
    """A colour cast of :data:`CASTS`: channel gains on the sRGB values, or a shift of the L*a*b* chroma.

    Args:
        image: (3, H, W) float RGB in [0, 1].
        kind: ``"gains"`` (``values`` = three gains for R, G, B, each > 0) or ``"white_balance"`` (``values`` =
            ``(da*, db*)``, the shift of every pixel's chroma in CIE L*a*b* units).
        values: the cast's parameters (see ``kind``).

    Returns:
        (3, H, W) float32 in [0, 1], clipped and quantised to 8 bits like a saved image.

    Raises:
        ValueError: an unknown kind, the wrong number of values, a gain that is not positive, or a bad image shape.
    """
    _check_image(image)
    values = tuple(float(v) for v in values)
    if kind == "gains":
        if len(values) != 3 or min(values) <= 0:
            raise ValueError(f"gains: expected three positive gains (R, G, B), got {values}")
        return _quantise(image.float() * torch.tensor(values).view(3, 1, 1))
    if kind == "white_balance":
        if len(values) != 2:
            raise ValueError(f"white_balance: expected (da*, db*), got {values}")
        from skimage import color  # a dependency of the train extra (the teacher's colour difference)

        lab = color.rgb2lab(image.double().clamp(0, 1).permute(1, 2, 0).numpy())
        lab[..., 1] += values[0]
        lab[..., 2] += values[1]
        rgb = np.clip(color.lab2rgb(lab), 0.0, 1.0)
        return _quantise(torch.from_numpy(rgb).permute(2, 0, 1).float())
    raise ValueError(f"unknown cast {kind!r}; expected one of {list(CASTS)}")


def centre_crop(image: Tensor, side: int) -> Tensor:
    """The centred ``side x side`` crop of a (3, H, W) image.

    Raises:
        ValueError: the image is smaller than ``side`` on a side.
    """
    _check_image(image)
    if min(image.shape[1:]) < side:
        raise ValueError(f"expected an image of at least {side} x {side} pixels to crop, got {tuple(image.shape[1:])}")
    top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
    return image[:, top:top + side, left:left + side]


def load_images(paths: Sequence[Path], *, max_side: int | None = None) -> list[Tensor]:
    """Decode image files to (3, H, W) tensors, optionally downscaled (Lanczos) to ``max_side``."""
    out = []
    for path in paths:
        image = load_image(Path(path))
        if max_side is not None and max(image.shape[1:]) > max_side:
            pil = _to_pil(image)
            factor = max_side / max(pil.size)
            image = _from_pil(pil.resize((max(1, round(pil.width * factor)), max(1, round(pil.height * factor))),
                                         Image.Resampling.LANCZOS))
        out.append(image)
    return out
