"""The pairs ``vtamiq score`` scores: one pair (``REF DIST``), two folders (each distorted file with the reference of
the same name, or of the longest stem that begins its name), or a CSV list."""

from __future__ import annotations

import argparse
import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .common import CLIError

__all__ = ["IMAGE_SUFFIXES", "Pair", "pairs_csv_advice", "pairs_from_args", "pairs_from_csv", "pairs_from_dirs"]

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
    """The pairs of two folders: each distorted image with its reference, sorted by the distorted file's name.

    A distorted file's reference is the file of the same name in ``ref_dir``; failing that, the reference whose stem
    begins the distorted file's name, the longest such stem if several do (``R/coffee.png`` for ``D/coffee_blur1.png``
    and ``D/coffee_jpeg10.png``; ``I10.png`` rather than ``I1.png`` for ``I10_03.png``). Distorted files without a
    reference are skipped with a warning, as are references without a distorted file.

    Raises:
        CLIError: a folder is missing; no distorted file has a reference; or a distorted file matches two
            references equally (two stems of the same length, e.g. ``coffee.png`` and ``coffee.jpg``). The message
            shows how to write a ``--pairs`` CSV instead.
    """
    for folder in (ref_dir, dist_dir):
        if not folder.is_dir():
            raise CLIError(f"not a directory: {folder}")
    refs = {p.name: p for p in sorted(ref_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    dists = [p for p in sorted(dist_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    by_stem: dict[str, list[Path]] = {}
    for path in refs.values():
        by_stem.setdefault(path.stem, []).append(path)
    pairs: list[Pair] = []
    unmatched: list[str] = []
    ambiguous: list[tuple[Path, list[Path]]] = []
    for dist in dists:
        if dist.name in refs:  # the same name: always this reference
            pairs.append(Pair(str(refs[dist.name]), str(dist)))
            continue
        stems = [stem for stem in by_stem if dist.stem.startswith(stem)]
        if not stems:
            unmatched.append(dist.name)
            continue
        longest = max(len(stem) for stem in stems)
        candidates = [path for stem in stems if len(stem) == longest for path in by_stem[stem]]
        if len(candidates) > 1:
            ambiguous.append((dist, candidates))
            continue
        pairs.append(Pair(str(candidates[0]), str(dist)))
    if ambiguous:
        listed = "; ".join(f"{dist.name} could be {' or '.join(p.name for p in candidates)}"
                           for dist, candidates in ambiguous[:5])
        more = f" (and {len(ambiguous) - 5} more)" if len(ambiguous) > 5 else ""
        dist, candidates = ambiguous[0]
        raise CLIError(f"{len(ambiguous)} file(s) in {dist_dir} match two references equally: {listed}{more}. "
                       + pairs_csv_advice(candidates[0], dist))
    if not pairs:
        example = (next(iter(refs.values()), ref_dir / "coffee.png"), dists[0] if dists else dist_dir / "coffee_x.png")
        raise CLIError(f"no file in {dist_dir} has a reference in {ref_dir}: a distorted file is paired with the "
                       f"reference of the same name, or with the one whose name (without suffix) begins its own, as "
                       f"coffee.png for coffee_blur1.png. " + pairs_csv_advice(*example))
    if unmatched:
        _logger.warning("%d file(s) in %s have no reference in %s and are skipped: %s", len(unmatched), dist_dir,
                        ref_dir, ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else ""))
    unused = sorted(set(refs) - {Path(pair.ref).name for pair in pairs})
    if unused:
        _logger.warning("%d reference(s) in %s have no distorted file and are skipped: %s", len(unused), ref_dir,
                        ", ".join(unused[:5]) + (" ..." if len(unused) > 5 else ""))
    return pairs


def pairs_csv_advice(ref: Path, dist: Path) -> str:
    """How to list the pairs by hand: a ``--pairs`` CSV with a ``ref,dist`` header, one example row."""
    return (f"List the pairs in a CSV instead and pass it with --pairs: a header line 'ref,dist', then one line per "
            f"pair with the two paths (relative to the CSV's folder), e.g. '{ref.as_posix()},{dist.as_posix()}'")


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
