"""Where the results of ``vtamiq score`` go: one registry of writer classes, :data:`WRITERS`.

A writer receives the rows of a run as batches finish (``start``, ``add`` after every batch, ``close`` at the end)
and keeps its destination current. ``--output`` chooses the writer by its suffix (``.csv``, ``.json``) or ``-``
(standard output, also the default); ``--json`` prints JSON on standard output besides any file. File formats also
read their files back, for ``--resume`` and ``vtamiq merge-scores``.

Adding a format is one class and one entry: subclass :class:`FileWriter` (``key``, ``help``, :meth:`FileWriter.dump`,
:meth:`FileWriter.load`, and :meth:`FileWriter.add` if the format can append) and add it to :data:`WRITERS`. The
``--output`` help, the check of the suffix, ``--resume`` and ``merge-scores`` all read the registry.

A row is ``{"ref", "dist", "score", "std", "error"}`` (:data:`FIELDS`); shard files (``--shard I/N``) put ``index``
(the pair's position in the input) and ``total`` (the number of pairs in the input) first (:data:`SHARD_FIELDS`).
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TextIO

from .._io import atomic_write_text
from .common import CLIError

__all__ = ["FIELDS", "REWRITE_SECONDS", "SHARD_FIELDS", "WRITERS", "CsvWriter", "FileWriter", "JsonWriter",
           "ResultWriter", "RunOutput", "StdoutWriter", "file_suffixes", "file_writer", "suffixes_text",
           "writer_class"]

FIELDS = ("ref", "dist", "score", "std", "error")
SHARD_FIELDS = ("index", "total", *FIELDS)
# A file that cannot append (JSON) is rewritten whole, atomically, after a batch when this many seconds passed since
# its last rewrite.
REWRITE_SECONDS = 2.0
# The --output value that means standard output.
STDOUT = "-"


@dataclass(frozen=True)
class RunOutput:
    """What a writer knows of its run.

    Attributes:
        path: the output file (None for standard output).
        fields: the columns of a row, in order.
        total: the number of pairs in the input, for shard files (their ``total`` column); None otherwise.
        single: single-pair mode (``vtamiq score REF DIST``).
        json: ``--json`` (print JSON on standard output).
    """

    path: Path | None
    fields: tuple[str, ...] = FIELDS
    total: int | None = None
    single: bool = False
    json: bool = False


class ResultWriter(ABC):
    """One destination of the rows of a run, kept current as batches finish (on rank 0 only).

    Args:
        run: the run's :class:`RunOutput`.
        known: rows already done (``--resume``), by pair index.
    """

    #: ``--output`` selects the writer by this key: a file suffix (lower case), or ``-`` for standard output.
    key: ClassVar[str]
    #: What the format writes and when, for ``vtamiq score --help``.
    help: ClassVar[str]

    def __init__(self, run: RunOutput, known: dict[int, dict]) -> None:
        self.run = run
        self.rows = dict(known)

    def start(self) -> None:
        """Called once before the first batch."""

    def add(self, items: list[tuple[int, dict]]) -> None:
        """The new ``(index, row)`` pairs of a batch, in input order."""
        self.rows.update(items)

    @abstractmethod
    def close(self, finished: bool) -> None:
        """Called once at the end: ``finished`` is False when an error stops the run (a signal is a finish)."""

    def ordered(self) -> list[dict]:
        """Every row known so far, in input order."""
        return [row for _, row in sorted(self.rows.items())]


class FileWriter(ResultWriter):
    """A results file: written atomically at the start and, in input order, at the end (also when an error stops the
    run, so every finished pair is kept); in between, :meth:`add` rewrites it at most every
    :data:`REWRITE_SECONDS` (formats that can append override it). A reader always finds a valid file."""

    def __init__(self, run: RunOutput, known: dict[int, dict]) -> None:
        super().__init__(run, known)
        if run.path is None:
            raise ValueError(f"{type(self).__name__} writes a file; got no path")
        self.path: Path = run.path
        self._written = float("-inf")

    @classmethod
    @abstractmethod
    def dump(cls, rows: list[dict], path: Path, fields: tuple[str, ...]) -> None:
        """Write ``rows`` (dicts with ``fields``) to ``path``, atomically."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path, *, partial: bool = False) -> list[dict]:
        """The rows of a file this format wrote; with ``partial``, a file cut short by a killed run (what is whole
        is returned). Raises ``OSError``, ``ValueError`` or :class:`CLIError` for an unreadable file."""

    @classmethod
    def save(cls, rows: list[dict], path: Path, fields: tuple[str, ...] = FIELDS) -> None:
        """:meth:`dump` into ``path``, creating its folder first."""
        path.parent.mkdir(parents=True, exist_ok=True)
        cls.dump(rows, path, fields)

    def table(self, items: list[tuple[int, dict]]) -> list[dict]:
        """Rows as written: with their ``index`` and ``total`` in a shard file."""
        if self.run.total is None:
            return [row for _, row in items]
        return [{"index": k, "total": self.run.total, **row} for k, row in items]

    def rewrite(self) -> None:
        """Write every row known so far, in input order, atomically."""
        self.save(self.table(sorted(self.rows.items())), self.path, self.run.fields)
        self._written = time.monotonic()

    def start(self) -> None:
        self.rewrite()

    def add(self, items: list[tuple[int, dict]]) -> None:
        super().add(items)
        if time.monotonic() - self._written >= REWRITE_SECONDS:
            self.rewrite()

    def close(self, finished: bool) -> None:
        self.rewrite()


