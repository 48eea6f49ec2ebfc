"""Evaluation metrics: correlations with the logistic PLCC fit, run aggregation, cross-dataset tables."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from scipy import stats

from vtamiq_metric.training.datasets import logistic5
from vtamiq_metric.training.evaluate import METRICS, aggregate_runs, correlations, cross_dataset_table


def test_plcc_is_one_for_exact_logistic_data() -> None:
    rng = np.random.default_rng(0)
    pred = rng.uniform(-1.0, 3.0, 300)
    target = logistic5(pred, 2.5, 3.0, 1.2, 0.05, 0.4)  # a strongly non-linear but exact logistic relation
    res = correlations(pred, target)
    assert res["fit"] == "logistic5" and res["note"] is None
    assert res["plcc"] == pytest.approx(1.0, abs=1e-6)
    assert res["rmse"] == pytest.approx(0.0, abs=1e-5)
    assert res["plcc_nofit"] < 0.99  # the fit matters
    assert res["srocc"] == pytest.approx(1.0) and res["krocc"] == pytest.approx(1.0)


def test_rank_correlations_match_scipy_and_sign_convention() -> None:
    rng = np.random.default_rng(1)
    target = rng.uniform(0, 1, 120)
    pred = target + rng.normal(0, 0.2, 120)
    pred[:10] = pred[10]  # ties exercise tau-b
    res = correlations(pred, target)
    assert res["srocc"] == pytest.approx(stats.spearmanr(pred, target)[0], abs=1e-12)
    assert res["krocc"] == pytest.approx(stats.kendalltau(pred, target)[0], abs=1e-12)
    assert res["plcc_nofit"] == pytest.approx(stats.pearsonr(pred, target)[0], abs=1e-12)
    assert res["rmse_nofit"] == pytest.approx(np.sqrt(np.mean((pred - target) ** 2)))
    assert res["srocc"] > 0.5 and res["plcc"] >= res["plcc_nofit"] - 1e-9
    flipped = correlations(-pred, target)  # a quality-like predictor against distortion targets
    assert flipped["srocc"] == pytest.approx(-res["srocc"]) and flipped["plcc"] > 0
    json.dumps(res)  # JSON-able


def test_torch_and_column_inputs() -> None:
    torch = pytest.importorskip("torch")
    t = torch.linspace(0, 1, 10, requires_grad=True)
    res = correlations(t.reshape(-1, 1), np.linspace(0, 2, 10))
    assert res["srocc"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("pred", "target", "note"),
    [
        (np.full(20, 0.3), np.linspace(0, 1, 20), "constant predictions"),
        (np.linspace(0, 1, 20), np.ones(20), "constant targets"),
        ([0.1, 0.2], [0.3, 0.1], "fewer than 3 points"),
    ],
)
def test_degenerate_inputs_give_nan_with_note(pred, target, note, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vtamiq_metric.training.evaluate"):
        res = correlations(pred, target)
    assert note in res["note"] and note in caplog.text
    assert all(math.isnan(res[m]) for m in METRICS)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="same length"):
        correlations([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="non-finite"):
        correlations([1, 2, np.nan], [1, 2, 3])
    with pytest.raises(ValueError, match="1-D"):
        correlations(np.ones((3, 2)), np.ones((3, 2)))


def test_aggregate_runs_population_std_and_nan_runs(caplog: pytest.LogCaptureFixture) -> None:
    runs = [{"srocc": v, "plcc": v + 0.01, "note": None} for v in (0.90, 0.94, 0.95, 0.97)]
    runs.append({**dict.fromkeys(METRICS, math.nan), "note": "constant predictions"})
    with caplog.at_level(logging.WARNING, logger="vtamiq_metric.training.evaluate"):
        agg = aggregate_runs(runs)
    vals = np.array([0.90, 0.94, 0.95, 0.97])
    assert agg["srocc"]["mean"] == pytest.approx(vals.mean())
    assert agg["srocc"]["std"] == pytest.approx(np.std(vals))  # population (ddof=0), like np.std in the paper's code
    assert agg["srocc"]["median"] == pytest.approx(np.median(vals))
    assert agg["srocc"]["count"] == 4 and agg["num_runs"] == 5
    assert math.isnan(agg["krocc"]["mean"]) and agg["krocc"]["count"] == 0
    assert "left out" in caplog.text
    json.dumps(agg)
    with pytest.raises(ValueError, match="empty"):
        aggregate_runs([])
    with pytest.raises(TypeError):
        aggregate_runs({"srocc": 0.9})


def test_cross_dataset_table_layout() -> None:
    results = {
        "Baseline": {"LIVE": {"srocc": 0.949}, "CSIQ": {"srocc": 0.936}, "TID2013": {"srocc": 0.891}},
        "LIVE": {"LIVE": aggregate_runs([{"srocc": 0.98}, {"srocc": 0.984}]), "TID2013": {"srocc": 0.885}},
        "KADID-10k": {"KADID-10k": {"srocc": math.nan}},
    }
    data, md = cross_dataset_table(results)
    assert data["rows"] == ["Baseline", "LIVE", "KADID-10k"]
    assert data["columns"] == ["LIVE", "CSIQ", "TID2013", "KADID-10k"]
    assert data["values"]["LIVE"]["LIVE"] == pytest.approx(0.982)
    assert data["values"]["KADID-10k"]["KADID-10k"] is None
    json.dumps(data)
    lines = md.strip().splitlines()
    assert lines[0] == "| Trained on \\ Tested on (SROCC) | LIVE | CSIQ | TID2013 | KADID-10k |"
    assert lines[3] == "| LIVE | 0.982 | - | 0.885 | - |"
    assert len(lines) == 5
    with pytest.raises(ValueError, match="metric"):
        cross_dataset_table(results, metric="auc")
    with pytest.raises(ValueError, match="'plcc'"):
        cross_dataset_table(results, metric="plcc")


def test_few_points_fall_back_to_a_linear_fit() -> None:
    from vtamiq_metric.training.evaluate import correlations

    metrics = correlations([0.1, 0.4, 0.2, 0.9], [0.2, 0.5, 0.1, 0.8])
    assert metrics["fit"] == "linear" and 0 < metrics["plcc"] <= 1
