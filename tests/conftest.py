"""Shared fixtures: tiny random-weight models and small images; nothing downloads.

Builders that tests call with their own arguments (fake datasets, the golden weights) live in ``tests/helpers.py``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

_REPO = Path(__file__).resolve().parents[1]
# Caches that running Python and pytest create by design; anything else new in the checkout is a test writing there.
_CACHES = ("__pycache__", ".pytest_cache", ".hypothesis", ".egg-info", ".coverage")


def _new_files_state() -> set[str] | None:
    """Untracked and ignored paths of the checkout (``git status``), caches left out; None outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(_REPO), "status", "--porcelain", "--ignored"], capture_output=True,
                             text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    paths = {line[3:] for line in out.splitlines() if line[:2] in ("??", "!!")}
    return {path for path in paths if not any(cache in path for cache in _CACHES)}


@pytest.fixture(scope="session", autouse=True)
def _tests_write_only_to_temporary_folders():
    """Fail the session when a test left a new file or folder in the repository (tests write to tmp_path only)."""
    before = _new_files_state()
    yield
    after = _new_files_state()
    if before is not None and after is not None and after - before:
        pytest.fail(f"tests wrote into the repository: {sorted(after - before)}; write to tmp_path instead",
                    pytrace=False)


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
