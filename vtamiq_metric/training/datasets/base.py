"""Records, the dataset base classes and the file helpers shared by every dataset reader.

A reader opens one dataset in its *official* on-disk layout (``docs/background/datasets.md`` §1), checks at open time
that every referenced image exists, and exposes one immutable record per image pair:

- :class:`IQARecord` for datasets with per-image labels (LIVE, CSIQ, TID2013, KADID-10k, KADIS-700k, PIPAL, the
  PieAPP test set, generic CSV);
- :class:`PairwiseRecord` for the PieAPP training triplets (probability that A is preferred over B).

Conventions shared by all readers:

- File names are resolved **case-insensitively** through a per-directory ``{lower(name): real name}`` index (TID2013
  and CSIQ ship names whose case differs from their label files; the reference code only worked on Windows). An
  exact-case match always wins; two entries that differ only in case and match neither exactly are an error.
- Paths in records are absolute (the root is resolved once) and point at files that existed when the dataset was
  opened. Images are not decoded unless ``validate_images=True``; decoding errors otherwise surface when the trainer
  loads the image.
- Missing or unreadable files raise ``FileNotFoundError``/``ValueError`` naming the files and the label file that
  referenced them. ``skip_missing=True`` drops such pairs with a warning instead (useful on partial copies).
- Targets are computed once on *all* labelled pairs of the dataset (:func:`.targets.process_scores`) before any
  missing-file skipping or :meth:`subset`, so a subset keeps the targets of the full dataset, as in the reference code.
- :meth:`ref_ids` lists reference identities in *natural* order (digit runs compare as numbers: ``I2`` < ``I10``),
  independent of directory listing order; records keep the order of the label file(s).

Readers have the same shape on purpose: each declares ``name``, ``higher_is_better`` and ``layout``, documents the
shared ``linearize``/``validate_images``/``skip_missing`` arguments in its own docstring and implements ``_read``, so
that one file tells everything about one dataset (the ``duplicates`` tool lists these declarations as same-shape).
"""

from __future__ import annotations

import copy
import csv
import logging
import os
import re
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar, overload

import numpy as np

from .targets import process_scores

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "IQADataset",
    "IQARecord",
    "PairwiseDataset",
    "PairwiseRecord",
    "natural_key",
]

_logger = logging.getLogger(__name__)

_MAX_LISTED = 10  # how many offending names an error message lists before "and N more"


def natural_key(text: str) -> tuple[tuple[object, ...], str]:
    """Sort key that compares digit runs as numbers (``"I2" < "I10"``, ``"ref_9" < "ref_10"``).

    Args:
        text: any string.

    Returns:
        A key usable with ``sorted(..., key=natural_key)``; ties between equal numbers with different zero padding are
        broken by the raw string, so the order is total and deterministic.
    """
    parts = re.split(r"(\d+)", text)
    # re.split with one capture group alternates text (even index) and digits (odd index), so types line up.
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), text


# ----------------------------------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------------------------------


