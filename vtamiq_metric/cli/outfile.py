"""What protects a results file of ``vtamiq score`` and ``vtamiq merge-scores``: a lock, the record of the options its
scores were made with, and the check that it is none of the inputs.

- **The lock**, ``OUTPUT.lock`` beside the file (:class:`OutputLock`), is held from before the first write to the end of
  the run and removed then. A second run writing the same file is refused with a message naming the holder's process
  id, instead of both writing it and the last one winning silently. The lock is a kernel lock on that file
  (``fcntl.flock``; ``msvcrt.locking`` on Windows), which the system drops when its process dies: the file a killed
  run leaves behind (its process id is dead) is stale and taken over, never mistaken for a live run.
- **The record**, ``OUTPUT.meta.json`` (:func:`run_record`, written before the results file), holds what determines a
  score: the model's fingerprint (sha256 of its config and tensors, :func:`model_fingerprint`), ``num_patches``,
  ``num_repeats``, ``seed``, the precision the model runs in, the CAPS settings and the viewing-distance
  ``downsample_side``, besides the model's name and the package version (for people). ``--resume`` compares it with
  the run's own and refuses to mix scores of different settings in one file, naming what changed; a results file with
  scores but no record is refused too (nothing says what made them). ``merge-scores`` checks that all shards have the
  same record and writes it beside the merged file.
- **The inputs**: an ``--output`` that is the ``--pairs`` file, an image of the input, or the model file (the same
  file, through any link) is refused before anything is written (:func:`check_not_an_input`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import final

import torch

from .._frontend import Scorer
from .._io import atomic_write_text
from .._precision import autocast
from .._version import __version__
from ..model.vtamiq import VTAMIQ
from .common import CLIError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_SUFFIX", "META_SUFFIX", "OutputLock", "changed_options", "check_not_an_input", "compute_precision",
           "lock_path", "meta_path", "model_fingerprint", "read_record", "run_record", "write_record"]

LOCK_SUFFIX = ".lock"
META_SUFFIX = ".meta.json"
# The "format" of a record, so that a stranger's JSON beside the output is never taken for one.
_RECORD_FORMAT = "vtamiq-score-options"


def lock_path(output: Path) -> Path:
    """The lock file of ``output``: ``scores.csv`` -> ``scores.csv.lock``."""
    return output.with_name(output.name + LOCK_SUFFIX)


def meta_path(output: Path) -> Path:
    """The record of ``output``: ``scores.csv`` -> ``scores.csv.meta.json``."""
    return output.with_name(output.name + META_SUFFIX)


@final
class OutputLock:
    """An exclusive lock on a results file, held by this process from :meth:`acquire` to :meth:`release` (also as a
    context manager). See the module docstring.

    Args:
        output: the results file (it need not exist; its folder is created).
    """

    def __init__(self, output: Path) -> None:
        self.output = output
        self.path = lock_path(output)
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def acquire(self) -> OutputLock:
        """Take the lock, or raise :class:`CLIError` naming the live process that holds it.

        The lock file's previous holder may remove it between our open and our lock: the lock then holds a file
        nobody else sees, so it is taken again on the file now at the path.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                holder = _describe_holder(fd)
                os.close(fd)
                raise CLIError(f"{self.output} is being written by another vtamiq run ({holder}); wait for it to "
                               f"finish or choose another --output (the lock is {self.path}, removed when that run "
                               f"ends)")
            try:
                here = os.stat(self.path)
                same = (here.st_dev, here.st_ino) == (os.fstat(fd).st_dev, os.fstat(fd).st_ino)
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
        with contextlib.suppress(OSError):  # who holds it is a courtesy for the message; on a full disk it is empty
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, me)
        return self

    def release(self) -> None:
        """Remove the lock file and release the lock (in that order, see :meth:`acquire`). Idempotent."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            here, mine = os.stat(self.path), os.fstat(self._fd)
            if (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino):
                os.unlink(self.path)
        os.close(self._fd)  # closing the descriptor releases the lock
        self._fd = None
        if os.name == "nt":  # pragma: no cover - Windows cannot remove an open file, so it is removed after closing
            with contextlib.suppress(OSError):
                self.path.unlink()


def _try_lock(fd: int) -> bool:
    """Lock ``fd`` exclusively without waiting; False when another open file holds the lock."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, errno.EDEADLK):
            return False
        raise
    return True


