"""Input checks shared by the label functions."""

from __future__ import annotations

import math

import torch

__all__ = ["check_pair"]

# Inputs may overshoot [0, 1] by float rounding (e.g. uint8 / 255 after a float32 round trip).
_RANGE_TOLERANCE = 1e-6


def check_pair(ref: torch.Tensor, dist: torch.Tensor) -> None:
    """Validate a (ref, dist) pair of float RGB image batches in [0, 1].

    Accepted: ``dist`` of shape (B, 3, H, W) and ``ref`` of the same shape or of shape (1, 3, H, W) (one reference
    for the whole batch), both floating point, on the same device, finite, with values in [0, 1].

    Raises:
        TypeError: an input is not a tensor, or not floating point.
        ValueError: wrong rank, channel count or sizes, different devices, non-finite values or values outside [0, 1].
    """
    for name, tensor in (("ref", ref), ("dist", dist)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor of shape (B, 3, H, W), got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor with values in [0, 1], got dtype {tensor.dtype}")
        if tensor.ndim != 4 or tensor.shape[1] != 3:
            raise ValueError(f"{name}: expected shape (B, 3, H, W) with 3 RGB channels, got {tuple(tensor.shape)}")
        if tensor.shape[-2] < 1 or tensor.shape[-1] < 1:
            raise ValueError(f"{name}: expected H >= 1 and W >= 1, got {tuple(tensor.shape)}")
    if ref.shape[1:] != dist.shape[1:] or ref.shape[0] not in (1, dist.shape[0]):
        raise ValueError(
            f"expected ref and dist of the same shape (or ref with batch size 1), got {tuple(ref.shape)} and "
            f"{tuple(dist.shape)}"
        )
    if ref.device != dist.device:
        raise ValueError(f"expected ref and dist on the same device, got {ref.device} and {dist.device}")
    for name, tensor in (("ref", ref), ("dist", dist)):
        if tensor.numel() == 0:
            continue
        lo, hi = float(tensor.min()), float(tensor.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"{name}: expected finite values in [0, 1], got NaN or infinity")
        if lo < -_RANGE_TOLERANCE or hi > 1.0 + _RANGE_TOLERANCE:
            raise ValueError(f"{name}: expected values in [0, 1], got range [{lo:.6g}, {hi:.6g}]")
