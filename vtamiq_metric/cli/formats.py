r"""Where the results of ``vtamiq score`` go: one registry of writer classes, :data:`WRITERS`.

A writer receives the rows of a run as batches finish (``start``, ``add`` after every batch, ``close`` at the end)
and keeps its destination current. ``--output`` chooses the writer by its suffix (``.csv``, ``.json``) or ``-``
(standard output, also the default); ``--json`` prints JSON on standard output besides any file. File formats also
read their files back, for ``--resume`` and ``vtamiq merge-scores``.

Adding a format is one class and one entry: subclass :class:`FileWriter` (``key``, ``help``, :meth:`FileWriter.dump`,
:meth:`FileWriter.load`, and :meth:`FileWriter.add` if the format can append) and add it to :data:`WRITERS`. The
``--output`` help, the check of the suffix, ``--resume`` and ``merge-scores`` all read the registry.

A row is ``{"ref", "dist", "score", "std", "error"}`` (:data:`FIELDS`); shard files (``--shard I/N``) put ``index``
(the pair's position in the input) and ``total`` (the number of pairs in the input) first (:data:`SHARD_FIELDS`).

What the formats guarantee, whatever the file names are:

- **Valid JSON only.** Every JSON document is written with ``allow_nan=False``: a non-finite number is never printed
  as a bare ``NaN`` (``vtamiq score`` turns a non-finite score into a row with ``score: null`` and an ``error``).
- **Any file name.** Names that are not UTF-8 (Python holds their bytes as lone surrogates) are written as their
  original bytes in CSV files and on standard output (``errors="surrogateescape"``), as ``\udcXX`` escapes in JSON,
  and read back to the same name by ``--resume`` and ``merge-scores``.
- **Spreadsheet-safe CSV.** A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return (which
  a spreadsheet would run as a formula) is written with a ``'`` in front, as spreadsheet-safe CSV writers do, and so
  is one that starts with ``'`` itself, so that reading drops exactly one leading ``'`` and gives back the true name.
  Other programs reading the CSV see the ``'``; the JSON format holds the names unchanged.
- **A complete file is not rewritten.** A file already holding exactly what a rewrite would write (a CSV whose rows
  were all appended in input order; a resumed file with nothing left to score) is left as it is, so a run can end,
  and a ``--resume`` with nothing left can finish, on a full disk.
"""

from __future__ import annotations

import csv
import io
import itertools
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
           "ResultWriter", "RunOutput", "StdoutWriter", "file_suffixes", "file_writer", "json_text", "print_text",
           "quote_cell", "suffixes_text", "unquote_cell", "writer_class"]

