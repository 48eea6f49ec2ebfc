"""``vtamiq_metric._precision``: what ``precision="auto"`` means, in the one place that decides it."""

from __future__ import annotations

import pytest
import torch

from vtamiq_metric._precision import PRECISIONS, autocast, uses_bf16


def test_auto_is_bf16_on_cuda_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [uses_bf16(cpu, p) for p in PRECISIONS] == [False, False, True]
    assert [uses_bf16(cuda, p) for p in PRECISIONS] == [True, False, True]


def test_autocast_is_bf16_or_nothing_and_checks_the_setting():
    x = torch.ones(2, 2)
    with autocast(torch.device("cpu"), "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    for precision in ("auto", "fp32"):
        with autocast(torch.device("cpu"), precision):
            assert (x @ x).dtype == torch.float32
    with pytest.raises(ValueError, match=r"precision must be one of \('auto', 'fp32', 'bf16'\), got 'fp16'"):
        autocast(torch.device("cpu"), "fp16")
