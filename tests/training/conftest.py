"""Fixtures of the training tests."""

from __future__ import annotations

import pytest

from tests.helpers import build_fake_kadid


@pytest.fixture(scope="module")
def kadid(tmp_path_factory):
    """5 references x 4 distortions, 32x40 PNGs, MOS falling with the noise level (official KADID-10k layout)."""
    return build_fake_kadid(tmp_path_factory.mktemp("kadid10k"), levels=4)
