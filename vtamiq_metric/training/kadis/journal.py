"""What a KADIS run has finished: the resume journal, and the CSV written from it.

Each finished reference appends one JSON line ``{"key": task.key(), "rows": [...]}`` to the journal, flushed and
fsynced (:class:`Journal`). A record counts only if its key matches the current settings and its images exist
(:func:`valid_records`), so changing the seed, levels or labels redoes the affected references. Every run reads every
journal in the output folder (unsharded and ``.shard-I-of-N``), and :func:`write_scores` writes
``kadis700k_scores.csv`` atomically from the records.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from ..._io import TMP_SUFFIX, atomic_path
from ..datasets.kadis700k import KADIS_SCORES_FILE
from .plan import DIST_DIR, RefTask

__all__ = ["JOURNAL_NAME", "SCORES_NAME", "Journal", "journal_path", "read_journals", "remove_stale_temporaries",
           "valid_records", "write_scores"]

_logger = logging.getLogger(__name__)

SCORES_NAME = KADIS_SCORES_FILE  # defined once, beside the reader of the file
JOURNAL_NAME = ".kadis_progress.jsonl"


def _read_journal(path: Path) -> dict[str, dict]:
    """Journal records by reference name (the last complete record of a name wins; broken lines are ignored)."""
    records: dict[str, dict] = {}
    if not path.exists():
        return records
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
                name = record["key"]["ref"]
                if not isinstance(record["rows"], list):
                    raise TypeError("rows is not a list")
            except (ValueError, KeyError, TypeError):
                _logger.debug("ignoring an incomplete journal line in %s", path)
                continue
            records[name] = record
    return records


def journal_path(out_dir: Path, shard: tuple[int, int] | None) -> Path:
    """The journal a run appends to: ``.kadis_progress.jsonl``, or ``.kadis_progress.shard-I-of-N.jsonl``."""
    if shard is None:
        return out_dir / JOURNAL_NAME
    stem, suffix = JOURNAL_NAME.rsplit(".", 1)
    return out_dir / f"{stem}.shard-{shard[0]}-of-{shard[1]}.{suffix}"


def read_journals(out_dir: Path) -> dict[str, list[tuple[str, dict]]]:
    """Records of every journal in ``out_dir`` (unsharded and shards), as reference name -> [(journal, record)]."""
    stem, suffix = JOURNAL_NAME.rsplit(".", 1)
    paths = [out_dir / JOURNAL_NAME, *sorted(out_dir.glob(f"{stem}.shard-*-of-*.{suffix}"))]
    found: dict[str, list[tuple[str, dict]]] = {}
    for path in paths:
        for name, record in _read_journal(path).items():
            found.setdefault(name, []).append((path.name, record))
    return found


def valid_records(tasks: Sequence[RefTask], journals: dict[str, list[tuple[str, dict]]]) -> dict[str, list[tuple]]:
    """For each task, the (journal, record) pairs that complete it with the current settings."""
    return {task.name: [(j, r) for j, r in journals.get(task.name, []) if _is_done(task, r)] for task in tasks}


def _is_done(task: RefTask, record: dict | None) -> bool:
    """Whether ``record`` holds every (type, level) of ``task`` with the current settings and the images exist."""
    if record is None or record.get("key") != task.key():
        return False
    try:
        found = {(row[1], row[2]) for row in record["rows"]}
        if found != {(t, lv) for t in task.types for lv in task.levels} or len(found) != len(record["rows"]):
            return False
        if any(set(row[3]) != set(task.labels) for row in record["rows"]):
            return False
        return all((Path(task.dist_dir) / row[0]).is_file() for row in record["rows"])
    except (TypeError, IndexError, KeyError):
        return False


class Journal:
    """Append-only JSON-lines journal, flushed and fsynced after every record."""

    def __init__(self, path: Path) -> None:
        # A crash can leave a final line without its newline; start new records on a fresh line.
        needs_newline = False
        if path.exists() and path.stat().st_size > 0:
            with path.open("rb") as existing:
                existing.seek(-1, os.SEEK_END)
                needs_newline = existing.read(1) != b"\n"
        self._handle = path.open("a", encoding="utf-8")
        if needs_newline:
            self._handle.write("\n")

    def append(self, record: dict) -> None:
        """Append ``record`` as one JSON line and sync it to disk (a killed run keeps every line it wrote)."""
        self._handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Close the journal file."""
        self._handle.close()


def _ref_column(path: str, out_dir: Path) -> str:
    """The ``ref_img`` cell: the reference's path relative to ``out_dir``, ``/``-separated (``../`` when it lies
    outside), so the folder can be moved with its references; absolute only where no relative path exists (another
    drive on Windows)."""
    try:
        return Path(os.path.relpath(path, out_dir.resolve())).as_posix()
    except ValueError:
        return path


def write_scores(tasks: Sequence[RefTask], records: dict[str, dict], labels: Sequence[str], out_dir: Path) -> Path:
    """Write ``kadis700k_scores.csv`` atomically from the records of ``tasks`` (sorted by ref, type, level)."""
    rows = []
    for task in tasks:
        ref_img = _ref_column(task.path, out_dir)
        for dist_file, type_id, level, values in records[task.name]["rows"]:
            rows.append((task.name, type_id, level, f"{DIST_DIR}/{dist_file}", ref_img, values))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    path = out_dir / SCORES_NAME
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["dist_img", "ref_img", "dist_type", "dist_level", *labels])
        for _, type_id, level, dist_img, ref_img, values in rows:
            writer.writerow([dist_img, ref_img, type_id, level, *(repr(float(values[n])) for n in labels)])
    return path


def remove_stale_temporaries(out_dir: Path, own: Sequence[RefTask] | None = None) -> None:
    """Delete temporary files that a killed run left behind.

    Their names are ``.<name>.<pid>-<token>.tmp`` (see :mod:`vtamiq_metric._io`).

    With ``own`` (a shard), only the temporaries of those references' images, so that shards running at the same time
    in the same folder never delete each other's files in flight.
    """
    stale_files = [*(out_dir / DIST_DIR).glob(f".*{TMP_SUFFIX}")]
    if own is None:
        stale_files += out_dir.glob(f".{SCORES_NAME}.*{TMP_SUFFIX}")
    else:
        names = {task.dist_name(t, lv) for task in own for t in task.types for lv in task.levels}
        # ".<dist name>.<pid>-<token>.tmp" -> "<dist name>"
        stale_files = [p for p in stale_files if p.name[1 : -len(TMP_SUFFIX)].rsplit(".", 1)[0] in names]
    for stale in stale_files:
        with contextlib.suppress(OSError):
            stale.unlink()
