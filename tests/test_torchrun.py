"""``vtamiq_metric._torchrun``: rank set-up from the torchrun environment, sharding by item index.

``vtamiq score`` under torchrun or with ``--shard I/N`` is tested in ``tests/cli/test_shards.py``."""

from __future__ import annotations

import pytest
import torch

from vtamiq_metric import _torchrun as torchrun


def test_shards_are_disjoint_unpadded_and_cover_every_index():
    for n, world in [(0, 2), (3, 2), (7, 3), (2, 4)]:
        shards = [list(torchrun.shard_indices(n, r, world)) for r in range(world)]
        assert sorted(i for s in shards for i in s) == list(range(n))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(ValueError, match="expected 0 <= rank < world_size, got rank=2, world_size=2"):
        torchrun.shard_indices(5, 2, 2)


def test_env_ranks_defaults_and_validation(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert torchrun.env_ranks() == (0, 1, 0)
    ctx = torchrun.init_from_env("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    assert not torch.distributed.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="expected 0 <= RANK < WORLD_SIZE, got RANK=2, WORLD_SIZE=2"):
        torchrun.env_ranks()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK must be an integer, got 'x'"):
        torchrun.env_ranks()
