"""Full-reference weak labels for synthetic training data (KADIS-700k): VSI, MS-SSIM and the teacher.

Every label is a function ``label(ref, dist) -> Tensor`` taking (B, 3, H, W) float RGB batches in [0, 1] (``ref`` may
also have batch size 1) and returning a (B,) float64 similarity in [0, 1], where 1 means identical and lower means
more distorted. Note that VTAMIQ itself predicts a distortion score (0 = perfect); a training target derived from
these labels must flip the direction explicitly (e.g. ``1 - vsi``).

Example:
    >>> import torch
    >>> from vtamiq_metric.training.labels import compute_label
    >>> ref = torch.rand(2, 3, 64, 64)
    >>> compute_label("vsi", ref, ref)
    tensor([1., 1.], dtype=torch.float64)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from vtamiq_metric.training.labels.ms_ssim import ms_ssim, ssim
from vtamiq_metric.training.labels.teacher import teacher
from vtamiq_metric.training.labels.vsi import sdsp, vsi

__all__ = ["LABELS", "LabelFn", "compute_label", "ms_ssim", "sdsp", "ssim", "teacher", "vsi"]

LabelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LABELS: dict[str, LabelFn] = {
    "vsi": vsi,
    "ms_ssim": ms_ssim,
    "teacher": teacher,
}
"""Registered labels by name. ``"vsi"``: MATLAB-faithful VSI, the KADIS-700k label of VTAMIQ. ``"ms_ssim"``: MS-SSIM
(single-scale SSIM for images smaller than 161 pixels per side), a widely known alternative of similar cost.
``"teacher"``: VSI, CIEDE2000 and MS-SSIM each divided by its spread and summed (:mod:`.teacher`), the label of the
bundled model, as the similarity ``1 / (1 + D)``."""


def compute_label(name: str, ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Compute the registered label ``name`` for each (ref, dist) pair.

    Args:
        name: a key of :data:`LABELS` (``"vsi"``, ``"ms_ssim"`` or ``"teacher"``).
        ref: (B, 3, H, W) float RGB references in [0, 1], or (1, 3, H, W) for one reference shared by the batch.
        dist: (B, 3, H, W) float RGB distorted images in [0, 1], same device.

    Returns:
        (B,) float64 similarity in [0, 1]; 1 = identical (higher is better).

    Raises:
        ValueError: if ``name`` is not registered (the message lists the available names), or the inputs are invalid.
        TypeError: if ``name`` is not a string or an input is not a floating-point tensor.
    """
    if not isinstance(name, str):
        raise TypeError(f"expected a label name (str), got {type(name).__name__}")
    try:
        label = LABELS[name]
    except KeyError:
        raise ValueError(f"unknown label {name!r}; expected one of {sorted(LABELS)}") from None
    return label(ref, dist)