FIELDS = ("ref", "dist", "score", "std", "error")
SHARD_FIELDS = ("index", "total", *FIELDS)
# A file that cannot append (JSON) is rewritten whole, atomically, after a batch when this many seconds passed since
# its last rewrite.
REWRITE_SECONDS = 2.0
# The --output value that means standard output.
STDOUT = "-"
# How text reaches a results file: file names that are not UTF-8 keep their bytes (see the module docstring).
ENCODING, ERRORS = "utf-8", "surrogateescape"
# The first characters of a CSV cell that a spreadsheet would take for a formula (OWASP's list), and the quote that
# marks a neutralised cell (so a name that starts with a quote is quoted too, and reading is exact).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_QUOTE = "'"


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

    def start(self) -> None:  # noqa: B027 - an optional hook: most formats write nothing before the first batch
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
        self._current = False  # the file holds exactly what a rewrite would write now

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
    def render(cls, rows: list[dict], fields: tuple[str, ...]) -> bytes | None:
        """The bytes :meth:`dump` writes for ``rows``, if the format can say (then a file that already holds them is
        not written again); None (the default) means always write."""
        return None

    @classmethod
    def read_rows(cls, path: Path, *, partial: bool = False) -> list[dict]:
        """:meth:`load`, checked: every row an object with text keys; any reading problem is one :class:`CLIError`
        naming the file (a cell over the CSV field limit, JSON nested too deeply, bytes that do not decode...)."""
        try:
            rows = cls.load(path, partial=partial)
        except CLIError:
            raise
        except RecursionError:
            raise CLIError(f"cannot read {path}: its JSON is nested too deeply to be a results file") from None
        except (OSError, ValueError, csv.Error) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise CLIError(f"cannot read {path}: {exc}") from None
        if not isinstance(rows, list):
            raise CLIError(f"cannot read {path}: expected a list of rows, got {type(rows).__name__}")
        for number, row in enumerate(rows, 1):
            if not isinstance(row, dict) or not all(isinstance(key, str) for key in row):
                raise CLIError(f"cannot read {path}: row {number} is not an object of named fields (expected fields "
                               f"{', '.join(FIELDS)}), got {type(row).__name__}")
        return rows

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
        """Write every row known so far, in input order, atomically (unless the file holds them already)."""
        rows = self.table(sorted(self.rows.items()))
        if not self._holds(rows):
            self.save(rows, self.path, self.run.fields)
        self._written = time.monotonic()
        self._current = True

    def _holds(self, rows: list[dict]) -> bool:
        """Whether the file holds exactly what :meth:`dump` would write for ``rows`` (never raises)."""
        expected = self.render(rows, self.run.fields)
        try:
            return expected is not None and self.path.is_file() and self.path.read_bytes() == expected
        except OSError:
            return False

    def start(self) -> None:
        """Write the file at once, with the rows already done (none unless ``--resume``)."""
        self.rewrite()

    def add(self, items: list[tuple[int, dict]]) -> None:
        """Keep the rows; rewrite the file if the last write is :data:`REWRITE_SECONDS` old."""
        super().add(items)
        self._current = False
        if time.monotonic() - self._written >= REWRITE_SECONDS:
            self.rewrite()

    def close(self, finished: bool) -> None:
        """Write every row in input order, unless the file holds them already (finished or not)."""
        if not self._current:
            self.rewrite()


