"""``VTAMIQLoss``: VTAMIQ as a differentiable, frozen ``nn.Module`` loss."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ._checks import check_bool
from ._frontend import FrozenFace, ScoringOptions, check_reduction, freeze, reduce, resolve
from ._precision import Precision
from ._validation import prepare_pair
from .api import forward_pairs
from .model.vtamiq import VTAMIQ
from .sampling import SamplingConfig

__all__ = ["VTAMIQLoss"]

_logger = logging.getLogger(__name__)


class VTAMIQLoss(FrozenFace, nn.Module):
    """VTAMIQ distortion as a loss: lower is better, 0 for identical images.

    The network is frozen: every parameter has ``requires_grad=False`` and the module stays in eval mode even after
    ``.train()``, so dropout never switches on and the metric cannot be trained by accident. Gradients reach ``dist``,
    and ``ref`` too when it requires grad.

    Inputs: ``ref`` and ``dist`` accept whatever :func:`vtamiq_metric.score` accepts (the same coercion: tensors,
    numpy arrays, PIL images, file paths, or lists of these), and the loss of a pair equals ``score()`` of that pair
    with the same ``seed``, ``num_patches`` and precision. One check is relaxed, as pyiqa relaxes it in its loss mode:
    float values outside ``[0, 1]`` are accepted, since an unconstrained network emits them (say -0.07 to 1.12), and
    the metric sees them clamped to ``[0, 1]``. Their gradient is **straight-through**: it reaches an out-of-range
    pixel as if it were at the clamped value, rather than clamp's zero (with which the loss could not see, nor pull
    back, a pixel outside the range; with straight-through it pulls it towards the reference, which lies in
    ``[0, 1]``). Add a range penalty or a final ``clamp``/``sigmoid`` to the network if its outputs must stay inside.
    NaN and infinite values still raise ``ValueError``. Gradients need tensors: a side given as files,
    PIL images or arrays is a constant. A model with a viewing distance (``config.downsample_side``, the bundled
    default's 256) sees images whose shorter side is at least ``1.5 * downsample_side`` as ``F x F`` block averages,
    so its gradient is constant over each block there; crops shorter than that are seen pixel for pixel.

    Patch positions: by default (``resample=True``) every call draws fresh CAPS positions, from seeds
    ``seed, seed + 1, ...`` in call order, so the loss sees the whole image over training and a run is reproducible.
    The count of calls is the buffer ``calls`` (an int64 scalar in ``state_dict()``), so a training run resumed from a
    checkpoint continues the seed sequence where it stopped; a state dict saved before the buffer existed still loads
    (the count then starts at 0, as it did). With ``resample=False`` every call uses the positions of ``seed`` (a
    fixed, deterministic loss for the same images).

    Args:
        model: a registered name, ``hf-hub:org/repo[@rev]``, a local path or a :class:`VTAMIQ` (the loss keeps its own
            frozen copy of a named model; an instance is frozen in place). None uses the bundled default.
        num_patches: patches per image (default: the model config's ``num_patches``); fewer patches make each step
            cheaper and noisier.
        reduction: ``"none"`` ((B,) tensor), ``"mean"`` or ``"sum"``.
        resample: draw new positions every call (True) or reuse the seed's positions (False).
        seed: first sampling seed.
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` autocast, or ``"auto"`` (see
            :mod:`vtamiq_metric._precision`). fp32 by default, unlike ``score()`` and ``VTAMIQMetric`` (``"auto"``):
            a loss is differentiated, and 16-bit autocast rounds its gradients to 8 (bf16) or 11 (fp16) significant
            bits (fp16 gradients can also underflow without a ``GradScaler``). Pass ``"auto"`` or ``"bf16"`` when
            speed matters more, e.g. inside a bf16 training loop.
        sampling: CAPS settings (default: the model config's ``sampling``).

    Example:
        >>> import torch
        >>> from vtamiq_metric import VTAMIQ, VTAMIQLoss
        >>> loss_fn = VTAMIQLoss(VTAMIQ("tiny"), num_patches=16)
        >>> ref = torch.rand(2, 3, 32, 32)
        >>> dist = (ref + 0.1 * torch.randn_like(ref)).clamp(0, 1).requires_grad_()
        >>> loss_fn(ref, dist).backward()
        >>> dist.grad.shape
        torch.Size([2, 3, 32, 32])
    """

    higher_is_better = False
    is_differentiable = True

    calls: torch.Tensor

    def __init__(self, model: str | VTAMIQ | None = None, *, num_patches: int | None = None, reduction: str = "mean",
                 resample: bool = True, seed: int = 0, precision: Precision = "fp32",
                 sampling: SamplingConfig | None = None) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.resample = check_bool("resample", resample)
        options = ScoringOptions(num_patches=num_patches, seed=seed, precision=precision, sampling=sampling)
        # A fresh load (shared=False), not score()'s cached instance: moving the loss with .to() must not move that
        # one. An instance is frozen in place.
        scorer = resolve(model, options, shared=False)
        self.model = freeze(scorer.model)
        self.options = scorer.options
        # Calls so far: seeds seed + calls with resample=True. A persistent buffer, so a checkpoint resumes it.
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64), persistent=True)
        self.register_load_state_dict_pre_hook(_default_missing_calls)

    def forward(self, ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        """Loss between reference and distorted images.

        Args:
            ref: reference images: (B, 3, H, W) or (3, H, W) float tensors in [0, 1], or anything else
                :func:`vtamiq_metric.score` accepts (numpy arrays, PIL images, paths, lists of these; one reference
                against B distorted images is broadcast).
            dist: distorted images of the same size, in the same forms; usually the output of the network being
                trained (a tensor, so that gradients reach it). Any finite float values: they are clamped to
                [0, 1] with a straight-through gradient (see the class docstring).

        Returns:
            The reduced distortion score: a scalar for ``"mean"``/``"sum"``, (B,) for ``"none"``.
        """
        device = next(self.model.parameters()).device
        ref_t, dist_t = prepare_pair(ref, dist, patch_size=self.model.config.patch_size, clamp=True)
        seed = self.seed + int(self.calls) if self.resample else self.seed
        self.calls += 1
        out = forward_pairs(self.model, ref_t.to(device), dist_t.to(device), num_patches=self.num_patches, seed=seed,
                            sampling=self.sampling, precision=self.precision)
        return reduce(out, self.reduction)

    def extra_repr(self) -> str:
        """The settings shown in ``repr(loss)``."""
        return f"num_patches={self.num_patches}, reduction={self.reduction!r}, resample={self.resample}"



def _default_missing_calls(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook: a state dict saved before ``calls`` was a buffer lacks it; start the count at 0."""
    key = f"{prefix}calls"
    if key not in state_dict:
        _logger.info("%s has no loss call counter (saved by an older vtamiq-metric): resample=True seeds restart "
                     "at seed", key)
        state_dict[key] = torch.zeros((), dtype=torch.int64)