def _check_unit(value: float, what: str) -> None:
    if not isinstance(value, (float, int)) or isinstance(value, bool):
        raise TypeError(f"expected {what} as a float, got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"expected {what} in [0, 1], got {value}")


@dataclass(frozen=True, slots=True)
class IQARecord:
    """One (reference, distorted) image pair with its label.

    Attributes:
        ref: absolute path of the reference image (existed when the dataset was opened).
        dist: absolute path of the distorted image.
        score: the raw label as published (MOS, DMOS, ELO, VSI, ...); its direction is the dataset's
            ``higher_is_better``.
        target: the training target in ``[0, 1]``, **0 = best quality** (see :mod:`.targets`).
        ref_id: identity of the reference image; splits group records by it.
        dist_type: distortion type as named by the dataset (e.g. ``"jpeg"`` or a two-digit type id), if known.
        level: distortion level, if the dataset defines one.
    """

    ref: Path
    dist: Path
    score: float
    target: float
    ref_id: str
    dist_type: str | None = None
    level: int | None = None

    def __post_init__(self) -> None:
        _check_unit(self.target, "target")
        if not np.isfinite(self.score):
            raise ValueError(f"expected a finite score, got {self.score} for {self.dist}")


@dataclass(frozen=True, slots=True)
class PairwiseRecord:
    """One PieAPP training triplet.

    Attributes:
        ref: absolute path of the reference image.
        dist_a: absolute path of distorted image A.
        dist_b: absolute path of distorted image B.
        prob_a: probability in ``[0, 1]`` that A is preferred over B, i.e. that A has the *lower* distortion.
        ref_id: identity of the reference image; splits group records by it.
    """

    ref: Path
    dist_a: Path
    dist_b: Path
    prob_a: float
    ref_id: str

    def __post_init__(self) -> None:
        _check_unit(self.prob_a, "prob_a")


# ----------------------------------------------------------------------------------------------------------------------
# File helpers
# ----------------------------------------------------------------------------------------------------------------------


class PathResolver:
    """Case-insensitive path lookup below a root folder, one cached directory listing per folder.

    Args:
        root: an existing folder; relative paths are looked up below it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._listings: dict[Path, dict[str, list[tuple[str, bool]]] | None] = {}

    def _listing(self, folder: Path) -> dict[str, list[tuple[str, bool]]] | None:
        if folder not in self._listings:
            try:
                index: dict[str, list[tuple[str, bool]]] = {}
                with os.scandir(folder) as it:
                    for entry in it:
                        index.setdefault(entry.name.lower(), []).append((entry.name, entry.is_dir()))
                self._listings[folder] = index
            except (FileNotFoundError, NotADirectoryError):
                self._listings[folder] = None
        return self._listings[folder]

    def _child(self, folder: Path, name: str, want_dir: bool) -> Path | None:
        listing = self._listing(folder)
        if listing is None:
            return None
        candidates = [real for real, is_dir in listing.get(name.lower(), ()) if is_dir == want_dir]
        if not candidates:
            return None
        if name in candidates:
            return folder / name
        if len(candidates) > 1:
            raise ValueError(
                f"ambiguous file name: expected one entry matching {name!r} case-insensitively in {folder}, "
                f"got {sorted(candidates)}"
            )
        return folder / candidates[0]

    def find(self, path: str | PurePath, *, base: Path | None = None, directory: bool = False) -> Path | None:
        r"""Resolve ``path`` case-insensitively.

        Args:
            path: a relative path (``/`` or ``\\`` separated) below ``base`` (default: the root), or an absolute path
                (checked as is, case-sensitively).
            base: folder to resolve relative paths against.
            directory: look for a folder instead of a file.

        Returns:
            The real path, or None if it does not exist.
        """
        text = str(path)
        if os.path.isabs(text):
            p = Path(text)
            return p if (p.is_dir() if directory else p.is_file()) else None
        parts = [p for p in re.split(r"[\\/]+", text) if p not in ("", ".")]
        if not parts:
            return None
        folder = self.root if base is None else base
        for i, part in enumerate(parts):
            if part == "..":
                folder = folder.parent
                continue
            last = i == len(parts) - 1
            found = self._child(folder, part, want_dir=directory or not last)
            if found is None:
                return None
            folder = found
        return folder

    def list_files(self, folder: Path, suffix: str) -> list[Path]:
        """Files of ``folder`` whose name ends with ``suffix`` (case-insensitive), in natural order."""
        listing = self._listing(folder) or {}
        names = [real for entries in listing.values() for real, is_dir in entries if not is_dir]
        return [folder / n for n in sorted(names, key=natural_key) if n.lower().endswith(suffix.lower())]


class MissingFiles:
    """Collects the files a label file refers to that do not exist, then reports them all at once.

    Args:
        dataset: dataset name for messages.
        root: dataset root for messages.
    """

    def __init__(self, dataset: str, root: Path) -> None:
        self.dataset = dataset
        self.root = root
        self._items: dict[str, str] = {}  # missing path -> first label file that referenced it

    def add(self, path: str, source: str | Path) -> None:
        """Record ``path`` (relative to the root, as expected) as missing, referenced by ``source``."""
        self._items.setdefault(path, str(source))

    def __bool__(self) -> bool:
        return bool(self._items)

    def message(self) -> str:
        """A message naming the first missing files, grouped by the label file that referenced them."""
        by_source: dict[str, list[str]] = {}
        for path, source in list(self._items.items())[:_MAX_LISTED]:
            by_source.setdefault(source, []).append(path)
        shown = "; ".join(f"listed in {src}: {', '.join(paths)}" for src, paths in by_source.items())
        more = f"; and {len(self._items) - _MAX_LISTED} more" if len(self._items) > _MAX_LISTED else ""
        return (
            f"{self.dataset}: {len(self._items)} image file(s) missing below {self.root} (expected by the label "
            f"file(s); names are matched case-insensitively), {shown}{more}"
        )

    def raise_if_any(self) -> None:
        """Raise FileNotFoundError naming the missing files, if any."""
        if self._items:
            raise FileNotFoundError(self.message())


def resolve_root(root: str | Path, dataset: str, layout_hint: str) -> Path:
    """Return ``root`` as an absolute existing folder or raise FileNotFoundError with the expected layout."""
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"{dataset}: expected the dataset root as str or Path, got {type(root).__name__}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"{dataset}: expected the dataset folder ({layout_hint}), got {str(path)!r}, which is "
            "not an existing folder"
        )
    return path.resolve()


def require(resolver: PathResolver, rel: str, dataset: str, *, directory: bool = False, hint: str = "") -> Path:
    """Resolve a file or folder the layout cannot do without, or raise FileNotFoundError naming it."""
    found = resolver.find(rel, directory=directory)
    if found is None:
        kind = "folder" if directory else "file"
        extra = f" ({hint})" if hint else ""
        raise FileNotFoundError(f"{dataset}: expected the {kind} {rel!r} below {resolver.root}{extra}, not found")
    return found


def parse_float(text: str, *, source: str | Path, line: int, column: str) -> float:
    """Parse a finite float from a label file cell, or raise ValueError naming the file, line and column."""
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ValueError(f"{source}: line {line}: expected a number in column {column!r}, got {text!r}") from None
    if not np.isfinite(value):
        raise ValueError(f"{source}: line {line}: expected a finite number in column {column!r}, got {text!r}")
    return value


def parse_int(text: str, *, source: str | Path, line: int, column: str) -> int:
    """Parse an integer (``"3"`` or ``"3.0"``) from a label file cell, or raise ValueError naming the file and line."""
    value = parse_float(text, source=source, line=line, column=column)
    if not value.is_integer():
        raise ValueError(f"{source}: line {line}: expected an integer in column {column!r}, got {text!r}")
    return int(value)


def iter_csv_rows(path: Path) -> Iterator[list[str]]:
    """Yield the rows of a CSV label file as lists of stripped cells (BOM and CRLF tolerant), blank rows included.

    Row ``i`` (0-based) is line ``i + 1`` of a file without quoted line breaks.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for row in csv.reader(fh):
                yield [cell.strip() for cell in row]
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: expected a UTF-8 text CSV file, got undecodable bytes ({err})") from err
    except csv.Error as err:
        raise ValueError(f"{path}: expected a well-formed CSV file, got a parse error: {err}") from err


def read_csv_rows(path: Path) -> list[list[str]]:
    """All rows of a small CSV label file (see :func:`iter_csv_rows`)."""
    return list(iter_csv_rows(path))


def header_index(header: Sequence[str], required: Sequence[str], source: Path) -> dict[str, int]:
    """Map lower-cased, stripped header names to column indices; raise ValueError if a required one is absent."""
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        index.setdefault(name.strip().strip('"').lower(), i)
    missing = [c for c in required if c not in index]
    if missing:
        raise ValueError(f"{source}: expected header columns {list(required)}, got {list(header)} (missing {missing})")
    return index


def check_images(paths: Iterable[Path], dataset: str) -> None:
    """Decode every image once, with the decoder training uses (:func:`vtamiq_metric._validation.load_image`); raise
    ValueError naming the undecodable files."""
    from ..._validation import load_image

    bad: list[str] = []
    for path in paths:
        try:
            load_image(path)
        except (OSError, ValueError) as err:
            bad.append(f"{path} ({err.__cause__ or err})")  # Pillow's reason, when there is one
    if bad:
        more = f"; and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        raise ValueError(
            f"{dataset}: expected decodable images, got {len(bad)} unreadable: {'; '.join(bad[:_MAX_LISTED])}{more}"
        )


