"""What a training run writes so that it never loses work: ``last.pt``, ``best/``, RNG states and the metric log.

- :func:`save_checkpoint` writes ``<output>/checkpoints/last.pt`` atomically after every epoch: the model (unwrapped),
  optimiser, scheduler, this process's RNG states (and every rank's, under ``torchrun``), the epoch, the best score
  so far and the config. :func:`resume` reads it back into a fresh run, so that ``--resume`` continues bit for bit.
- :func:`save_best` writes ``<output>/best/`` (a :func:`vtamiq_metric.model.weights.save_pretrained` directory, each
  file atomic) whenever validation improves.
- :class:`MetricLog` keeps ``metrics.jsonl`` and ``metrics.csv`` (and TensorBoard when it is installed); after a
  resume it drops the rows of epochs that were logged but not checkpointed.

Only rank 0 writes. RNG states are per rank: resuming with the same number of processes restores each rank's own
state; with another number every rank restores rank 0's, and ranks > 0 then reseed from ``(seed, "rank", rank,
epoch)`` (:func:`.seeds.derive_seed`) so that their dropout draws differ.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._distributed import DistContext
from .._io import atomic_path, atomic_write_text
from ..model.vtamiq import VTAMIQ
from ..model.weights import save_pretrained
from .seeds import derive_seed

__all__ = ["CHECKPOINT_NAME", "MetricLog", "Progress", "resume", "rng_state", "save_best", "save_checkpoint",
           "set_rng_state"]

_logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"


@dataclass
class Progress:
    """Where a run stands: the next epoch to train and the best validation score so far.

    Attributes:
        start_epoch: the first epoch still to train (0 for a fresh run).
        best_score: the best selection score (validation SROCC, or preference accuracy for PieAPP).
        best_epoch: the epoch that reached it (-1 before the first epoch).
    """

    start_epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1

    def update(self, epoch: int, selection: float) -> bool:
        """Record epoch ``epoch``'s selection score; True when it is the new best (the first epoch always is)."""
        improved = self.best_epoch < 0 or (math.isfinite(selection) and selection > self.best_score)
        if improved:
            self.best_score, self.best_epoch = (selection if math.isfinite(selection) else -math.inf), epoch
        return improved


# ---------------------------------------------------------------------------------------------------------------
# RNG states


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """This process's RNG states (torch, numpy, Python; CUDA); with ``device`` (distributed runs) only its GPU's."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        if device is not None and device.type == "cuda":
            state["cuda_device"] = torch.cuda.get_rng_state(device)
        elif device is None:
            state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore states saved by :func:`rng_state` (``device`` as when they were saved)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if not torch.cuda.is_available():
        return
    if device is None:
        if "cuda" in state:
            torch.cuda.set_rng_state_all(state["cuda"])
    elif device.type == "cuda":
        if "cuda_device" in state:
            torch.cuda.set_rng_state(state["cuda_device"], device)
        elif "cuda" in state and device.index is not None and device.index < len(state["cuda"]):
            torch.cuda.set_rng_state(state["cuda"][device.index], device)


def _restore_rng(state: dict[str, Any], ctx: DistContext, seed: int, epoch: int) -> None:
    if not ctx.distributed:
        set_rng_state(state["rng"])
        return
    per_rank = state.get("rng_ranks")
    if per_rank is not None and len(per_rank) == ctx.world_size:
        set_rng_state(per_rank[ctx.rank], ctx.device)
        return
    # Saved with another number of processes: rank 0's state everywhere, then distinct streams on ranks > 0.
    set_rng_state(state["rng"], ctx.device)
    if ctx.rank > 0:
        torch.manual_seed(derive_seed(seed, "rank", ctx.rank, epoch))


# ---------------------------------------------------------------------------------------------------------------
# last.pt


def save_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, epoch: int, progress: Progress,
                    config: dict[str, Any], rng: dict[str, Any], world_size: int,
                    rng_ranks: list[dict[str, Any]] | None = None) -> None:
    """Write ``last.pt`` atomically (temporary file, fsync, rename) after epoch ``epoch``.

    Args:
        path: the checkpoint file.
        model: the unwrapped model (never the DDP wrapper, so that any number of processes can resume).
        optimizer: its optimiser.
        scheduler: its learning-rate schedule.
        epoch: the epoch just finished.
        progress: the best score so far.
        config: the run's settings (``TrainConfig.to_dict()``).
        rng: this process's (rank 0's) RNG states, from :func:`rng_state`.
        world_size: the number of processes of the run.
        rng_ranks: every rank's RNG states, in rank order (distributed runs).
    """
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "rng": rng, "epoch": epoch, "best_score": progress.best_score, "best_epoch": progress.best_epoch,
             "config": config, "world_size": world_size}
    if rng_ranks is not None:
        state["rng_ranks"] = rng_ranks
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def resume(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
           scheduler: torch.optim.lr_scheduler.LRScheduler, ctx: DistContext, seed: int,
           log: MetricLog | None) -> Progress:
    """Load ``last.pt`` into a freshly built run, or start from scratch when there is none.

    Restores the model, optimiser, scheduler and RNG states (see the module docstring for other numbers of
    processes) and truncates the metric log to the checkpointed epochs.

    Returns:
        Where to continue: the epoch after the checkpointed one and the best score so far.
    """
    if not path.exists():
        if ctx.is_main:
            _logger.warning("no checkpoint at %s; starting from scratch", path)
        return Progress()
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    progress = Progress(state["epoch"] + 1, state["best_score"], state["best_epoch"])
    _restore_rng(state, ctx, seed, progress.start_epoch)
    if log is not None:
        log.truncate_after(state["epoch"])
    if ctx.is_main:
        _logger.info("resumed from %s after epoch %d (saved by %d process(es), now %d)", path, state["epoch"],
                     state.get("world_size", 1), ctx.world_size)
    return progress


# ---------------------------------------------------------------------------------------------------------------
# best/ and the metric log


def save_best(model: VTAMIQ, output: Path, info: dict[str, Any]) -> Path:
    """Write the model to ``<output>/best/`` with ``info`` (epoch, validation metrics, seeds) as provenance."""
    return save_pretrained(model, output / "best", provenance=info)


class MetricLog:
    """``metrics.jsonl`` and ``metrics.csv`` (one row per epoch, both rewritten atomically), and TensorBoard."""

    def __init__(self, output: Path) -> None:
        self.jsonl = output / "metrics.jsonl"
        self.csv = output / "metrics.csv"
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(output / "tensorboard"))
        except ImportError:
            _logger.debug("TensorBoard not installed; metrics go to JSONL and CSV only")

    def _rows(self) -> list[dict[str, Any]]:
        if not self.jsonl.exists():
            return []
        return [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]

    def truncate_after(self, epoch: int) -> None:
        """Drop rows of epochs after ``epoch`` (written by a run that was interrupted before its checkpoint)."""
        if self.jsonl.exists():
            self._rewrite([row for row in self._rows() if row["epoch"] <= epoch])

    def append(self, row: dict[str, Any]) -> None:
        """Add one epoch's row (``row["epoch"]`` and numbers) to the files and to TensorBoard."""
        self._rewrite([*self._rows(), row])
        if self.writer is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch" and math.isfinite(value):
                    self.writer.add_scalar(key, value, row["epoch"])
            self.writer.flush()

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        atomic_write_text(self.jsonl, "".join(json.dumps(row) + "\n" for row in rows))
        keys = sorted({key for row in rows for key in row}, key=lambda k: (k != "epoch", k))
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.csv, table.getvalue(), newline="")
