"""Numeric precision of the model forward: what ``precision="auto"`` means, decided in one place.

``score()``, ``VTAMIQLoss``, the trainer (``TrainConfig.precision``) and the benchmarks all run the model inside
:func:`autocast`, and :func:`uses_bf16` answers "will this run in bf16?" for code that plans memory. The three
settings:

- ``"fp32"``: no autocast; the exact path.
- ``"bf16"``: ``torch.autocast(dtype=torch.bfloat16)`` on the compute device.
- ``"auto"``: bf16 on CUDA, fp32 everywhere else (CPU, MPS). This is the one rule to change to extend ``"auto"`` to
  CPUs with native bf16 units (AVX512-BF16, AMX).

This module imports nothing from the package, so every layer may use it.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

__all__ = ["PRECISIONS", "Precision", "autocast", "check_precision", "uses_bf16"]

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


def check_precision(precision: object) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`, else raise ``ValueError``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision  # type: ignore[return-value]


def uses_bf16(device: torch.device, precision: str) -> bool:
    """Whether the model runs under bf16 autocast on ``device`` with this ``precision`` setting.

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    check_precision(precision)
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for running the model on ``device`` (a null context for fp32).

    Args:
        device: the compute device (its ``type`` selects the autocast backend).
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"`` (see the module docstring).

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    if not uses_bf16(device, precision):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
