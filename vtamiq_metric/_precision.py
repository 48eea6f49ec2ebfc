"""Numeric precision of the model forward: what ``precision="auto"`` means, decided in one place.

``score()``, ``VTAMIQLoss``, the trainer (``TrainConfig.precision``) and the benchmarks all run the model inside
:func:`autocast`, and :func:`uses_bf16` answers "will this run in bf16?" for code that plans memory. The three
settings:

- ``"fp32"``: no autocast; the exact path.
- ``"bf16"``: ``torch.autocast(dtype=torch.bfloat16)`` on the compute device.
- ``"auto"``: bf16 on CUDA and on CPUs with native bf16 units (AVX512-BF16 or AMX, see :func:`cpu_has_native_bf16`),
  fp32 everywhere else (other CPUs, MPS). On a CPU without such units bf16 is emulated and slower than fp32.
  Training (``training=True``, used by ``vtamiq-train``) keeps the CUDA-only rule: on a CPU it trains in fp32, as
  the bundled model was trained, because bf16 gradients on CPU are untested here.

bf16 keeps 8 significant bits, so scores move by about 1e-3 of their range; rankings survive (the bundled model's
scores of distorted photographs rank with SROCC >= 0.999 against fp32, ``tests/test_precision.py``).

This module imports only :mod:`._checks` from the package, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Literal

import torch

from ._checks import check_choice

__all__ = ["PRECISIONS", "Precision", "autocast", "check_precision", "cpu_has_native_bf16", "uses_bf16"]

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


def check_precision(precision: object) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`, else raise ``ValueError``."""
    return check_choice("precision", precision, PRECISIONS)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AVX512-BF16 or AMX tiles).

    Asks torch (``torch.cpu._is_avx512_bf16_supported`` and ``torch.cpu._is_amx_tile_supported``, private helpers
    present in torch 2.x); if a torch build lacks them, or they fail, the answer is False and ``"auto"`` stays fp32.
    """
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        probe = getattr(torch.cpu, name, None)
        if probe is None:
            continue
        try:
            if probe():
                return True
        except Exception:  # noqa: BLE001, S112 - a failing private probe means "unknown", i.e. not native
            continue
    return False


def uses_bf16(device: torch.device, precision: str, *, training: bool = False) -> bool:
    """Whether the model runs under bf16 autocast on ``device`` with this ``precision`` setting.

    Args:
        device: the compute device.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"``.
        training: the trainer's rule for ``"auto"`` (bf16 on CUDA only).

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    check_precision(precision)
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return True
    return not training and device.type == "cpu" and cpu_has_native_bf16()


def autocast(device: torch.device, precision: str, *, training: bool = False) -> contextlib.AbstractContextManager:
    """The autocast context for running the model on ``device`` (a null context for fp32).

    Args:
        device: the compute device (its ``type`` selects the autocast backend).
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"`` (see the module docstring).
        training: the trainer's rule for ``"auto"`` (bf16 on CUDA only).

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    if not uses_bf16(device, precision, training=training):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
