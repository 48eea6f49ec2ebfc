"""Atomic file writes: the one way this package writes a file that must never be seen half-written.

Every writer (weights, ``config.json``, score tables, KADIS images and CSV, training checkpoints) goes through
:func:`atomic_path`: the content is written to a hidden temporary file beside the target,
``.<name>.<pid>.tmp``, flushed to disk, and renamed over the target with :func:`os.replace` (atomic on POSIX and
Windows for a rename within one folder). A reader therefore sees the old file or the new one, never a mix; a process
killed mid-write leaves only the temporary file, which its owner removes on the next run (the pid in the name keeps
two processes writing beside each other from clashing). A folder of several files (a model directory) is written
file by file this way.

This module imports nothing from the package, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["TMP_SUFFIX", "atomic_path", "atomic_write_text", "temporary_name"]

TMP_SUFFIX = ".tmp"
"""Suffix of every temporary file :func:`atomic_path` creates (the full name is ``.<name>.<pid>.tmp``)."""


def temporary_name(path: Path) -> Path:
    """The temporary file :func:`atomic_path` writes before renaming it to ``path``: ``.<name>.<pid>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[Path]:
    """Write ``path`` atomically: yield a temporary path to write to, then rename it over ``path``.

    Args:
        path: the file to (re)place. Its folder must exist.
        fsync: flush the temporary file to disk before the rename, so that a power cut cannot leave an empty file
            under the final name.

    Yields:
        The temporary path (in the same folder). The caller writes the whole file there; when the ``with`` block ends
        without an exception the file replaces ``path``. On an exception (or a ``KeyboardInterrupt``) the temporary
        file is removed and ``path`` is left untouched.

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
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8",
                      newline: str | None = None) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`); returns ``path`` as a Path.

    ``newline`` is passed to :func:`open`: None translates ``"\\n"`` to the platform's line ending, ``""`` writes the
    text as it is (for CSV text that already holds its ``"\\r\\n"``).
    """
    target = Path(path)
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding=encoding, newline=newline) as handle:
            handle.write(text)
    return target
