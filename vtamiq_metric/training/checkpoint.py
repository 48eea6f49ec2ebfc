"""What a training run writes so that it never loses work: ``last.pt``, ``best/``, RNG states and the metric log.

- :func:`save_checkpoint` writes ``<output>/checkpoints/last.pt`` atomically after every epoch: the model (unwrapped),
  optimiser, scheduler, this process's RNG states (and every rank's, under ``torchrun``), the epoch, the best score
  so far and the config. Everything in it is a tensor or a plain Python value (numpy's RNG state is stored as a
  tensor), so :func:`resume` reads it with ``torch.load(weights_only=True)``: a planted ``last.pt`` cannot run code,
  it is refused with :class:`CheckpointError`. ``--resume`` continues bit for bit.
- :func:`save_best` writes ``<output>/best/`` (a :func:`vtamiq_metric.model.weights.save_pretrained` directory, each
  file atomic) whenever validation improves.
- :class:`MetricLog` keeps ``metrics.jsonl`` (append-only: one ``write`` of one line, then flush and fsync, per
  epoch) and ``metrics.csv`` (rewritten atomically from it), and TensorBoard when it is installed. A torn last line
  (a kill mid-write) is ignored with a warning; on resume the log is cut back to the checkpointed epochs (to nothing
  when there is no checkpoint yet).
- :func:`check_output_folder` refuses to start a fresh run in a folder that holds files, unless asked to resume or to
  overwrite (which removes what a previous run wrote there).

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
import os
import pickle
import random
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_path, atomic_write_text
from .._torchrun import DistContext
from ..model.vtamiq import VTAMIQ
from ..model.weights import save_pretrained
from .seeds import derive_seed

__all__ = ["CHECKPOINT_NAME", "RUN_FILES", "CheckpointError", "MetricLog", "Progress", "check_output_folder",
           "load_checkpoint", "read_metric_log", "resume", "rng_state", "save_best", "save_checkpoint", "set_rng_state"]

_logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"

#: What a run writes into its output folder; ``--overwrite`` removes these (and nothing else).
RUN_FILES = ("checkpoints", "best", "config.json", "split.json", "metrics.jsonl", "metrics.csv", "test.json",
             "tensorboard", "summary.json", "curves.png")


class CheckpointError(ValueError):
    """A ``last.pt`` that cannot be resumed from: unreadable, or holding objects other than tensors and plain values."""


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

    def update(self, epoch: int, selection: float, *, keep_last: bool = False) -> bool:
        """Record epoch ``epoch``'s selection score; True when it is the new best (the first epoch always is).

        With ``keep_last`` (a run without validation items, whose score is NaN) every epoch is the new best, so that
        ``best/`` holds the last epoch's model.
        """
        improved = keep_last or self.best_epoch < 0 or (math.isfinite(selection) and selection > self.best_score)
        if improved:
            self.best_score, self.best_epoch = (selection if math.isfinite(selection) else -math.inf), epoch
        return improved


# ---------------------------------------------------------------------------------------------------------------
# RNG states


def _numpy_state() -> dict[str, Any]:
    """numpy's global RNG state as plain values and a tensor (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """This process's RNG states (torch, numpy, Python; CUDA); with ``device`` (distributed runs) only its GPU's.

    Every value is a tensor or a plain Python value, so that ``last.pt`` loads with ``weights_only=True``.
    """
    state = {"torch": torch.get_rng_state(), "numpy": _numpy_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        if device is not None and device.type == "cuda":
            state["cuda_device"] = torch.cuda.get_rng_state(device)
        elif device is None:
            state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore states saved by :func:`rng_state` (``device`` as when they were saved)."""
    torch.set_rng_state(state["torch"])
    _set_numpy_state(state["numpy"])
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


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read ``last.pt`` with ``torch.load(weights_only=True)``: tensors and plain values only, never code.

    Raises:
        CheckpointError: the file is not a checkpoint of this package, or it holds other objects (a pickle that would
            import or call something); nothing in it has run.
    """
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"cannot resume from {path}: expected a checkpoint written by vtamiq-train (a zip "
                              f"archive from torch.save), got a file that is not a zip archive "
                              f"({path.stat().st_size} bytes); it was not loaded")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first if "GLOBAL" in line or "Unsupported" in line), first[0] if first
                      else type(exc).__name__)
        raise CheckpointError(
            f"refusing to resume from {path}: expected a vtamiq-train checkpoint holding only tensors and plain "
            f"values, got a file that holds other Python objects ({detail}); it was not loaded and nothing in it ran. "
            f"Delete it (or start a fresh run with --overwrite) unless you wrote it yourself") from None
    except Exception as exc:  # zip, EOF and other read errors: not a checkpoint
        raise CheckpointError(f"cannot resume from {path}: expected a checkpoint written by vtamiq-train (torch.save "
                              f"zip archive), got an unreadable file ({type(exc).__name__}: {exc})") from exc
    expected = {"model", "optimizer", "scheduler", "rng", "epoch", "best_score", "best_epoch"}
    if not isinstance(state, dict) or not expected <= set(state):
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"cannot resume from {path}: expected a dict with keys {sorted(expected)}, got {found}")
    return state


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
        if log is not None:
            log.truncate_after(-1)  # rows of an epoch that ended before its first checkpoint
        return Progress()
    state = load_checkpoint(path)
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


def read_metric_log(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl``, in file order; a torn last line (a kill in mid-write) is skipped with a warning.

    Raises:
        ValueError: a line before the last one is not a JSON object with an ``epoch`` (the file was edited or is not
            a metric log); the message names the file and line.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    complete, tail = lines[:-1], lines[-1]  # tail: the text after the last newline ("" when the file ends in one)
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or "epoch" not in row:
            if row is None and number == len(complete) and not tail.strip():  # the last line, torn by a kill
                _logger.warning("ignoring the torn last line of %s", path)
                continue
            raise ValueError(f"{path}:{number}: expected a JSON object with an 'epoch' per line, got {line[:60]!r}")
        rows.append(row)
    if tail.strip():
        _logger.warning("ignoring the torn last line of %s (it has no newline)", path)
    return rows


def check_output_folder(output: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to start a fresh run in a folder that already holds files.

    Args:
        output: the run folder.
        resume: the run continues from ``last.pt``: anything may be there.
        overwrite: remove what a previous run wrote (:data:`RUN_FILES`, ``run_*/``) first; other files are kept.

    Raises:
        FileExistsError: ``output`` holds files and neither ``resume`` nor ``overwrite`` is set.
    """
    if resume or not output.is_dir():
        return
    entries = sorted(p.name for p in output.iterdir())
    if not entries:
        return
    if not overwrite:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise FileExistsError(f"output folder {output} is not empty ({shown}); expected an empty or new folder for a "
                              f"fresh run: pass --resume to continue that run, --overwrite to replace it, or another "
                              f"--output")
    for name in entries:
        target = output / name
        if name in RUN_FILES or (name.startswith("run_") and target.is_dir()):
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
    _logger.warning("--overwrite: removed the previous run's files from %s", output)