@dataclass(frozen=True, slots=True)
class LabelledPair:
    """A pair as read from a label file, before targets exist. ``ref``/``dist`` are None when the file is missing."""

    ref: Path | None
    dist: Path | None
    score: float
    ref_id: str
    dist_type: str | None = None
    level: int | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Dataset base classes
# ----------------------------------------------------------------------------------------------------------------------

R = TypeVar("R", IQARecord, PairwiseRecord)


class _RecordDataset(Sequence[R], Generic[R]):
    """Immutable sequence of records with reference-grouping helpers (shared by both dataset kinds)."""

    name: ClassVar[str]
    higher_is_better: ClassVar[bool]
    root: Path
    records: list[R]

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> R: ...

    @overload
    def __getitem__(self, index: slice) -> list[R]: ...

    def __getitem__(self, index: int | slice) -> R | list[R]:
        return self.records[index]

    def __iter__(self) -> Iterator[R]:
        return iter(self.records)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, pairs={len(self)}, refs={len(self.ref_ids())})"

    def ref_ids(self) -> list[str]:
        """Unique reference identities of the records, in natural order (see :func:`natural_key`)."""
        return sorted({r.ref_id for r in self.records}, key=natural_key)

    def subset(self, ref_ids: Iterable[str]) -> Self:
        """A copy holding only the records of the given references (targets unchanged, record order kept).

        Args:
            ref_ids: reference identities, each present in this dataset; may be empty.

        Returns:
            A dataset of the same class and settings with the selected records.

        Raises:
            TypeError: ``ref_ids`` is a single string.
            ValueError: an id is not a reference of this dataset.
        """
        if isinstance(ref_ids, str):
            raise TypeError(f"expected an iterable of reference ids, got the single string {ref_ids!r}")
        wanted = set(ref_ids)
        known = {r.ref_id for r in self.records}
        unknown = sorted(wanted - known, key=natural_key)
        if unknown:
            raise ValueError(
                f"{self.name}: expected reference ids of this dataset, got {len(unknown)} unknown: "
                f"{unknown[:_MAX_LISTED]}"
            )
        new = copy.copy(self)
        new.records = [r for r in self.records if r.ref_id in wanted]
        return new


