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
  overwrite; it never deletes anything. :func:`clear_run_files` then removes, for ``--overwrite``, exactly the files a
  run writes (:data:`RUN_FILES`, TensorBoard event files, leftover temporary files of those, and the same inside
  ``run_NN/`` folders of ``--runs N``) and nothing else: :func:`.train.fit` calls it only once the data, split,
  initial weights and config have all been checked.

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
import re
import zipfile
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from .._io import TMP_SUFFIX, atomic_path, atomic_write_text
from .._torchrun import DistContext
from ..model.serialization import CONFIG_NAME, WEIGHTS_NAME
from ..model.vtamiq import VTAMIQ
from ..model.weights import check_state_dict, save_pretrained
from .seeds import derive_seed

__all__ = ["CHECKPOINT_NAME", "RUN_FILES", "CheckpointError", "MetricLog", "Progress", "check_output_folder",
           "check_resumable", "clear_run_files", "load_checkpoint", "read_metric_log", "resume", "rng_state",
           "save_best", "save_checkpoint", "set_rng_state"]

_logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"

#: Every file a run writes into its output folder, relative to it: ``last.pt``, the two files of ``best/`` (what
#: :func:`save_best` writes), the run's settings and split, the metric log, the test metrics, the summary of
#: ``--runs N`` and the default figure of ``vtamiq-train plot``. ``--overwrite`` removes these, TensorBoard's event
#: files (:data:`TENSORBOARD_EVENTS`), leftover temporary files of an atomic write of any of them, and the same inside
#: ``run_NN/`` folders; then the folders ``checkpoints/``, ``best/``, ``tensorboard/`` and ``run_NN/`` if that left them
#: empty. Nothing else is removed: a user's ``best/my_photo.jpg`` or ``run_notes/`` stays.
RUN_FILES = (f"checkpoints/{CHECKPOINT_NAME}", f"best/{WEIGHTS_NAME}", f"best/{CONFIG_NAME}", "config.json",
             "split.json", "metrics.jsonl", "metrics.csv", "test.json", "summary.json", "curves.png")
#: TensorBoard's event files, relative to a run folder (``SummaryWriter`` names them ``events.out.tfevents.*``).
TENSORBOARD_EVENTS = "tensorboard/events.out.tfevents.*"
_RUN_FOLDERS = ("checkpoints", "best", "tensorboard")  # removed by --overwrite only when left empty
_REPEATED_RUN = re.compile(r"run_\d{2,}")  # run_00, run_01, ... of --runs N (train.run)


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

        A tie goes to the later epoch: an epoch whose score equals the best so far (e.g. a validation SROCC of 1.0 on
        a tiny set, or the same preference accuracy) becomes the best, since it has trained longer at an equal
        validation score; before, epoch 0 stayed "best" for the whole run. A NaN score never wins over a finite one.
        With ``keep_last`` (a run without validation items, whose score is NaN) every epoch is the new best, so that
        ``best/`` holds the last epoch's model.
        """
        improved = keep_last or self.best_epoch < 0 or (math.isfinite(selection) and selection >= self.best_score)
        if improved:
            self.best_score, self.best_epoch = (selection if math.isfinite(selection) else -math.inf), epoch
        return improved


# ---------------------------------------------------------------------------------------------------------------
# RNG states


def _numpy_state() -> dict[str, Any]:
    """The global RNG state of NumPy, as plain values and a tensor (loadable with ``weights_only=True``)."""
    # The legacy global generator is always MT19937, whose state is this 5-tuple.
    name, keys, pos, has_gauss, cached = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
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
    processes) and truncates the metric log to the checkpointed epochs. Everything is checked first
    (:func:`check_resumable`), so a damaged or foreign ``last.pt`` changes nothing.

    Returns:
        Where to continue: the epoch after the checkpointed one and the best score so far.

    Raises:
        CheckpointError: ``last.pt`` is not a checkpoint of this package, or does not fit this run (the message says
            what: a key, a shape, an optimiser group, an RNG state, the epoch).
    """
    if not path.exists():
        if ctx.is_main:
            _logger.warning("no checkpoint at %s; starting from scratch", path)
        if log is not None:
            log.truncate_after(-1)  # rows of an epoch that ended before its first checkpoint
        return Progress()
    state = load_checkpoint(path)
    check_resumable(path, state, model=model, optimizer=optimizer)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    progress = Progress(state["epoch"] + 1, float(state["best_score"]), state["best_epoch"])
    try:
        _restore_rng(state, ctx, seed, progress.start_epoch)
    except (TypeError, ValueError, RuntimeError, KeyError, IndexError) as exc:  # CUDA states, checked only here
        raise CheckpointError(f"cannot resume from {path}: its RNG state cannot be restored ({type(exc).__name__}: "
                              f"{exc})") from None
    if log is not None:
        log.truncate_after(state["epoch"])
    if ctx.is_main:
        _logger.info("resumed from %s after epoch %d (saved by %d process(es), now %d)", path, state["epoch"],
                     state.get("world_size", 1), ctx.world_size)
    return progress