class MetricLog:
    """``metrics.jsonl`` (append-only, one fsynced line per epoch), ``metrics.csv`` (rewritten atomically from it)
    and TensorBoard."""

    def __init__(self, output: Path) -> None:
        self.jsonl = output / "metrics.jsonl"
        self.csv = output / "metrics.csv"
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(output / "tensorboard"))
        except ImportError:
            _logger.debug("TensorBoard not installed; metrics go to JSONL and CSV only")

    def rows(self) -> list[dict[str, Any]]:
        """The logged rows (see :func:`read_metric_log`); none before the first epoch."""
        return read_metric_log(self.jsonl) if self.jsonl.exists() else []

    def truncate_after(self, epoch: int) -> None:
        """Keep only the rows of epochs up to ``epoch`` (-1 keeps none), rewriting both files atomically; drops rows
        of epochs that were logged but not checkpointed, and a torn last line."""
        if self.jsonl.exists() or self.csv.exists():
            rows = [row for row in self.rows() if row["epoch"] <= epoch]
            atomic_write_text(self.jsonl, "".join(json.dumps(row) + "\n" for row in rows))
            self._write_csv(rows)

    def append(self, row: dict[str, Any]) -> None:
        """Add one epoch's row (``row["epoch"]`` and numbers) to the files and to TensorBoard.

        The JSONL line is written with one ``write`` call, flushed and fsynced; a kill leaves at worst a torn last
        line, which :meth:`rows` skips.
        """
        line = (json.dumps(row) + "\n").encode("utf-8")
        if self.jsonl.exists() and self.jsonl.stat().st_size:
            with open(self.jsonl, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                torn = handle.read(1) != b"\n"
            if torn:  # a previous kill in mid-line: rewrite the complete rows before appending
                self.truncate_after(row["epoch"] - 1)
        with open(self.jsonl, "ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self._write_csv(self.rows())
        if self.writer is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch" and math.isfinite(value):
                    self.writer.add_scalar(key, value, row["epoch"])
            self.writer.flush()

    def _write_csv(self, rows: list[dict[str, Any]]) -> None:
        keys = sorted({key for row in rows for key in row}, key=lambda k: (k != "epoch", k))
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.csv, table.getvalue(), newline="")
