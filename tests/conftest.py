"""Shared fixtures: tiny random-weight models and small images; nothing downloads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
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


def build_fake_kadid(root: Path, levels: int) -> Path:
    """A tiny KADID-10k in its official layout: 5 references x ``levels`` noise levels, 32x40 PNGs, MOS falling
    with the noise level."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["dist_img,ref_img,dmos,var"]
    yy, xx = np.mgrid[0:32, 0:40]
    for r in range(1, 6):
        ref = (np.stack([xx * 6 + r * 10, yy * 7, (xx + yy) * 3 + r * 5], axis=-1) % 256).astype(np.uint8)
        Image.fromarray(ref).save(root / "images" / f"I{r:02d}.png")
        for level in range(1, levels + 1):
            dist = np.clip(ref + rng.normal(0, 12 * level, ref.shape), 0, 255).astype(np.uint8)
            name = f"I{r:02d}_01_{level:02d}.png"
            Image.fromarray(dist).save(root / "images" / name)
            rows.append(f"{name},I{r:02d}.png,{5 - level + rng.uniform(-0.2, 0.2):.3f},0.5")
    (root / "dmos.csv").write_text("\n".join(rows) + "\n")
    return root
