"""Distributed training and evaluation: the epoch sampler, the indexed gather of predictions, metric sums.

The process-group set-up and the sharding rule are the core's (:mod:`vtamiq_metric._torchrun`, which ``vtamiq
score`` uses too); this module adds what only training needs:

- :class:`EpochShardSampler`: each rank's share of the single-process epoch order, so that the data order does not
  depend on the number of processes and ``--resume`` works after changing it;
- :func:`merge_indexed` / :func:`gather_indexed`: every rank's predictions of its items (``shard_indices``) put back in
  item order, each item exactly once, so SROCC/PLCC/KROCC do not depend on the number of processes;
- :func:`all_reduce_sum`: the epoch's loss and pair counts summed over ranks.

Without ``torchrun`` (one process) every function here degrades to its single-process meaning.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.distributed
from torch.utils.data import Dataset, DistributedSampler

from .._torchrun import all_gather_objects, rank_world
from .seeds import derive_seed

__all__ = ["EpochShardSampler", "all_reduce_sum", "gather_indexed", "merge_indexed"]


class EpochShardSampler(DistributedSampler):
    """A :class:`~torch.utils.data.DistributedSampler` whose epoch order is the single-process training order.

    Each epoch draws one permutation of all items from a generator seeded by ``derive_seed(seed, "order", epoch)``,
    exactly the permutation the single-process loader (``shuffle=True`` with that generator) draws; rank
    ``r`` of ``w`` takes positions ``r, r + w, ...`` of it. With ``batch_size`` B, the items of step k on all ranks
    together are positions ``k*w*B .. (k+1)*w*B - 1``: one global batch of ``w*B`` consecutive items, whatever ``w``.
    ``drop_last`` is False: the permutation is padded with its first items up to a multiple of ``w`` so that every
    rank takes the same number of steps (those few items are seen twice in that epoch). Call :meth:`set_epoch`
    before each epoch.

    Args:
        dataset: the training items.
        num_replicas: world size.
        rank: this process's rank.
        seed: the run seed (``TrainConfig.seed``).
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "order", self.epoch))
        # A shuffling DataLoader draws its workers' base seed from the generator before the permutation; drawing it
        # here too makes the order identical to the single-process loader's (tests check this against DataLoader).
        torch.empty((), dtype=torch.int64).random_(generator=generator)
        order = torch.randperm(len(self.dataset), generator=generator).tolist()  # type: ignore[arg-type]
        if order and len(order) < self.total_size:
            order = (order * math.ceil(self.total_size / len(order)))[:self.total_size]
        return iter(order[self.rank:self.total_size:self.num_replicas])




def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64); the values themselves in a single-process run."""
    if rank_world()[1] == 1:
        return [float(v) for v in values]
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()




def merge_indexed(parts: Sequence[tuple[np.ndarray, Mapping[str, np.ndarray]]], total: int) -> dict[str, np.ndarray]:
    """Join per-rank ``(indices, {name: values})`` into arrays ordered by index, checking each index once.

    Args:
        parts: one ``(indices, arrays)`` pair per rank; ``indices`` is (k,) int, every array is (k,) or (k, ...).
        total: the number of items; the indices must be exactly ``0 .. total - 1``.

    Returns:
        ``{name: (total, ...) array}`` in index order, plus ``"index"`` = ``arange(total)``.

    Raises:
        ValueError: an index is missing or appears more than once, or the arrays disagree in length.
    """
    if not parts:
        raise ValueError("expected at least one part to merge, got none")
    index = np.concatenate([np.asarray(idx, dtype=np.int64).reshape(-1) for idx, _ in parts])
    counts = np.bincount(index[(index >= 0) & (index < total)], minlength=total) if total > 0 else np.zeros(0, int)
    outside = index[(index < 0) | (index >= total)]
    if len(index) != total or outside.size or (counts != 1).any():
        missing = np.flatnonzero(counts == 0)[:10].tolist()
        repeated = np.flatnonzero(counts > 1)[:10].tolist()
        raise ValueError(f"expected each of {total} item indices exactly once, got {len(index)} indices "
                         f"(missing {missing}, repeated {repeated}, out of range {outside[:10].tolist()})")
    order = np.argsort(index, kind="stable")
    names = list(parts[0][1])
    out: dict[str, np.ndarray] = {}
    for name in names:
        chunks = []
        for idx, arrays in parts:
            if name not in arrays:
                raise ValueError(f"expected every part to hold {names}, got {sorted(arrays)}")
            values = np.asarray(arrays[name])
            if len(values) != len(idx):
                raise ValueError(f"expected {len(idx)} values of {name!r} (one per index), got {len(values)}")
            chunks.append(values)
        out[name] = np.concatenate(chunks)[order]
    out["index"] = index[order]
    return out


def gather_indexed(indices: np.ndarray, arrays: Mapping[str, np.ndarray], total: int) -> dict[str, np.ndarray]:
    """Gather every rank's ``(indices, arrays)`` on every rank and merge them with :func:`merge_indexed`.

    In a single-process run the local part is merged (and checked) alone.
    """
    local = (np.asarray(indices, dtype=np.int64), {k: np.asarray(v) for k, v in arrays.items()})
    return merge_indexed(all_gather_objects(local), total)
