"""Shared fixtures: tiny random-weight models and small images; nothing downloads.

Builders that tests call with their own arguments (fake datasets, the golden weights) live in ``tests/helpers.py``.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tiny_model():
    """A randomly initialised `tiny` preset in eval mode (seeded)."""
    from vtamiq_metric import VTAMIQ

    torch.manual_seed(0)
    return VTAMIQ("tiny").eval()


@pytest.fixture
def image_pair():
    """A (1, 3, 48, 64) reference with smooth structure and a noisy distorted copy, both in [0, 1]."""
    gen = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 64), indexing="ij")
    ref = torch.stack([xx, yy, (xx * yy) ** 0.5])[None]
    dist = (ref + 0.1 * torch.randn(ref.shape, generator=gen)).clamp(0, 1)
    return ref, dist
