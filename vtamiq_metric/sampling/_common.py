"""Argument checks and small helpers shared by the sampling modules (private)."""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

# Large images are read in row strips of at most this many pixels: the "mse" difference, the pyramid of a uint8
# image and the viewing-distance pooling of a uint8 image (see "Memory on large images" in the package docstring).
_STRIP_PIXELS = 1 << 22


def check_real(name: str, value: object, *, minimum: float, strict: bool = False) -> None:
    """Raise unless ``value`` is a finite real number ``>= minimum`` (``> minimum`` when ``strict``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    bad = not math.isfinite(value) or (value <= minimum if strict else value < minimum)
    if bad:
        relation = ">" if strict else ">="
        raise ValueError(f"{name}: expected a finite number {relation} {minimum}, got {value!r}")


def check_int(name: str, value: object, *, minimum: int) -> int:
    """``value`` as an int, or raise unless it is an integer (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def check_fits_a_patch(height: int, width: int, patch_size: int) -> None:
    """Raise unless an image of ``height x width`` holds one ``patch_size`` patch."""
    if height < patch_size or width < patch_size:
        raise ValueError(
            f"image smaller than a patch: expected height and width >= patch_size={patch_size}, got {height}x{width}"
        )


def _checked_batch(name: str, x: object, allow_uint8: bool) -> Tensor:
    """``x`` if it is a (B, 3, H, W) floating-point (or, with ``allow_uint8``, uint8) tensor; else raise."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not (x.is_floating_point() or (allow_uint8 and x.dtype == torch.uint8)):
        kinds = "a floating-point or uint8 tensor" if allow_uint8 else "a floating-point tensor"
        raise TypeError(f"{name}: expected {kinds}, got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (B, 3, H, W), got {tuple(x.shape)}")
    return x


def check_pair(ref: object, dist: object, *, allow_uint8: bool = False) -> None:
    """Raise unless ``ref`` and ``dist`` are (B >= 1, 3, H, W) tensors of one shape, dtype family and device."""
    ref_t, dist_t = _checked_batch("ref", ref, allow_uint8), _checked_batch("dist", dist, allow_uint8)
    if ref_t.dtype != dist_t.dtype and torch.uint8 in (ref_t.dtype, dist_t.dtype):
        raise TypeError(f"ref and dist: expected both uint8 or both floating point, got {ref_t.dtype} and "
                        f"{dist_t.dtype}")
    if ref_t.shape != dist_t.shape:
        raise ValueError(f"ref and dist: expected the same shape, got {tuple(ref_t.shape)} and {tuple(dist_t.shape)}")
    if ref_t.device != dist_t.device:
        raise ValueError(f"ref and dist: expected the same device, got {ref_t.device} and {dist_t.device}")
    if ref_t.shape[0] < 1:
        raise ValueError(f"ref and dist: expected a batch of at least 1 image, got shape {tuple(ref_t.shape)}")


def ceil_div(numerator: Tensor, denominator: int | Tensor) -> Tensor:
    """Elementwise ``ceil(numerator / denominator)`` of integer tensors."""
    return -torch.div(-numerator, denominator, rounding_mode="floor")


def work_dtype(device: torch.device) -> torch.dtype:
    """float64, or float32 on MPS (which has no float64; its device-identical guarantee is weaker there)."""
    return torch.float32 if device.type == "mps" else torch.float64


def as_float(x: Tensor) -> Tensor:
    """A uint8 image as float32 ``v / 255`` (the value decoding to float gives); a float image unchanged."""
    return x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x


def strip_rows(width: int, align: int, *, share: int = 1) -> int:
    """Rows per strip of an image ``width`` pixels wide: at most ``_STRIP_PIXELS // share`` pixels (but at least
    ``align`` rows), a multiple of ``align``."""
    return max(align, (_STRIP_PIXELS // share // max(width, 1)) // align * align)
