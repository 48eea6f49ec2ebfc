"""Training losses: the paper's rank loss (Eq. 5), MAE/MSE + rank, and the PieAPP preference loss sign."""

from __future__ import annotations

import itertools

import pytest
import torch

from vtamiq_metric.training.losses import preference_loss, preference_probability, rank_loss, regression_rank_loss


def _loop_rank_loss(d: torch.Tensor, y: torch.Tensor, eps: float = 1e-6) -> float:
    """Eq. 5 written pair by pair, as an independent reference."""
    vals = [
        max(0.0, float(-(y[i] - y[j]) * (d[i] - d[j]) / (abs(y[i] - y[j]) + eps)))
        for i, j in itertools.combinations(range(len(d)), 2)
    ]
    return sum(vals) / len(vals)


def test_rank_loss_zero_when_order_matches() -> None:
    y = torch.tensor([0.1, 0.5, 0.3, 0.9])
    d = 2.0 * y + 0.7  # any increasing map keeps the order
    assert rank_loss(d, y).item() == 0.0


def test_rank_loss_equals_abs_prediction_gap_when_misordered() -> None:
    y = torch.tensor([0.2, 0.8])
    d = torch.tensor([0.9, 0.4])  # predicted order reversed
    assert rank_loss(d, y).item() == pytest.approx(0.5, rel=1e-5)  # |d_1 - d_2| up to eps / |dy|
    assert rank_loss(d, y, eps=0.6).item() == pytest.approx(0.5 * 0.6 / 1.2, rel=1e-6)  # eps acts as documented


def test_rank_loss_matches_pairwise_loop_and_reduction() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.rand(9, generator=g)
    d = torch.rand(9, generator=g)
    assert rank_loss(d, y).item() == pytest.approx(_loop_rank_loss(d, y), rel=1e-5)
    assert rank_loss(d, y, reduction="sum").item() == pytest.approx(_loop_rank_loss(d, y) * 36, rel=1e-5)
    assert rank_loss(d.reshape(-1, 1), y).item() == pytest.approx(rank_loss(d, y).item())


@pytest.mark.parametrize(
    ("pred", "target"),
    [
        (torch.zeros(6), torch.rand(6)),  # all-zero predictions (NaN in the reference code)
        (torch.rand(1), torch.rand(1)),  # B == 1
        (torch.rand(5), torch.full((5,), 0.4)),  # tied targets
        (torch.full((4,), 0.3), torch.tensor([0.0, 0.0, 1.0, 1.0])),  # tied predictions and targets
    ],
)
def test_rank_loss_finite_gradients(pred: torch.Tensor, target: torch.Tensor) -> None:
    pred = pred.clone().requires_grad_(True)
    loss = regression_rank_loss(pred, target)
    loss.backward()
    assert torch.isfinite(loss) and pred.grad is not None and torch.isfinite(pred.grad).all()
    if pred.numel() == 1:
        assert rank_loss(pred, target).item() == 0.0


def test_rank_loss_gradient_points_towards_correct_order() -> None:
    y = torch.tensor([0.2, 0.8])
    d = torch.tensor([0.9, 0.4], requires_grad=True)
    rank_loss(d, y).backward()
    assert d.grad[0] > 0 > d.grad[1]  # descent lowers d_0 and raises d_1


def test_regression_rank_loss_is_a_plain_sum() -> None:
    y = torch.tensor([0.1, 0.6, 0.3])
    d = torch.tensor([0.5, 0.2, 0.4])
    l1 = torch.nn.functional.l1_loss(d, y)
    mse = torch.nn.functional.mse_loss(d, y)
    r = rank_loss(d, y)
    assert r.item() > 0
    assert regression_rank_loss(d, y).item() == pytest.approx((l1 + r).item())
    assert regression_rank_loss(d, y, kind="l2").item() == pytest.approx((mse + r).item())
    assert regression_rank_loss(d, y, rank_weight=0.0).item() == pytest.approx(l1.item())
    with pytest.raises(ValueError, match="kind"):
        regression_rank_loss(d, y, kind="huber")
    with pytest.raises(ValueError, match="shape"):
        regression_rank_loss(d, y[:2])
    with pytest.raises(TypeError, match="floating"):
        rank_loss(torch.tensor([1, 2]), torch.tensor([1, 2]))


def test_preference_sign_a_clearly_better() -> None:
    q_a = torch.tensor([0.01, 0.1])  # low distortion: A is clearly better
    q_b = torch.tensor([12.0, 9.0])
    assert preference_probability(q_a, q_b).min().item() > 0.999
    assert preference_probability(q_b, q_a).max().item() < 0.001
    good = preference_loss(q_a, q_b, torch.ones(2))
    bad = preference_loss(q_a, q_b, torch.zeros(2))
    assert good.item() < 1e-6
    assert bad.item() > 0.99
    for kind in ("l1", "bce"):
        assert preference_loss(q_a, q_b, 1.0, kind=kind).item() < preference_loss(q_a, q_b, 0.0, kind=kind).item()


def test_preference_loss_values_and_gradients() -> None:
    q_a = torch.tensor([0.3, 0.2], requires_grad=True)
    q_b = torch.tensor([0.1, 0.6], requires_grad=True)
    p = torch.tensor([0.2, 0.9])
    loss = preference_loss(q_a, q_b, p)
    expected = ((torch.sigmoid(q_b - q_a) - p) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert torch.isfinite(q_a.grad).all() and torch.isfinite(q_b.grad).all()
    bce = preference_loss(q_a, q_b, p, kind="bce")
    assert bce.item() == pytest.approx(torch.nn.functional.binary_cross_entropy(torch.sigmoid(q_b - q_a), p).item())
    with pytest.raises(ValueError, match=r"prob_a in \[0, 1\]"):
        preference_loss(q_a, q_b, torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="shape"):
        preference_loss(q_a, q_b[:1], p)
