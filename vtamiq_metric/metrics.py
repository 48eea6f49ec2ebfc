"""``VTAMIQMetric``: VTAMIQ as a torchmetrics ``Metric`` for Lightning/torchmetrics evaluation loops.

Needs the optional extra ``[metrics]`` (``pip install 'vtamiq-metric[metrics]'``). Importing :mod:`vtamiq_metric`
never imports this module or torchmetrics; import it explicitly::

    from vtamiq_metric.metrics import VTAMIQMetric

The metric accumulates distortion scores (0 = identical, higher = worse) computed exactly as
:func:`vtamiq_metric.score` computes them, and syncs its state across processes under DDP like any torchmetrics
metric. It follows torchmetrics' argument order, ``update(preds, target)``: ``preds`` is the distorted or restored
image, ``target`` the reference, as for ``PeakSignalNoiseRatio`` or ``LearnedPerceptualImagePatchSimilarity``, so it
sits in a ``MetricCollection`` beside them and receives the same positional call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ._checks import renamed_keywords
from ._frontend import FrozenFace, ScoringOptions, check_reduction, freeze, resolve
from ._precision import Precision
from ._validation import ImageLike
from .api import score
from .model.vtamiq import VTAMIQ
from .sampling import SamplingConfig

try:
    from torchmetrics import Metric
    from torchmetrics.utilities.data import dim_zero_cat
    from torchmetrics.utilities.plot import _AX_TYPE, _PLOT_OUT_TYPE
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError("vtamiq_metric.metrics needs torchmetrics, an optional dependency: "
                      "pip install 'vtamiq-metric[metrics]'") from exc

__all__ = ["VTAMIQMetric"]


class VTAMIQMetric(FrozenFace, Metric):
    """Mean (or sum, or every) VTAMIQ distortion score over all pairs seen by :meth:`update`.

    Scores are **distortions**: 0 means identical and higher means worse (``higher_is_better = False``). Each
    :meth:`update` scores its pairs with :func:`vtamiq_metric.score` and the same ``seed``, so every update is an
    independent, reproducible ``score()`` call: the metric over any split of pairs into batches (and over any number
    of processes) equals ``score()`` over all of them at once with that seed. A pair's score depends only on the pair
    and the seed, never on its batch or its position in the stream.

    The network is frozen (``requires_grad=False``) and always in eval mode, even after ``.train()`` on the metric or
    on a module that holds it. Scores are computed without autograd, so ``is_differentiable = False``: for a loss use
    :class:`vtamiq_metric.VTAMIQLoss`, the same computation with gradients.

    States (all synced across processes by summation or concatenation): ``score_sum`` and ``num_pairs`` (float64
    scalars), plus ``scores`` (the per-pair list, only with ``reduction="none"``). Under DDP, ``"none"`` returns the
    scores grouped by process (rank 0's pairs first), as torchmetrics' ``cat`` reduction does.

    The model is a submodule: ``.to(device)`` moves it with the states, and (as for torchmetrics' LPIPS) its frozen
    weights are part of the metric's ``state_dict``. The sums are float64, so accumulating millions of pairs loses
    nothing.

    Args:
        model: a registered name, ``hf-hub:org/repo[@rev]``, a local path or a :class:`VTAMIQ` instance (frozen in
            place and set to eval mode); None uses the bundled default. Named models are loaded fresh (not shared
            with ``score()``'s cache), so moving the metric never moves another user's model.
        num_patches: patches per image (default: the model config's ``num_patches``).
        num_repeats: seeded CAPS draws averaged per pair (seeds ``seed .. seed + num_repeats - 1``), as in ``score``.
        seed: sampling seed used by every update.
        precision: ``"auto"`` (the default of ``score``: bf16 autocast where the hardware has native bf16, fp16 on
            older GPUs, fp32 elsewhere; see :mod:`vtamiq_metric._precision`), ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        sampling: CAPS settings (default: the model config's ``sampling``).
        reduction: ``"mean"`` (default) and ``"sum"`` give a scalar, ``"none"`` the (num_pairs,) scores.
        batch_size: pairs per model call inside one update (default as in ``score``: what fits in about half of the
            free memory on CUDA; on CPU at most ``vtamiq_metric.api._AUTO_BATCH_MAX_CPU`` pairs, see
            :func:`vtamiq_metric.api.auto_batch_size`).
        **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``dist_sync_on_step``, ``process_group``,
            ``compute_on_cpu``...).

    Raises:
        ValueError: unknown ``reduction`` or ``precision``, or ``num_patches``/``num_repeats``/``batch_size`` below 1.
        TypeError: ``model`` or an option of the wrong type (as :func:`vtamiq_metric.score`).

    Example:
        >>> import torch
        >>> from vtamiq_metric import VTAMIQ
        >>> from vtamiq_metric.metrics import VTAMIQMetric
        >>> metric = VTAMIQMetric(VTAMIQ("tiny"), num_patches=16)
        >>> target = torch.rand(4, 3, 32, 32)
        >>> preds = (target + 0.1 * torch.rand_like(target)).clamp(0, 1)
        >>> metric.update(preds, target)  # torchmetrics' order: the restored/distorted image first
        >>> metric.compute().shape
        torch.Size([])
    """

    higher_is_better = False
    is_differentiable = False
    full_state_update = False
    plot_lower_bound = 0.0
    plot_legend_name = "VTAMIQ distortion (lower is better)"
    feature_network = "model"

    score_sum: torch.Tensor
    num_pairs: torch.Tensor
    scores: list[torch.Tensor]  # with reduction="none" only; torchmetrics concatenates it while synced

    def __init__(self, model: str | VTAMIQ | None = None, *, num_patches: int | None = None, num_repeats: int = 1,
                 seed: int = 0, precision: Precision = "auto", sampling: SamplingConfig | None = None,
                 reduction: str = "mean", batch_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reduction = check_reduction(reduction)
        options = ScoringOptions(num_patches=num_patches, num_repeats=num_repeats, seed=seed, precision=precision,
                                 sampling=sampling, batch_size=batch_size)
        # Named models are loaded fresh (shared=False); an instance is frozen in place.
        scorer = resolve(model, options, shared=False)
        self.model = freeze(scorer.model)
        self.options = scorer.options
        self.add_state("score_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_pairs", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        if self.reduction == "none":
            self.add_state("scores", [], dist_reduce_fx="cat")

    @renamed_keywords(ref="target", dist="preds")
    def update(self, preds: ImageLike | Sequence[ImageLike], target: ImageLike | Sequence[ImageLike]) -> None:
        """Score a batch of pairs and add them to the state, in torchmetrics' order: ``update(preds, target)``.

        Earlier development versions took ``update(ref, dist)``: a positional call written for them now scores the
        pairs the other way round (VTAMIQ is not symmetric), so swap its arguments. The old keyword names still work,
        with a ``DeprecationWarning``: ``update(ref=r, dist=d)`` is ``update(preds=d, target=r)``.

        Args:
            preds: the distorted or restored image(s), e.g. a network's output: anything
                :func:`vtamiq_metric.score` accepts, typically a (B, 3, H, W) float tensor in [0, 1] (moved to the
                metric's device); may require grad (it is not differentiated).
            target: the reference image(s), same count and size (or one reference for all ``preds``).

        Raises:
            ValueError / TypeError / FileNotFoundError: as :func:`vtamiq_metric.score`.
        """
        options = self.options
        scores = score(target, preds, model=self.model, num_patches=options.num_patches,
                       num_repeats=options.num_repeats, seed=options.seed, precision=options.precision,
                       sampling=options.sampling, batch_size=options.batch_size).detach()  # (B,) on the model's device
        self.score_sum += scores.sum(dtype=torch.float64)
        self.num_pairs += scores.numel()
        if self.reduction == "none":
            self.scores.append(scores)

    def compute(self) -> torch.Tensor:
        """The reduced score over every pair since the last :meth:`reset` (synced across processes).

        Returns:
            float32: a scalar for ``"mean"`` (NaN before any pair) and ``"sum"``, a (num_pairs,) tensor for ``"none"``.
        """
        if self.reduction == "none":
            if isinstance(self.scores, list) and not self.scores:
                return torch.zeros(0, device=self.score_sum.device)
            return dim_zero_cat(self.scores).float()
        if self.reduction == "sum":
            return self.score_sum.float()
        return (self.score_sum / self.num_pairs).float()

    def plot(self, val: torch.Tensor | Sequence[torch.Tensor] | None = None,
             ax: _AX_TYPE | None = None) -> _PLOT_OUT_TYPE:
        """Plot one value or a sequence of values of the metric, as every torchmetrics metric does (needs matplotlib).

        Args:
            val: a result of :meth:`compute` or :meth:`forward`, or a list of them (e.g. one per epoch); None
                plots :meth:`compute`'s value.
            ax: a matplotlib axis to draw into (default: a new figure).

        Returns:
            ``(figure, axis)``.

        Raises:
            ModuleNotFoundError: matplotlib is not installed (``pip install 'vtamiq-metric[plot]'``).

        Example (one value per validation batch, as in torchmetrics' examples)::

            values = [metric(restored, reference) for restored, reference in batches]
            fig, ax = metric.plot(values)
        """
        return self._plot(val, ax)

    def extra_repr(self) -> str:
        """The settings shown in ``repr(metric)``."""
        return (f"num_patches={self.num_patches}, num_repeats={self.num_repeats}, seed={self.seed}, "
                f"reduction={self.reduction!r}")