class CsvWriter(FileWriter):
    """Comma-separated values with a header row; each batch's rows are appended and flushed as they come."""

    key = ".csv"
    help = "a header row, then each batch's rows appended as they finish"

    def __init__(self, run: RunOutput, known: dict[int, dict]) -> None:
        super().__init__(run, known)
        self._handle: TextIO | None = None

    @classmethod
    def dump(cls, rows: list[dict], path: Path, fields: tuple[str, ...]) -> None:
        atomic_write_text(path, cls._format(rows, fields, header=True), newline="")

    @classmethod
    def load(cls, path: Path, *, partial: bool = False) -> list[dict]:
        with open(path, newline="", encoding="utf-8") as handle:  # newline="": line ends reach the parser as written
            text = handle.read()
        if partial and text and not text.endswith(("\n", "\r")):  # a run killed while appending: drop the cut row
            text = text[:text.rfind("\n") + 1]
        return list(csv.DictReader(io.StringIO(text, newline="")))

    @staticmethod
    def _format(rows: list[dict], fields: tuple[str, ...], *, header: bool) -> str:
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=list(fields))
        if header:
            writer.writeheader()
        writer.writerows(rows)
        return table.getvalue()

    def start(self) -> None:
        super().start()
        self._handle = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def add(self, items: list[tuple[int, dict]]) -> None:
        ResultWriter.add(self, items)
        if self._handle is not None:
            self._handle.write(self._format(self.table(items), self.run.fields, header=False))  # one write a batch
            self._handle.flush()

    def close(self, finished: bool) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        super().close(finished)


class JsonWriter(FileWriter):
    """A JSON list of row objects (``null`` for what a row lacks)."""

    key = ".json"
    help = f"a list of row objects, rewritten atomically at most every {REWRITE_SECONDS:g} s"

    @classmethod
    def dump(cls, rows: list[dict], path: Path, fields: tuple[str, ...]) -> None:
        atomic_write_text(path, json.dumps(rows, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path, *, partial: bool = False) -> list[dict]:
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list):
            raise CLIError(f"{path}: expected a JSON list of rows, got {type(rows).__name__}")
        return rows


class StdoutWriter(ResultWriter):
    """Standard output: one ``ref<TAB>dist<TAB>score`` line per pair as batches finish (the score alone for a single
    pair), or with ``--json`` one JSON document at the end (the row of a single pair, else the list of rows)."""

    key = STDOUT
    help = "standard output (the default): a line per pair as batches finish; --json prints JSON at the end"

    def add(self, items: list[tuple[int, dict]]) -> None:
        super().add(items)
        if self.run.json or self.run.single:
            return
        for _, row in items:
            shown = f"{row['score']:.6f}" if row["error"] is None else "error"
            print(f"{row['ref']}\t{row['dist']}\t{shown}", flush=True)

    def close(self, finished: bool) -> None:
        if not finished:
            return
        rows = self.ordered()
        if self.run.json:
            print(json.dumps(rows[0] if self.run.single and len(rows) == 1 else rows, indent=2))
        elif self.run.single and rows and rows[0]["error"] is None:
            print(f"{rows[0]['score']:.6f}")
        sys.stdout.flush()


#: Every result format, by ``--output`` key (a lower-case suffix, or ``-`` for standard output).
WRITERS: dict[str, type[ResultWriter]] = {cls.key: cls for cls in (CsvWriter, JsonWriter, StdoutWriter)}


def file_suffixes() -> list[str]:
    """The suffixes of the file formats, in registry order."""
    return [key for key, cls in WRITERS.items() if issubclass(cls, FileWriter)]


def suffixes_text() -> str:
    """The file suffixes for a sentence: ``".csv or .json"`` (``".csv, .json or .tsv"`` with a third format)."""
    items = file_suffixes()
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def writer_class(output: Path | None) -> type[ResultWriter]:
    """The writer of ``--output OUTPUT``: by the file's suffix (any case), standard output for None or ``-``.

    Raises:
        CLIError: a suffix that no format has.
    """
    if output is None or str(output) == STDOUT:
        return WRITERS[STDOUT]
    cls = WRITERS.get(output.suffix.lower())
    if cls is None or not issubclass(cls, FileWriter):
        raise CLIError(f"expected an output file ending in {suffixes_text()} (the format follows the "
                       f"suffix), got {str(output)!r}")
    return cls


def file_writer(output: Path) -> type[FileWriter]:
    """The file format of ``output`` (for ``--resume`` and ``merge-scores``); raises :class:`CLIError` for a suffix
    that no file format has."""
    cls = writer_class(output)
    if not issubclass(cls, FileWriter):
        raise CLIError(f"expected an output file ending in {suffixes_text()}, got {str(output)!r}")
    return cls