class IQADataset(_RecordDataset[IQARecord]):
    """A dataset of (reference, distorted, label) pairs; subclasses read one official layout each.

    Subclasses set ``name``, ``higher_is_better`` and ``layout`` and implement :meth:`_read`, which returns one
    :class:`LabelledPair` per labelled image (with ``None`` paths for missing files, reported through
    ``self._missing``). This base class computes targets, drops or reports missing files and optionally decodes images.

    Args:
        root: dataset folder in its official layout.
        linearize: apply smooth histogram equalisation to the targets (the paper's setting for the IQA datasets).
        validate_images: decode every image once at open time and report undecodable files by name.
        skip_missing: drop pairs whose images are missing (with a warning) instead of raising FileNotFoundError.

    Attributes:
        records: one :class:`IQARecord` per pair, in label-file order.
        root: the absolute dataset folder.
        linearize: whether targets were histogram-equalised.
    """

    layout: ClassVar[str] = ""

    def __init__(
        self,
        root: str | Path,
        *,
        linearize: bool = True,
        validate_images: bool = False,
        skip_missing: bool = False,
    ) -> None:
        if not isinstance(linearize, bool):
            raise TypeError(f"{self.name}: expected linearize as a bool, got {type(linearize).__name__}")
        self.root = resolve_root(root, self.name, self.layout)
        self.linearize = linearize
        self._resolver = PathResolver(self.root)
        self._missing = MissingFiles(self.name, self.root)
        pairs = self._read()
        missing = self._missing
        del self._resolver, self._missing  # only needed while reading; the listings can be large (KADIS-700k)
        if not pairs:
            raise ValueError(f"{self.name}: expected at least one labelled image pair below {self.root}, got none")
        if missing and not skip_missing:
            missing.raise_if_any()
        # Targets come from all labelled pairs, before dropping pairs with missing files (see the module docstring).
        targets = self._targets(np.array([p.score for p in pairs], dtype=np.float64))
        self.records = [
            IQARecord(p.ref, p.dist, p.score, float(t), p.ref_id, p.dist_type, p.level)
            for p, t in zip(pairs, targets, strict=True)
            if p.ref is not None and p.dist is not None
        ]
        if missing:
            if not self.records:
                raise FileNotFoundError(missing.message())
            _logger.warning(
                "%s (skip_missing=True: %d of %d pairs dropped)",
                missing.message(),
                len(pairs) - len(self.records),
                len(pairs),
            )
        if validate_images:
            check_images(sorted({r.ref for r in self.records} | {r.dist for r in self.records}), self.name)
        _logger.info("%s: %d pairs, %d references from %s", self.name, len(self), len(self.ref_ids()), self.root)

    @abstractmethod
    def _read(self) -> list[LabelledPair]:
        """Parse the label file(s), resolve every image (missing ones go to ``self._missing``) and return the pairs."""

    def _targets(self, scores: np.ndarray) -> np.ndarray:
        """Targets in [0, 1], 0 = best, from the raw scores of all labelled pairs."""
        return process_scores(scores, higher_is_better=self.higher_is_better, linearize=self.linearize)

    def _find(self, rel: str, source: str | Path, *, base: Path | None = None) -> Path | None:
        """Resolve an image path case-insensitively; record it as missing (and return None) if absent."""
        found = self._resolver.find(rel, base=base)
        if found is None:
            shown = rel if base is None else str(Path(os.path.relpath(base, self.root)) / rel)
            self._missing.add(shown, source)
        return found

    def scores(self) -> np.ndarray:
        """Raw labels of the records, float64 ``(N,)``."""
        return np.array([r.score for r in self.records], dtype=np.float64)

    def targets(self) -> np.ndarray:
        """Training targets of the records, float64 ``(N,)`` in ``[0, 1]``, 0 = best."""
        return np.array([r.target for r in self.records], dtype=np.float64)


class PairwiseDataset(_RecordDataset[PairwiseRecord]):
    """A dataset of (reference, A, B, P(A preferred)) triplets; see :class:`.pieapp.PieAPPPairwiseDataset`.

    Attributes:
        records: one :class:`PairwiseRecord` per triplet.
        root: the absolute dataset folder.
    """

    def probabilities(self) -> np.ndarray:
        """``prob_a`` of the records, float64 ``(N,)`` in ``[0, 1]``."""
        return np.array([r.prob_a for r in self.records], dtype=np.float64)