def check_resumable(path: Path, state: dict[str, Any], *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer) -> None:
    """Check that a loaded ``last.pt`` fits this run before any of it is applied.

    Checked: the epoch counters are ints and the best score a number; the model's keys and shapes
    (:func:`vtamiq_metric.model.weights.check_state_dict`); the optimiser's parameter groups, their sizes and the
    shape of every per-parameter state tensor (AdamW's moments); the scheduler state is a dict; the torch, numpy and
    Python RNG states (of every rank when they are there) can be set, tried on fresh generators so that the
    process's own state is untouched.

    Raises:
        CheckpointError: naming the file and what does not fit.
    """
    def fail(what: str) -> CheckpointError:
        return CheckpointError(f"cannot resume from {path}: {what}; it was not applied. Resume with the settings it "
                               f"was written with, or start afresh with --overwrite")

    for key, minimum in (("epoch", 0), ("best_epoch", -1)):
        value = state[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise fail(f"expected {key!r} to be an int >= {minimum}, got {value!r}")
    if isinstance(state["best_score"], bool) or not isinstance(state["best_score"], (int, float)):
        raise fail(f"expected 'best_score' to be a number, got {state['best_score']!r}")
    saved = state["model"]
    if not isinstance(saved, dict) or not all(isinstance(v, torch.Tensor) for v in saved.values()):
        raise fail("expected 'model' to be a state_dict of tensors")
    try:
        check_state_dict(model, saved, "its model")
    except ValueError as exc:
        raise fail(f"{exc} (was it written with another --model-preset or --init?)") from None
    _check_optimizer_state(state["optimizer"], optimizer, fail)
    if not isinstance(state["scheduler"], dict):
        raise fail(f"expected 'scheduler' to be a dict, got {type(state['scheduler']).__name__}")
    states = [("rng", state["rng"])]
    if state.get("rng_ranks") is not None:
        if not isinstance(state["rng_ranks"], list):
            raise fail(f"expected 'rng_ranks' to be a list, got {type(state['rng_ranks']).__name__}")
        states += [(f"rng_ranks[{rank}]", value) for rank, value in enumerate(state["rng_ranks"])]
    for name, value in states:
        problem = _rng_state_problem(value)
        if problem is not None:
            raise fail(f"its RNG state {name!r} cannot be restored: {problem}")


def _check_optimizer_state(saved: Any, optimizer: torch.optim.Optimizer, fail: Any) -> None:
    if not isinstance(saved, dict) or not isinstance(saved.get("param_groups"), list) or not isinstance(
            saved.get("state"), dict):
        raise fail("expected 'optimizer' to be an optimiser state_dict (with 'state' and 'param_groups')")
    groups = optimizer.param_groups
    if len(saved["param_groups"]) != len(groups):
        raise fail(f"its optimiser has {len(saved['param_groups'])} parameter group(s), this run has {len(groups)}")
    params: dict[Any, torch.Tensor] = {}
    for number, (old, new) in enumerate(zip(saved["param_groups"], groups, strict=True)):
        ids = old.get("params") if isinstance(old, dict) else None
        if not isinstance(ids, list) or len(ids) != len(new["params"]):
            count = len(ids) if isinstance(ids, list) else "no"
            raise fail(f"its optimiser group {number} has {count} parameters, this run trains {len(new['params'])} "
                       f"(another --freeze?)")
        params.update(zip(ids, new["params"], strict=True))
    for index, values in saved["state"].items():
        if index not in params or not isinstance(values, dict):
            raise fail(f"its optimiser holds state for an unknown parameter {index!r}")
        for name, value in values.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape != params[index].shape:
                raise fail(f"its optimiser state {name!r} of parameter {index} has shape {tuple(value.shape)}, the "
                           f"parameter has {tuple(params[index].shape)}")


def _rng_state_problem(state: Any) -> str | None:
    """Why :func:`set_rng_state` would fail on ``state``, tried on fresh generators; None when it would not."""
    if not isinstance(state, dict) or not {"torch", "numpy", "python"} <= set(state):
        return f"expected a dict with 'torch', 'numpy' and 'python', got {_keys_or_type(state)}"
    checks = (
        ("torch", lambda: torch.Generator().set_state(state["torch"])),
        ("numpy", lambda: np.random.RandomState().set_state(
            (state["numpy"]["name"], state["numpy"]["keys"].numpy().astype(np.uint32), state["numpy"]["pos"],
             state["numpy"]["has_gauss"], state["numpy"]["cached_gaussian"]))),
        ("python", lambda: random.Random().setstate(state["python"])),
    )
    for name, check in checks:
        try:
            check()
        except (TypeError, ValueError, RuntimeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
            return f"the {name} state is not valid ({type(exc).__name__}: {exc})"
    return None


def _keys_or_type(value: Any) -> str:
    return f"keys {sorted(map(str, value))}" if isinstance(value, dict) else type(value).__name__


# ---------------------------------------------------------------------------------------------------------------
# best/ and the metric log


def save_best(model: VTAMIQ, output: Path, info: dict[str, Any]) -> Path:
    """Write the model to ``<output>/best/`` with ``info`` (epoch, validation metrics, seeds) as provenance."""
    return save_pretrained(model, output / "best", provenance=info)


def read_metric_log(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl``, in file order; a torn last line (a kill in mid-write) is skipped with a warning.

    Raises:
        ValueError: a line before the last one is not a JSON object with an ``epoch`` (an int >= 0; the file was
            edited or is not a metric log); the message names the file and line.
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
        except (json.JSONDecodeError, RecursionError):
            row = None
        epoch = row.get("epoch") if isinstance(row, dict) else None
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            if row is None and number == len(complete) and not tail.strip():  # the last line, torn by a kill
                _logger.warning("ignoring the torn last line of %s", path)
                continue
            raise ValueError(f"{path}:{number}: expected a JSON object with an 'epoch' (an int >= 0) per line, got "
                             f"{line[:60]!r}")
        rows.append(row)
    if tail.strip():
        _logger.warning("ignoring the torn last line of %s (it has no newline)", path)
    return rows


def check_output_folder(output: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to start a fresh run in a folder that already holds files; never changes anything.

    Args:
        output: the run folder.
        resume: the run continues from ``last.pt``: anything may be there.
        overwrite: a previous run's files will be replaced (:func:`clear_run_files`, called by :func:`.train.fit`
            once everything else has been checked); other files may be there.

    Raises:
        FileExistsError: ``output`` holds files and neither ``resume`` nor ``overwrite`` is set.
        NotADirectoryError: ``output`` exists and is not a folder.
    """
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"output {output} is a file; expected a folder (new or empty) for the run")
    if resume or overwrite or not output.is_dir():
        return
    entries = sorted(p.name for p in output.iterdir())
    if entries:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise FileExistsError(f"output folder {output} is not empty ({shown}); expected an empty or new folder for a "
                              f"fresh run: pass --resume to continue that run, --overwrite to replace it, or another "
                              f"--output")


def _run_files_in(folder: Path) -> list[Path]:
    """The files of :data:`RUN_FILES` and :data:`TENSORBOARD_EVENTS` present in ``folder``, with leftover temporary
    files of those (``.<name>.<token>.tmp``); regular files only (a symlink is never a run's file)."""
    found: list[Path] = []
    for relative in RUN_FILES:
        path = folder / relative
        if path.parent.is_symlink():
            continue
        found.append(path)
        found.extend(path.parent.glob(f".{glob_escape(path.name)}.*{TMP_SUFFIX}"))
    if not (folder / "tensorboard").is_symlink():
        found.extend(folder.glob(TENSORBOARD_EVENTS))
    return [path for path in found if path.is_file() and not path.is_symlink()]


def clear_run_files(output: Path) -> list[Path]:
    """Remove exactly the files a previous run wrote into ``output`` (for ``--overwrite``); nothing else.

    Removed: :data:`RUN_FILES`, TensorBoard's event files, leftover temporary files of atomic writes of those, the
    same inside every ``run_NN/`` folder of ``--runs N``; then ``checkpoints/``, ``best/``, ``tensorboard/`` and
    ``run_NN/`` where that left them empty. Any other file (``best/my_photo.jpg``, ``run_notes/thesis.tex``,
    ``notes.txt``) and any symlink stays. Call it only once the new run is known to be able to start.

    Args:
        output: the run folder (missing: nothing to do).

    Returns:
        The files removed.
    """
    if not output.is_dir():
        return []
    folders = [output] + sorted(p for p in output.iterdir()
                                if _REPEATED_RUN.fullmatch(p.name) and p.is_dir() and not p.is_symlink())
    removed: list[Path] = []
    for folder in folders:
        for path in _run_files_in(folder):
            path.unlink()
            removed.append(path)
        for name in _RUN_FOLDERS:
            _remove_if_empty(folder / name)
        if folder != output:
            _remove_if_empty(folder)
    if removed:
        _logger.warning("--overwrite: removed the previous run's %d file(s) from %s (other files were kept)",
                        len(removed), output)
    return removed


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
        folder.rmdir()


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
