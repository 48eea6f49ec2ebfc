"""Atomic file writes: the one way this package writes a file that must never be seen half-written.

The files the package replaces as a whole go through :func:`atomic_path`: weights and their ``config.json``, score
tables, KADIS images and CSV, training checkpoints, a run's ``config.json``, ``split.json``, ``test.json``,
``summary.json`` and ``metrics.csv``, the tables and model card of ``vtamiq-train evaluate``/``export`` and the
split of ``vtamiq-train splits``. The content is written to a hidden temporary file beside the target,
``.<name>.<token>.tmp``, flushed to disk, and renamed over the target with :func:`os.replace` (atomic on POSIX and
Windows for a rename within one folder). A reader therefore sees the old file or the new one, never a mix; a process
killed mid-write leaves only the temporary file, which its owner removes on the next run (the KADIS journal on
resume, ``vtamiq-train train --overwrite`` in a run folder). The token (``<pid>-<16 random hex digits>``, no dot) is
new for every call, so neither two processes nor two threads of one process writing into one folder (even the same
file) share a temporary file; the last rename wins. A folder of several files (a model directory) is written file by
file this way.

One writer is deliberately not a whole-file replacement: a training run's ``metrics.jsonl`` is append-only (one
``write`` of one line, then flush and fsync, per epoch; :class:`vtamiq_metric.training.checkpoint.MetricLog`), so
that a kill loses at most the line being written, which the reader skips; rewriting the whole log every epoch would
cost more and protect nothing more. Cutting the log back on resume does rewrite it through :func:`atomic_path`.

This module imports nothing from the package, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["TMP_SUFFIX", "atomic_path", "atomic_write_text", "temporary_name"]

TMP_SUFFIX = ".tmp"
"""Suffix of every temporary file :func:`atomic_path` creates (the full name is ``.<name>.<token>.tmp``)."""


def _umask() -> int:
    """The process's umask, read without changing it (Linux ``/proc``); 0o022 where it cannot be read."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _final_mode(target: Path) -> int:
    """The permissions the written file gets: the replaced file's, else those of a new file (``0o666 & ~umask``).

    Some writers create their file private (safetensors' ``save_file`` makes it 0o600); a model saved to share would
    then be unreadable to others, unlike any other file the user writes.
    """
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def temporary_name(path: Path) -> Path:
    """A fresh temporary file name beside ``path``: ``.<name>.<pid>-<16 random hex digits>.tmp``.

    Every call returns a new name (64 random bits from :mod:`secrets` after the process id), so concurrent writers,
    threads included, never share one. The token holds no dot: ``name[1:-len(TMP_SUFFIX)].rsplit(".", 1)[0]`` gives
    back the target's name (the KADIS journal finds its stale files this way).
    """
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(8)}{TMP_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[Path]:
    """Write ``path`` atomically: yield a temporary path to write to, then rename it over ``path``.

    Args:
        path: the file to (re)place. Its folder must exist.
        fsync: flush the temporary file to disk before the rename, so that a power cut cannot leave an empty file
            under the final name.

    Yields:
        The temporary path (in the same folder, a new name for every call, see :func:`temporary_name`). The caller
        writes the whole file there; when the ``with`` block ends without an exception the file replaces ``path``,
        with the permissions of the file it replaces, or those of a new file (``0o666 & ~umask``) whatever the
        writer chose. On
        an exception (or a ``KeyboardInterrupt``) the temporary file is removed and ``path`` is left untouched.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> with atomic_path(folder / "a.txt") as tmp:
        ...     _ = tmp.write_text("hello")
        >>> (folder / "a.txt").read_text(), sorted(p.name for p in folder.iterdir())
        ('hello', ['a.txt'])
    """
    target = Path(path)
    tmp = temporary_name(target)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        if os.name == "posix":
            os.chmod(tmp, _final_mode(target))
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8",
                      newline: str | None = None, errors: str = "strict") -> Path:
    r"""Write ``text`` to ``path`` atomically (see :func:`atomic_path`); returns ``path`` as a Path.

    ``newline`` and ``errors`` are passed to :func:`open`: ``newline=None`` translates ``"\n"`` to the platform's
    line ending, ``""`` writes the text as it is (for CSV text that already holds its ``"\r\n"``);
    ``errors="surrogateescape"`` writes file names that are not UTF-8 (held as lone surrogates by Python) as their
    original bytes.
    """
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "w", encoding=encoding, newline=newline, errors=errors) as handle:
        handle.write(text)
    return target
