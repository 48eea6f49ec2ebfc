"""Numeric precision of the model forward: what ``precision="auto"`` means, decided in one place.

``score()``, ``VTAMIQLoss``, ``VTAMIQMetric``, ``damage_map``, the trainer (``TrainConfig.precision``) and the
benchmarks all run the model inside :func:`autocast`; :func:`autocast_dtype` answers "which dtype will this run in?"
and :func:`uses_half` "16-bit activations?" for code that plans memory. The four settings:

- ``"fp32"``: no autocast; the exact path.
- ``"bf16"``: ``torch.autocast(dtype=torch.bfloat16)`` on the compute device (8 significant bits, float32's range).
- ``"fp16"``: ``torch.autocast(dtype=torch.float16)`` (11 significant bits, but a range that ends at 65504; the
  forward checks its scores and raises if an activation overflowed, see :func:`vtamiq_metric.api.forward_pairs`).
- ``"auto"``: the fastest setting the hardware runs natively:

  ==================================================  ==================  ===================
  device                                              ``score()`` & co.   trainer
  ==================================================  ==================  ===================
  CUDA, compute capability >= 8.0 (Ampere and later)  bf16                bf16
  CUDA, older (Volta, Turing: fp16 tensor cores)      fp16                fp32
  CPU with AVX512-BF16 or AMX                         bf16                fp32
  other CPUs, MPS                                     fp32                fp32
  ==================================================  ==================  ===================

  On hardware without native bf16 units bf16 is emulated and slower than fp32, hence fp16 on older GPUs. The trainer
  (``training=True``) never picks fp16 (its gradients would need loss scaling, which it does not do) nor bf16 on a
  CPU (untested there; the bundled model was trained in fp32).

Which face defaults to what, and why, is in the README's "Precision" table: ``score()``, ``VTAMIQMetric`` and ``vtamiq
score`` default to ``"auto"`` (evaluation, where speed counts and 16-bit rounding moves scores by about 1e-3 of their
range while rankings survive: SROCC >= 0.999 against fp32 on the bundled model, ``tests/test_precision.py``);
``VTAMIQLoss`` and ``damage_map`` default to ``"fp32"`` (gradients: a loss's gradient, and the map's
completeness, sums of gradients that must add up to the score difference, are exact only in fp32).

This module imports only :mod:`._checks` from the package, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Literal

from ._checks import check_choice

if TYPE_CHECKING:
    import torch

__all__ = ["PRECISIONS", "Precision", "autocast", "autocast_dtype", "check_precision", "cpu_has_native_bf16",
           "cuda_has_native_bf16", "uses_bf16", "uses_half"]

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
# The first CUDA compute capability with bf16 tensor cores (Ampere, sm_80).
_CUDA_BF16_CAPABILITY = (8, 0)


def check_precision(precision: object) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`, else raise ``ValueError``."""
    return check_choice("precision", precision, PRECISIONS)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AVX512-BF16 or AMX tiles).

    Asks torch (``torch.cpu._is_avx512_bf16_supported`` and ``torch.cpu._is_amx_tile_supported``, private helpers
    present in torch 2.x); if a torch build lacks them, or they fail, the answer is False and ``"auto"`` stays fp32.
    """
    import torch  # imported on first use: `vtamiq --help` and the CLI parser stay torch-free

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


@functools.cache
def cuda_has_native_bf16(index: int | None = None) -> bool:
    """Whether CUDA device ``index`` (None: the current one) has bf16 tensor cores: compute capability >= 8.0.

    False when CUDA is unavailable or the capability cannot be read (then ``"auto"`` does not pick bf16).
    """
    import torch  # imported on first use: `vtamiq --help` and the CLI parser stay torch-free

    try:
        if not torch.cuda.is_available():
            return False
        return tuple(torch.cuda.get_device_capability(index)) >= _CUDA_BF16_CAPABILITY
    except Exception:  # noqa: BLE001 - an unreadable capability means "unknown", i.e. not native
        return False


def autocast_dtype(device: torch.device, precision: str, *, training: bool = False) -> torch.dtype | None:
    """The autocast dtype of the model forward on ``device`` with this ``precision`` (None: float32, no autocast).

    Args:
        device: the compute device.
        precision: one of :data:`PRECISIONS` (``"auto"`` is resolved by the table of the module docstring).
        training: the trainer's rule for ``"auto"`` (bf16 on GPUs with native bf16 only, never fp16).

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    import torch  # imported on first use: `vtamiq --help` and the CLI parser stay torch-free

    check_precision(precision)
    if precision != "auto":
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if device.type == "cuda":
        if cuda_has_native_bf16(device.index):
            return torch.bfloat16
        return None if training else torch.float16
    if device.type == "cpu" and not training and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def uses_bf16(device: torch.device, precision: str, *, training: bool = False) -> bool:
    """Whether the model runs under bf16 autocast on ``device`` with this ``precision`` (see :func:`autocast_dtype`).

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    import torch  # imported on first use: `vtamiq --help` and the CLI parser stay torch-free

    return autocast_dtype(device, precision, training=training) == torch.bfloat16


def uses_half(device: torch.device, precision: str, *, training: bool = False) -> bool:
    """Whether the model runs under a 16-bit autocast (bf16 or fp16): activations take 2 bytes, not 4.

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    return autocast_dtype(device, precision, training=training) is not None


def autocast(device: torch.device, precision: str, *, training: bool = False) -> contextlib.AbstractContextManager:
    """The autocast context for running the model on ``device`` (a null context for fp32).

    Args:
        device: the compute device (its ``type`` selects the autocast backend).
        precision: one of :data:`PRECISIONS` (see the module docstring).
        training: the trainer's rule for ``"auto"``.

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    import torch  # imported on first use: `vtamiq --help` and the CLI parser stay torch-free

    dtype = autocast_dtype(device, precision, training=training)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
