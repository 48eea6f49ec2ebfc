"""Fixtures of the acceptance-check tests: a small textured image and a tiny model with the identity anchor."""

from __future__ import annotations

import pytest
import torch

from vtamiq_metric import VTAMIQ
from vtamiq_metric.model.config import get_preset


@pytest.fixture
def textured():
    """A (3, 64, 80) image with edges and texture in [0.1, 0.9]."""
    gen = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.linspace(0, 6, 64), torch.linspace(0, 8, 80), indexing="ij")
    base = torch.stack([torch.sin(xx * 2) * torch.cos(yy), (xx > 4).float() - 0.5, torch.sin(xx + yy * 3)])
    return (0.5 + 0.35 * base + 0.05 * torch.rand(3, 64, 80, generator=gen)).clamp(0, 1)


@pytest.fixture
def distance_model():
    """The tiny preset with the identity anchor and the token distance, random weights."""
    torch.manual_seed(0)
    return VTAMIQ(get_preset("tiny").replace(zero_identity=True, token_distance=True)).eval()
