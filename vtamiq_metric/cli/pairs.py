"""The pairs ``vtamiq score`` scores: one pair (``REF DIST``), two folders paired by file name, or a CSV list."""

from __future__ import annotations

import argparse
import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .common import CLIError

__all__ = ["IMAGE_SUFFIXES", "Pair", "pairs_from_args", "pairs_from_csv", "pairs_from_dirs"]

_logger = logging.getLogger(__name__)

#: The files the folder mode pairs (by suffix, any case).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


@dataclass(frozen=True)
class Pair:
    """One pair to score: the two paths as they appear in the results, or the reason the input row is unusable."""

    ref: str
    dist: str
    error: str | None = None  # a malformed --pairs row: reported and skipped, never decoded


def pairs_from_args(args: argparse.Namespace) -> tuple[list[Pair], bool]:
    """The pairs of ``vtamiq score``'s arguments and whether it is the single-pair mode.

    Raises:
        CLIError: not exactly one mode, or a mode with a missing part, folder or file.
    """
    modes = [args.ref is not None, args.ref_dir is not None or args.dist_dir is not None, args.pairs is not None]
    if sum(modes) != 1:
        raise CLIError("give exactly one of: REF DIST, --ref-dir with --dist-dir, or --pairs CSV")
    if modes[0]:
        if args.dist is None:
            raise CLIError("single-pair mode needs two images: vtamiq score REF DIST")
        return [Pair(args.ref, args.dist)], True
    if modes[1]:
        if args.ref_dir is None or args.dist_dir is None:
            raise CLIError("--ref-dir and --dist-dir go together")
        return pairs_from_dirs(args.ref_dir, args.dist_dir), False
    return pairs_from_csv(args.pairs), False


def pairs_from_dirs(ref_dir: Path, dist_dir: Path) -> list[Pair]:
    """The images of two folders with the same file name, sorted by name (the others are skipped with a warning)."""
    for folder in (ref_dir, dist_dir):
        if not folder.is_dir():
            raise CLIError(f"not a directory: {folder}")
    refs = {p.name: p for p in sorted(ref_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    dists = {p.name: p for p in sorted(dist_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    common = sorted(set(refs) & set(dists))
    if not common:
        raise CLIError(f"no file names in common between {ref_dir} and {dist_dir}")
    unpaired = sorted(set(refs) ^ set(dists))
    if unpaired:
        _logger.warning("%d files have no partner and are skipped: %s", len(unpaired), ", ".join(unpaired[:5]))
    return [Pair(str(refs[name]), str(dists[name])) for name in common]


def pairs_from_csv(path: Path) -> list[Pair]:
    """The pairs of a ``--pairs`` CSV, one per data row; a malformed row becomes a pair holding its error.

    Paths are relative to the CSV's folder. A row is malformed when it has more or fewer cells than the header, or
    an empty (or blank) ``ref`` or ``dist`` cell; blank lines are skipped. A file without a ``ref,dist`` header, one
    that is not UTF-8 text, or one the CSV reader cannot read (a cell over ``csv.field_size_limit()``, 131,072
    characters) raises :class:`CLIError` (a usage error) naming the file.
    """
    if not path.is_file():
        raise CLIError(f"pairs file not found: {path}")
    try:
        return _read_pairs_csv(path)
    except UnicodeDecodeError:
        try:  # the decoder reads in chunks: decode the whole file to name the byte's offset in it
            path.read_bytes().decode("utf-8-sig")
            offset = "?"
        except UnicodeDecodeError as exc:
            offset = str(exc.start)
        raise CLIError(f"cannot read the pairs file {path}: expected UTF-8 text, got a byte that is not UTF-8 at "
                       f"offset {offset}; save it as UTF-8") from None


def _read_pairs_csv(path: Path) -> list[Pair]:
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: a spreadsheet's byte-order mark
        reader = _CheckedReader(path, handle)
        header = next(reader, None)
        if not header or not {"ref", "dist"} <= set(header):
            raise CLIError(f"{path} must start with a header row naming the columns 'ref' and 'dist' (e.g. "
                           f"'ref,dist'), got {header}")
        columns = {"ref": header.index("ref"), "dist": header.index("dist")}
        pairs = []
        line = reader.line_num + 1  # first line of the next record (a quoted cell may span lines)
        for cells in reader:
            start, line = line, reader.line_num + 1
            if not cells:
                continue  # a blank line
            given = {name: cells[i] if i < len(cells) and cells[i].strip() else "" for name, i in columns.items()}
            ref, dist = (str(path.parent / given[name]) if given[name] else "" for name in ("ref", "dist"))
            pairs.append(Pair(ref, dist, _row_error(path, start, cells, header, given)))
        return pairs


class _CheckedReader:
    """``csv.reader`` over a pairs file whose errors (e.g. a cell over ``csv.field_size_limit()``) are a
    :class:`CLIError` naming the file and the line."""

    def __init__(self, path: Path, handle: TextIO) -> None:
        self._path = path
        self._reader = csv.reader(handle)

    @property
    def line_num(self) -> int:
        return self._reader.line_num

    def __iter__(self) -> Iterator[list[str]]:
        return self

    def __next__(self) -> list[str]:
        try:
            return next(self._reader)
        except csv.Error as exc:
            raise CLIError(f"cannot read the pairs file {self._path} at line {self._reader.line_num}: "
                           f"{exc}") from None


def _row_error(path: Path, line: int, cells: list[str], header: list[str], given: dict[str, str]) -> str | None:
    """Why a data row of a pairs CSV is unusable, or None."""
    if len(cells) != len(header):
        error = f"expected {len(header)} cells ({','.join(header)}), got {len(cells)}"
    else:
        empty = [name for name in ("ref", "dist") if not given[name]]
        if not empty:
            return None
        error = f"the {empty[0]!r} cell is empty" if len(empty) == 1 else "the 'ref' and 'dist' cells are empty"
    return f"{path.name} line {line}: {error}"
