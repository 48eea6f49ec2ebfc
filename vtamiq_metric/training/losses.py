"""Training losses for VTAMIQ: MAE/MSE + pairwise rank loss (paper Eq. 5), and the PieAPP preference loss.

All losses take *distortion* predictions (0 = best quality, larger = worse) and targets in the same orientation
(:mod:`.datasets.targets`).

Rank loss (paper Eq. 5), over all ``C(B, 2)`` pairs ``i < j`` of a batch, vectorised::

    l_ij = max(0, -(y_i - y_j) (d_i - d_j) / (|y_i - y_j| + eps))

with predictions ``d`` and targets ``y``. When the predicted order agrees with the target order the product is
positive and the pair costs 0; when it disagrees the pair costs ``|d_i - d_j| * |y_i - y_j| / (|y_i - y_j| + eps)``,
i.e. about ``|d_i - d_j|``; tied targets cost 0. The loss is the mean over pairs (the paper allows sum or mean). The
reference code additionally divides each pair by ``max(|d_i|, |d_j|)``; that term is not in the paper, gives 0/0 = NaN
when both predictions are 0 and is omitted here (docs/background/training.md §3).

Combination: the paper sums MAE (its choice over MSE) and the rank loss ("simple summation"); the reference HEAD trains
on rank + a Pearson loss and drops MAE (docs/background/training.md §3). :func:`regression_rank_loss` follows the
paper.

PieAPP preference: with error scores ``q_a``, ``q_b`` (lower = better), ``P(A preferred) = sigmoid(q_b - q_a)``, the
PieAPP paper's form; it is ~1 when A is much better. The reference HEAD uses ``sigmoid(q_a - q_b)``, the wrong sign for
error scores (docs/background/datasets.md §3.4). The paper-era code compares with MSE, HEAD with MAE.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["preference_loss", "preference_probability", "rank_loss", "regression_rank_loss"]


def _as_batch(pred: Tensor, target: Tensor | float, what: str = "target") -> tuple[Tensor, Tensor]:
    """Check ``pred`` is a floating tensor of shape (B,) or (B, 1); return (pred, target) flattened to (B,)."""
    if not isinstance(pred, Tensor):
        raise TypeError(f"expected pred as a torch.Tensor, got {type(pred).__name__}")
    if not pred.is_floating_point():
        raise TypeError(f"expected a floating-point pred tensor, got dtype {pred.dtype}")
    if not (pred.dim() == 1 or (pred.dim() == 2 and pred.shape[1] == 1)):
        raise ValueError(f"expected pred of shape (B,) or (B, 1), got {tuple(pred.shape)}")
    target_t = torch.as_tensor(target, dtype=pred.dtype, device=pred.device)
    if target_t.numel() != pred.numel() or (target_t.dim() > 1 and target_t.shape[-1] != 1) or target_t.dim() > 2:
        raise ValueError(f"expected {what} with the shape of pred {tuple(pred.shape)}, got {tuple(target_t.shape)}")
    if pred.numel() == 0:
        raise ValueError("expected a non-empty batch, got 0 elements")
    return pred.reshape(-1), target_t.reshape(-1)


def rank_loss(pred: Tensor, target: Tensor, eps: float = 1e-6, reduction: Literal["mean", "sum"] = "mean") -> Tensor:
    """Pairwise rank loss of the paper (Eq. 5) over all pairs of the batch, without a Python loop.

    Args:
        pred: predicted distortion ``(B,)`` or ``(B, 1)``.
        target: target distortion, same shape (no gradient needed).
        eps: stabiliser in the denominator ``|y_i - y_j| + eps``; must be > 0.
        reduction: ``"mean"`` (default) or ``"sum"`` over the ``B (B - 1) / 2`` pairs.

    Returns:
        Scalar tensor >= 0: 0 when every pair is ordered like the targets; about ``|d_i - d_j|`` for each misordered
        pair. ``B == 1`` gives 0 (still attached to ``pred``'s graph). Gradients are finite for any finite inputs,
        including all-zero predictions and tied targets.

    Raises:
        TypeError: ``pred`` is not a floating tensor.
        ValueError: shape mismatch, empty batch, ``eps <= 0`` or unknown reduction.
    """
    d, y = _as_batch(pred, target)
    if not eps > 0:
        raise ValueError(f"expected eps > 0, got {eps}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"expected reduction 'mean' or 'sum', got {reduction!r}")
    if d.numel() < 2:
        return d.sum() * 0.0
    i, j = torch.triu_indices(d.numel(), d.numel(), offset=1, device=d.device)  # (2, P) with P = B (B - 1) / 2
    dy = y[i] - y[j]  # (P,)
    dd = d[i] - d[j]  # (P,)
    per_pair = F.relu(-dy * dd / (dy.abs() + eps))  # (P,)
    return per_pair.mean() if reduction == "mean" else per_pair.sum()


def regression_rank_loss(
    pred: Tensor,
    target: Tensor,
    *,
    kind: Literal["l1", "l2"] = "l1",
    rank_weight: float = 1.0,
    eps: float = 1e-6,
) -> Tensor:
    """The paper's training loss: MAE (or MSE) plus the rank loss, summed.

    Args:
        pred: predicted distortion ``(B,)`` or ``(B, 1)``.
        target: target distortion in ``[0, 1]`` (0 = best), same shape.
        kind: ``"l1"`` (MAE, the paper's choice) or ``"l2"`` (MSE).
        rank_weight: weight of the rank term (1 = the paper's plain sum; 0 disables it); must be >= 0.
        eps: rank-loss stabiliser, see :func:`rank_loss`.

    Returns:
        Scalar tensor ``regression + rank_weight * rank``.

    Raises:
        TypeError: ``pred`` is not a floating tensor.
        ValueError: shape mismatch, unknown ``kind`` or negative ``rank_weight``.
    """
    if kind not in ("l1", "l2"):
        raise ValueError(f"expected kind 'l1' or 'l2', got {kind!r}")
    if not rank_weight >= 0:
        raise ValueError(f"expected rank_weight >= 0, got {rank_weight}")
    d, y = _as_batch(pred, target)
    regression = F.l1_loss(d, y) if kind == "l1" else F.mse_loss(d, y)
    if rank_weight == 0:
        return regression
    return regression + rank_weight * rank_loss(d, y, eps=eps)


def preference_probability(q_a: Tensor, q_b: Tensor) -> Tensor:
    """Probability that A is preferred over B from error scores (lower = better): ``sigmoid(q_b - q_a)``.

    Args:
        q_a: predicted distortion of image A, ``(B,)``.
        q_b: predicted distortion of image B, same shape.

    Returns:
        ``(B,)`` probabilities in ``(0, 1)``; > 0.5 when A has the lower distortion.
    """
    if not isinstance(q_a, Tensor) or not isinstance(q_b, Tensor):
        raise TypeError(f"expected q_a and q_b as torch.Tensor, got {type(q_a).__name__} and {type(q_b).__name__}")
    if q_a.shape != q_b.shape:
        raise ValueError(f"expected q_a and q_b of the same shape, got {tuple(q_a.shape)} and {tuple(q_b.shape)}")
    return torch.sigmoid(q_b - q_a)


def preference_loss(
    q_a: Tensor, q_b: Tensor, prob_a: Tensor | float, *, kind: Literal["l2", "l1", "bce"] = "l2"
) -> Tensor:
    """PieAPP pairwise loss between the predicted and the human probability that A is preferred.

    Args:
        q_a: predicted distortion of image A ``(B,)`` or ``(B, 1)`` (lower = better).
        q_b: predicted distortion of image B, same shape.
        prob_a: probability in ``[0, 1]`` that people prefer A (the dataset's ``prob_a``), same shape or a scalar.
        kind: ``"l2"`` (MSE, as the paper-era code), ``"l1"`` (MAE, as the reference HEAD) or ``"bce"`` (binary
            cross-entropy on the logit ``q_b - q_a``, numerically stable).

    Returns:
        Scalar tensor, the mean over the batch.

    Raises:
        TypeError: ``q_a``/``q_b`` are not floating tensors.
        ValueError: shape mismatch, ``prob_a`` outside ``[0, 1]`` or unknown ``kind``.
    """
    if kind not in ("l2", "l1", "bce"):
        raise ValueError(f"expected kind 'l2', 'l1' or 'bce', got {kind!r}")
    if not isinstance(q_b, Tensor):
        raise TypeError(f"expected q_b as a torch.Tensor, got {type(q_b).__name__}")
    a, b = _as_batch(q_a, q_b, "q_b")
    if isinstance(prob_a, (int, float)):
        prob_a = torch.full_like(a, float(prob_a))
    _, p = _as_batch(a, prob_a, "prob_a")
    if bool(((p < 0) | (p > 1) | torch.isnan(p)).any()):
        raise ValueError(f"expected prob_a in [0, 1], got values in [{p.min().item()}, {p.max().item()}]")
    logit = b - a  # P(A preferred) = sigmoid(q_b - q_a): A preferred when its distortion is lower
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logit, p)
    prob = torch.sigmoid(logit)
    return F.mse_loss(prob, p) if kind == "l2" else F.l1_loss(prob, p)