class CsvWriter(FileWriter):
    """Comma-separated values with a header row; each batch's rows are appended and flushed as they come.

    Text cells are spreadsheet-safe (a leading ``=``, ``+``, ``-``, ``@``, tab, CR or ``'`` gets a ``'`` in front,
    dropped again on reading) and file names that are not UTF-8 keep their bytes (see the module docstring).
    """

    key = ".csv"
    help = "a header row, then each batch's rows appended as they finish (spreadsheet-safe, see below)"

    def __init__(self, run: RunOutput, known: dict[int, dict]) -> None:
        super().__init__(run, known)
        self._handle: TextIO | None = None
        self._last = -1  # the largest index in the file: appending larger ones keeps it in input order

    @classmethod
    def dump(cls, rows: list[dict], path: Path, fields: tuple[str, ...]) -> None:
        """Write the header and ``rows`` to ``path`` atomically, spreadsheet-safe."""
        atomic_write_text(path, cls._format(rows, fields, header=True), newline="", encoding=ENCODING, errors=ERRORS)

    @classmethod
    def render(cls, rows: list[dict], fields: tuple[str, ...]) -> bytes:
        """The bytes :meth:`dump` writes (non-UTF-8 names as their original bytes)."""
        return cls._format(rows, fields, header=True).encode(ENCODING, ERRORS)

    @classmethod
    def load(cls, path: Path, *, partial: bool = False) -> list[dict]:
        """The rows of a CSV file, cells unquoted; with ``partial``, a last line cut short is dropped."""
        # newline="": line ends reach the parser as written; surrogateescape: the bytes of non-UTF-8 names come back
        with open(path, newline="", encoding=ENCODING, errors=ERRORS) as handle:
            text = handle.read()
        if partial and text and not text.endswith(("\n", "\r")):  # a run killed while appending: drop the cut row
            text = text[:text.rfind("\n") + 1]
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            return [{key: unquote_cell(value) for key, value in row.items()} for row in reader]
        except csv.Error as exc:  # e.g. a cell over csv.field_size_limit() (131,072 characters)
            raise ValueError(f"line {reader.reader.line_num}: {exc}") from None

    @staticmethod
    def _format(rows: list[dict], fields: tuple[str, ...], *, header: bool) -> str:
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=list(fields))
        if header:
            writer.writeheader()
        writer.writerows({key: quote_cell(value) for key, value in row.items()} for row in rows)
        return table.getvalue()

    def rewrite(self) -> None:
        """As :meth:`FileWriter.rewrite`; appending then goes on after the largest index written."""
        super().rewrite()
        self._last = max(self.rows, default=-1)

    def start(self) -> None:
        """Write the file, then keep it open for appending."""
        super().start()
        self._handle = open(self.path, "a", newline="", encoding=ENCODING, errors=ERRORS)  # noqa: SIM115 - closed in close()

    def add(self, items: list[tuple[int, dict]]) -> None:
        """Append the batch's rows and flush; the file stays final while they come in input order."""
        ResultWriter.add(self, items)
        if self._handle is not None and items:
            self._handle.write(self._format(self.table(items), self.run.fields, header=False))  # one write a batch
            self._handle.flush()
            in_order = items[0][0] > self._last and all(a[0] < b[0] for a, b in itertools.pairwise(items))
            self._current = self._current and in_order  # rows appended in input order: the file is final already
            self._last = max(self._last, items[-1][0])

    def close(self, finished: bool) -> None:
        """Close the file, then rewrite it in input order if appending left it out of order."""
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
        """Write ``rows`` as a JSON list to ``path`` atomically."""
        atomic_write_text(path, json_text(rows))

    @classmethod
    def render(cls, rows: list[dict], fields: tuple[str, ...]) -> bytes:
        """The bytes :meth:`dump` writes."""
        return json_text(rows).encode("utf-8")

    @classmethod
    def load(cls, path: Path, *, partial: bool = False) -> list[dict]:
        """The rows of a JSON file (always whole: it is replaced atomically, never appended to)."""
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
        """Print a line per pair of the batch (nothing with ``--json`` or for a single pair)."""
        super().add(items)
        if self.run.json or self.run.single:
            return
        for _, row in items:
            shown = f"{row['score']:.6f}" if row["error"] is None else "error"
            print_text(f"{row['ref']}\t{row['dist']}\t{shown}")

    def close(self, finished: bool) -> None:
        """Print the JSON document, or the single pair's score; nothing when the run did not finish."""
        if not finished:
            return
        rows = self.ordered()
        if self.run.json:
            print_text(json_text(rows[0] if self.run.single and len(rows) == 1 else rows).rstrip("\n"))
        elif self.run.single and rows and rows[0]["error"] is None:
            print_text(f"{rows[0]['score']:.6f}")
        sys.stdout.flush()


def json_text(value: object) -> str:
    """``value`` as the JSON text of every JSON output (indented, a final newline); never a bare ``NaN`` or
    ``Infinity``, which are not JSON: a non-finite number raises ``ValueError`` (``allow_nan=False``)."""
    return json.dumps(value, indent=2, allow_nan=False) + "\n"


def print_text(line: str) -> None:
    """Print ``line`` on standard output; a file name that is not UTF-8 is written as its bytes (surrogateescape)
    where the stream cannot encode it."""
    try:
        print(line, flush=True)
    except UnicodeEncodeError:
        stream = getattr(sys.stdout, "buffer", None)
        data = (line + "\n").encode(sys.stdout.encoding or ENCODING, ERRORS)
        if stream is None:  # a text-only stream: show what cannot be encoded as escapes
            print(line.encode(ENCODING, "backslashreplace").decode(ENCODING), flush=True)
            return
        sys.stdout.flush()
        stream.write(data)
        stream.flush()


def quote_cell(value: object) -> object:
    """A CSV cell as written: text that a spreadsheet would run as a formula (or that starts with the quote itself)
    gets a ``'`` in front; anything else, numbers included, is unchanged."""
    if isinstance(value, str) and value.startswith((*_FORMULA_STARTS, _QUOTE)):
        return _QUOTE + value
    return value


def unquote_cell(value: object) -> object:
    """A CSV cell as read: :func:`quote_cell` undone (one leading ``'`` dropped)."""
    return value[1:] if isinstance(value, str) and value.startswith(_QUOTE) else value


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
