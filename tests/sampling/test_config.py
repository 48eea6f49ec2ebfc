"""SamplingConfig (vtamiq_metric.sampling.config): field checks and normalisation."""

from __future__ import annotations

import pytest

from vtamiq_metric.sampling import SamplingConfig


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"centre_weight": -1.0}, ValueError, r"centre_weight: expected a finite number >= 0.0, got -1.0"),
        ({"diff_weight": float("nan")}, ValueError, r"diff_weight: expected a finite number"),
        ({"uniform_weight": "1"}, TypeError, r"uniform_weight: expected a real number, got str"),
        ({"centre_weight": 0, "diff_weight": 0, "uniform_weight": 0}, ValueError, r"at least one of"),
        ({"diff_type": "l1"}, ValueError, r"diff_type: expected one of \('mse', 'ssim'\), got 'l1'"),
        ({"centre_sigma": (0.25,)}, TypeError, r"centre_sigma: expected a \(row, col\) pair"),
        ({"centre_sigma": (0.25, 0.0)}, ValueError, r"centre_sigma: expected a finite number > 0.0, got 0.0"),
        ({"num_scales": 0}, ValueError, r"num_scales: expected an int >= 1, got 0"),
        ({"num_scales": 2.5}, TypeError, r"num_scales: expected an int, got float"),
        ({"scale_ratio": -0.5}, ValueError, r"scale_ratio: expected a finite number >= 0.0, got -0.5"),
    ],
)
def test_bad_config_raises_with_clear_messages(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        SamplingConfig(**kwargs)


def test_config_accepts_a_json_list_for_sigma() -> None:
    assert SamplingConfig(centre_sigma=[0.2, 0.3]).centre_sigma == (0.2, 0.3)
