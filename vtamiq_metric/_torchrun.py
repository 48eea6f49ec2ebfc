"""Running under ``torchrun``: process-group set-up, rank guards, and sharding by item index.

``torchrun`` starts one process per GPU (or per CPU worker) and tells each one who it is through the environment
variables ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (plus ``MASTER_ADDR``/``MASTER_PORT``). :func:`init_from_env`
reads them and, when ``WORLD_SIZE > 1``, creates the default process group: NCCL when the process computes on CUDA,
gloo on CPU. Each process then uses ``cuda:LOCAL_RANK``. Without those variables (or with ``WORLD_SIZE=1``) nothing
is created and every helper here degrades to its single-process meaning (rank 0 of 1), so library code can call
them unconditionally.

Sharding is by item index: rank ``r`` of ``w`` handles indices ``r, r + w, r + 2w, ...`` (:func:`shard_indices`),
a disjoint, unpadded subset, so that after gathering every item counts exactly once, in index order. This is what
``vtamiq score`` needs; the training-only pieces (the epoch sampler, the indexed gather, the all-reduce of metrics)
live in :mod:`vtamiq_metric.training.distributed`.

Example:
    >>> from vtamiq_metric import _torchrun as torchrun
    >>> ctx = torchrun.init_from_env()  # no torchrun: rank 0 of 1, no process group
    >>> (ctx.rank, ctx.world_size, ctx.is_main)
    (0, 1, True)
    >>> list(torchrun.shard_indices(7, rank=1, world_size=3))
    [1, 4]
"""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistContext",
    "all_gather_objects",
    "barrier",
    "env_ranks",
    "init_from_env",
    "is_main",
    "rank_world",
    "shard_indices",
    "shutdown",
]

_logger = logging.getLogger(__name__)

# Set when init_from_env created the default process group, so that shutdown() never destroys one we do not own.
_OWNED_GROUP = False


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) run.

    Attributes:
        rank: global rank, 0 .. world_size - 1.
        world_size: number of processes (1 when not launched by torchrun).
        local_rank: rank on this node; selects the GPU ``cuda:local_rank``.
        device: the device this process computes on.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only process that logs, shows progress and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {text!r}") from None


def env_ranks() -> tuple[int, int, int]:
    """``(RANK, WORLD_SIZE, LOCAL_RANK)`` from the environment torchrun sets; ``(0, 1, 0)`` when it is not set.

    Raises:
        ValueError: the variables are not integers, or do not describe a valid rank.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank if world > 1 else 0)
    if world < 1:
        raise ValueError(f"expected WORLD_SIZE >= 1, got {world}")
    if not 0 <= rank < world:
        raise ValueError(f"expected 0 <= RANK < WORLD_SIZE, got RANK={rank}, WORLD_SIZE={world}")
    if local_rank < 0:
        raise ValueError(f"expected LOCAL_RANK >= 0, got {local_rank}")
    return rank, world, local_rank


def _pick_device(device: str | torch.device | None, local_rank: int, world: int) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if world > 1 and device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        elif device.index != local_rank:
            _logger.warning("device %s was requested, but torchrun gave this process LOCAL_RANK %d; processes that "
                            "share a GPU slow each other down", device, local_rank)
    return device


def init_from_env(device: str | torch.device | None = None) -> DistContext:
    """This process's rank, world size and device; creates the default process group when torchrun started >1.

    Idempotent: a process group that already exists (created here or by the caller) is reused.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None = CUDA when available. Under torchrun a bare ``"cuda"``
            becomes ``cuda:LOCAL_RANK``.

    Returns:
        A :class:`DistContext`. Without torchrun: rank 0 of 1 and no process group.

    Raises:
        ValueError: malformed torchrun variables.
        RuntimeError: more than one process was requested but this PyTorch build has no distributed support.
    """
    global _OWNED_GROUP
    rank, world, local_rank = env_ranks()
    target = _pick_device(device, local_rank, world)
    if world == 1:
        return DistContext(rank=0, world_size=1, local_rank=0, device=target)
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world} but this PyTorch build has no torch.distributed support")
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if not dist.is_initialized():
        backend = "nccl" if target.type == "cuda" else "gloo"
        options: dict[str, Any] = {}
        if target.type == "cuda" and "device_id" in inspect.signature(dist.init_process_group).parameters:
            options["device_id"] = target  # binds NCCL to this GPU (PyTorch >= 2.3)
        dist.init_process_group(backend=backend, rank=rank, world_size=world, **options)
        _OWNED_GROUP = True
        _logger.info("process group initialised: rank %d of %d (%s on %s)", rank, world, backend, target)
    elif dist.get_world_size() != world or dist.get_rank() != rank:
        raise ValueError(f"expected the existing process group to match torchrun's RANK={rank}, WORLD_SIZE={world}, "
                         f"got rank {dist.get_rank()} of {dist.get_world_size()}")
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=target)


def shutdown() -> None:
    """Destroy the process group if :func:`init_from_env` created it (no-op otherwise)."""
    global _OWNED_GROUP
    if _OWNED_GROUP and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _OWNED_GROUP = False


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    """True on rank 0, and in a single-process run."""
    return not _active() or dist.get_rank() == 0


def rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group; ``(0, 1)`` without one."""
    if not _active():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def barrier() -> None:
    """Wait until every rank gets here (no-op in a single-process run)."""
    if not _active():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def shard_indices(n: int, rank: int, world_size: int) -> range:
    """The item indices rank ``rank`` of ``world_size`` handles: ``rank, rank + world_size, ...`` below ``n``.

    The shards of all ranks are disjoint, cover ``range(n)`` and are not padded (their sizes differ by at most 1).
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"expected 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    if n < 0:
        raise ValueError(f"expected n >= 0, got {n}")
    return range(rank, n, world_size)


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in a single-process run."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
