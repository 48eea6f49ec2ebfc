"""The check of a device argument, once: ``score(device=...)``, ``load_model(device=...)``, the loss, the metric, the
damage map and ``vtamiq --device`` give the same message for a device this machine does not have.

This module imports only :mod:`._checks` from the package, so every layer may use it.
"""

from __future__ import annotations

import torch

from ._checks import vocabulary

__all__ = ["check_device"]


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``, after checking that this machine has it.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``..., or a ``torch.device``.

    Returns:
        The ``torch.device``.

    Raises:
        TypeError: ``device`` is neither a str nor a ``torch.device``.
        ValueError: an unknown device string, CUDA without a CUDA device (torch's own error would be "Found no NVIDIA
            driver" or "Torch not compiled with CUDA enabled"), a CUDA index beyond the devices present, or MPS where
            it is unavailable. The message names the option as the caller spells it (``device='cpu'`` in Python,
            ``--device cpu`` on the command line, see :func:`vtamiq_metric._checks.vocabulary`).
    """
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be None, a str or a torch.device, got {type(device).__name__}")
    words = vocabulary()
    try:
        target = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"{words.name('device')}: expected 'cpu', 'cuda', 'cuda:N', 'mps'..., "
                         f"got {device!r} ({error})") from None
    requested = words.option("device", str(device))
    if target.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{requested} was requested but no CUDA device is available "
                             f"(torch.cuda.is_available() is False); use {words.option('device', 'cpu')} or "
                             f"{words.unset('device')}")
        count = torch.cuda.device_count()
        if target.index is not None and target.index >= count:
            raise ValueError(f"{requested} was requested but this machine has {count} CUDA device(s) (cuda:0 .. "
                             f"cuda:{count - 1})")
    elif target.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{requested} was requested but MPS is not available on this machine "
                         f"(torch.backends.mps.is_available() is False); use {words.option('device', 'cpu')} or "
                         f"{words.unset('device')}")
    return target
