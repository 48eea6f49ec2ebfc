"""``VTAMIQLoss``: VTAMIQ as a differentiable, frozen ``nn.Module`` loss."""

from __future__ import annotations

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


class VTAMIQLoss(FrozenFace, nn.Module):
    """VTAMIQ distortion as a loss: lower is better, 0 for identical images.

    The network is frozen: every parameter has ``requires_grad=False`` and the module stays in eval mode even after
    ``.train()``, so dropout never switches on and the metric cannot be trained by accident. Gradients reach ``dist``,
    and ``ref`` too when it requires grad.

    Inputs: ``ref`` and ``dist`` accept whatever :func:`vtamiq_metric.score` accepts (the same coercion and checks:
    tensors, numpy arrays, PIL images, file paths, or lists of these), and the loss of a pair equals ``score()`` of
    that pair with the same ``seed``, ``num_patches`` and precision. Gradients need tensors: a side given as files,
    PIL images or arrays is a constant. A model with a viewing distance (``config.downsample_side``, the bundled
    default's 256) sees images whose shorter side is at least ``1.5 * downsample_side`` as ``F x F`` block averages,
    so its gradient is constant over each block there; crops shorter than that are seen pixel for pixel.

    Patch positions: by default (``resample=True``) every call draws fresh CAPS positions, from seeds
    ``seed, seed + 1, ...`` in call order, so the loss sees the whole image over training and a run is reproducible.
    With ``resample=False`` every call uses the positions of ``seed`` (a fixed, deterministic loss for the same
    images).

    Args:
        model: a registered name, ``hf-hub:org/repo[@rev]``, a local path or a :class:`VTAMIQ` (the loss keeps its own
            frozen copy of a named model; an instance is frozen in place). None uses the bundled default.
        num_patches: patches per image (default: the model config's ``num_patches``); fewer patches make each step
            cheaper and noisier.
        reduction: ``"none"`` ((B,) tensor), ``"mean"`` or ``"sum"``.
        resample: draw new positions every call (True) or reuse the seed's positions (False).
        seed: first sampling seed.
        precision: ``"fp32"`` (default), ``"bf16"`` autocast, or ``"auto"`` (bf16 on CUDA and on CPUs with native
            bf16 units, see :mod:`vtamiq_metric._precision`).
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
        self._calls = 0

    def forward(self, ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        """Loss between reference and distorted images.

        Args:
            ref: reference images: (B, 3, H, W) or (3, H, W) float tensors in [0, 1], or anything else
                :func:`vtamiq_metric.score` accepts (numpy arrays, PIL images, paths, lists of these).
            dist: distorted images of the same size, in the same forms; usually the output of the network being
                trained (a tensor, so that gradients reach it).

        Returns:
            The reduced distortion score: a scalar for ``"mean"``/``"sum"``, (B,) for ``"none"``.
        """
        device = next(self.model.parameters()).device
        ref_t, dist_t = prepare_pair(ref, dist, patch_size=self.model.config.patch_size)
        seed = self.seed + self._calls if self.resample else self.seed
        self._calls += 1
        out = forward_pairs(self.model, ref_t.to(device), dist_t.to(device), num_patches=self.num_patches, seed=seed,
                            sampling=self.sampling, precision=self.precision)
        return reduce(out, self.reduction)

    def extra_repr(self) -> str:
        return f"num_patches={self.num_patches}, reduction={self.reduction!r}, resample={self.resample}"