def _describe_holder(fd: int) -> str:
    """``"process 1234 on host"`` from a lock file's content (what its holder wrote), or a plain description."""
    try:
        holder = json.loads(os.read(fd, 4096) or b"{}")
        return f"process {int(holder['pid'])} on {holder['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that is starting"


def check_not_an_input(output: Path, inputs: Iterable[str | os.PathLike[str] | None]) -> None:
    """Raise :class:`CLIError` if ``output`` is one of ``inputs`` (the same file, through any name or link).

    Only an existing ``output`` can be an existing input; the inputs that do not exist are skipped.
    """
    try:
        target = output.stat()
    except OSError:
        return
    seen: set[str] = set()
    for item in inputs:
        if item is None or os.fspath(item) in seen:
            continue
        seen.add(os.fspath(item))
        try:
            other = os.stat(item)
        except (OSError, ValueError):
            continue
        if (other.st_dev, other.st_ino) == (target.st_dev, target.st_ino):
            raise CLIError(f"--output {output} is one of the inputs ({os.fspath(item)}): writing the results there "
                           f"would destroy it; choose another --output")


def model_fingerprint(model: VTAMIQ) -> str:
    """The sha256 of what makes a model's scores: its config (JSON) and every tensor of its state (name, dtype,
    shape and bytes, in name order). The same weights give the same fingerprint wherever they were loaded from."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"\n{name}:{flat.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def run_record(scorer: Scorer, model_name: str) -> dict:
    """The record of a run: the options that determine its scores (``"options"``), and for people the model's name
    and the package version.

    Args:
        scorer: the run's resolved front-end (model, device, complete options).
        model_name: what ``--model`` named (or the default model's name).
    """
    options = {
        "model_sha256": model_fingerprint(scorer.model),
        "num_patches": scorer.num_patches,
        "num_repeats": scorer.options.num_repeats,
        "seed": scorer.options.seed,
        "precision": compute_precision(scorer),
        "sampling": dataclasses.asdict(scorer.sampling),
        "downsample_side": scorer.model.config.downsample_side,
    }
    return {"format": _RECORD_FORMAT, "model": model_name, "vtamiq_metric": __version__,
            "options": json.loads(json.dumps(options))}  # tuples as lists: the record as it reads back


def compute_precision(scorer: Scorer) -> str:
    """The precision the model actually runs in for this scorer (``"fp32"``, ``"bf16"`` or ``"fp16"``): what
    ``precision="auto"`` resolves to on this device, read from the autocast context the scoring core enters."""
    device_type = scorer.device.type
    with autocast(scorer.device, scorer.options.precision):
        if not torch.is_autocast_enabled(device_type):
            return "fp32"
        dtype = torch.get_autocast_dtype(device_type)
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype).removeprefix("torch."))


def read_record(output: Path) -> dict | None:
    """The record beside ``output``, or None if there is none.

    Raises:
        CLIError: a record that cannot be read or is not one.
    """
    path = meta_path(output)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise CLIError(f"cannot read {path}: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != _RECORD_FORMAT or not isinstance(
            record.get("options"), dict):
        raise CLIError(f"{path} is not the record of a `vtamiq score` run (expected a JSON object with "
                       f"\"format\": \"{_RECORD_FORMAT}\" and its \"options\")")
    return record


def write_record(output: Path, record: dict) -> None:
    """Write ``record`` beside ``output`` (atomically; not at all when the file holds it already)."""
    path = meta_path(output)
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    with contextlib.suppress(OSError):
        if path.read_text(encoding="utf-8") == text:
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def changed_options(recorded: dict, current: dict) -> list[str]:
    """What differs between two records' options, one ``"name: recorded -> current"`` per option (sorted)."""
    old, new = recorded["options"], current["options"]
    changes = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            if name == "model_sha256":
                changes.append(f"model: {recorded.get('model')!r} (sha256 {str(old.get(name))[:12]}...) -> "
                               f"{current.get('model')!r} (sha256 {str(new.get(name))[:12]}...)")
            else:
                changes.append(f"{name}: {old.get(name)!r} -> {new.get(name)!r}")
    return changes
