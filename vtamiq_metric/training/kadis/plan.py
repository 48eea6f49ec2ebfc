"""What a KADIS run will do: its settings (:class:`KadisSettings`) and one task per reference (:func:`plan`).

Planning reads only the reference folder and the optional ``kadis700k_ref_imgs.csv``; it writes nothing. The tasks
are sorted by reference file name, so that shards (``k % n == i``) and resumed runs agree on who does what.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..distortions import DISTORTION_TYPES, EXTRA_DISTORTIONS
from ..labels import LABELS
from ..seeds import KADIS_TYPE_IDS, kadis_extra_type_rng, kadis_type_rng

__all__ = ["ALL_LEVELS", "DEFAULT_SKIP_TYPES", "DIST_DIR", "REF_EXTENSIONS", "KadisSettings", "RefTask", "plan"]

_logger = logging.getLogger(__name__)

REF_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
"""Reference file extensions that are picked up from ``refs`` (compared case-insensitively)."""
DIST_DIR = "dist_imgs"
DEFAULT_SKIP_TYPES = (15,)
"""Types left out by default: 15 (denoise), which VTAMIQ skipped and our port only approximates."""
ALL_LEVELS = (1, 2, 3, 4, 5)

_JOURNAL_FORMAT = 1


def _is_int(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def _normalise_ints(values: Iterable[int], what: str, valid: Iterable[int]) -> tuple[int, ...]:
    valid_set = set(valid)
    result: list[int] = []
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"expected {what} as a sequence of ints, got {type(values).__name__} {values!r}")
    for value in values:
        if not _is_int(value):
            raise TypeError(f"expected {what} as ints, got {type(value).__name__} {value!r}")
        if int(value) not in valid_set:
            raise ValueError(f"expected {what} in {min(valid_set)}..{max(valid_set)}, got {value}")
        if int(value) not in result:
            result.append(int(value))
    return tuple(sorted(result))


@dataclass(frozen=True)
class KadisSettings:
    """What KADIS generation produces: every setting of :func:`.generate_kadis` and :func:`.merge_kadis` that
    changes the output (where and how fast it runs are arguments of those functions).

    Values are checked and normalised when the settings are made: ``levels``, ``skip_types``, ``extra_types`` become
    sorted tuples of distinct ints, ``labels`` a tuple of distinct names.

    Attributes:
        ref_csv: KADIS-700k's ``kadis700k_ref_imgs.csv``; column 2 gives each listed reference its type. Without it,
            types are drawn per reference with ``seed``.
        seed: non-negative global seed for type draws and distortion randomness.
        types_per_ref: distinct types drawn per reference when ``ref_csv`` is None (KADIS: 1), from the 25 KADIS
            types (:data:`vtamiq_metric.training.seeds.KADIS_TYPE_IDS`) less ``skip_types``.
        extra_types: our additional types (ids of :data:`vtamiq_metric.training.distortions.EXTRA_DISTORTIONS`, 26
            and up) given to every reference on top of its KADIS types; empty (the default) generates KADIS only,
            exactly as before these types existed.
        extra_types_per_ref: draw this many of ``extra_types`` (less ``skip_types``) per reference instead of giving
            it all of them, from a stream of their own (:func:`vtamiq_metric.training.seeds.kadis_extra_type_rng`),
            so the KADIS types drawn stay the same; None (the default) gives every reference all of them.
        levels: levels to generate, each in 1..5.
        labels: label names from :data:`vtamiq_metric.training.labels.LABELS` (may be empty: images only).
        skip_types: type ids never generated (default: 15, denoise).
        limit: process only the first ``limit`` references (sorted by file name).
        png_compress_level: zlib level 0..9 of the PNG files (speed vs. size; pixels are lossless either way).

    Raises:
        TypeError: a wrongly typed value.
        ValueError: a value out of range, an unknown label, ``types_per_ref`` other than 1 with ``ref_csv``, or
            ``extra_types_per_ref`` without ``extra_types`` or larger than their number.
    """

    ref_csv: Path | None = None
    seed: int = 0
    types_per_ref: int = 1
    levels: tuple[int, ...] = ALL_LEVELS
    labels: tuple[str, ...] = ("vsi",)
    skip_types: tuple[int, ...] = DEFAULT_SKIP_TYPES
    limit: int | None = None
    png_compress_level: int = 1
    extra_types: tuple[int, ...] = ()
    extra_types_per_ref: int | None = None

    def __post_init__(self) -> None:
        if self.ref_csv is not None:
            object.__setattr__(self, "ref_csv", Path(os.fspath(self.ref_csv)))
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"expected seed as a non-negative int, got {self.seed!r}")
        if not _is_int(self.types_per_ref):
            raise TypeError(f"expected types_per_ref as an int, got {type(self.types_per_ref).__name__}")
        if self.ref_csv is not None and self.types_per_ref != 1:
            raise ValueError(f"expected types_per_ref=1 with ref_csv (the CSV assigns the types), got "
                             f"{self.types_per_ref}")
        levels = _normalise_ints(self.levels, "levels", ALL_LEVELS)
        if not levels:
            raise ValueError("expected at least one level in 1..5, got none")
        skip_types = _normalise_ints(self.skip_types, "skip_types", DISTORTION_TYPES)
        extra_types = _normalise_ints(self.extra_types, "extra_types", EXTRA_DISTORTIONS)
        if self.extra_types_per_ref is not None:
            if not _is_int(self.extra_types_per_ref):
                raise TypeError(f"expected extra_types_per_ref as an int or None, got "
                                f"{type(self.extra_types_per_ref).__name__}")
            if not extra_types:
                raise ValueError("expected extra_types (the pool to draw from) with extra_types_per_ref, got none")
            if not 1 <= self.extra_types_per_ref <= len(extra_types):
                raise ValueError(f"expected extra_types_per_ref in 1..{len(extra_types)} (the number of extra_types), "
                                 f"got {self.extra_types_per_ref}")
            object.__setattr__(self, "extra_types_per_ref", int(self.extra_types_per_ref))
        if isinstance(self.labels, str):
            raise TypeError(f"expected labels as a sequence of names, got the string {self.labels!r}")
        labels = tuple(dict.fromkeys(self.labels))
        unknown = [name for name in labels if name not in LABELS]
        if unknown:
            raise ValueError(f"unknown label(s) {unknown}; expected names among {sorted(LABELS)}")
        if self.limit is not None and (not _is_int(self.limit) or self.limit < 1):
            raise ValueError(f"expected limit as a positive int or None, got {self.limit!r}")
        if not _is_int(self.png_compress_level):
            raise TypeError(f"expected png_compress_level as an int, got {type(self.png_compress_level).__name__}")
        if not 0 <= self.png_compress_level <= 9:
            raise ValueError(f"expected png_compress_level in 0..9, got {self.png_compress_level}")
        for name, value in (("seed", int(self.seed)), ("types_per_ref", int(self.types_per_ref)), ("levels", levels),
                            ("skip_types", skip_types), ("extra_types", extra_types), ("labels", labels)):
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class RefTask:
    """Everything a worker needs to distort and label one reference."""

    name: str  # reference file name, e.g. "a-fleshy-plant-1464418.png"
    path: str  # absolute path of the reference
    types: tuple[int, ...]
    levels: tuple[int, ...]
    labels: tuple[str, ...]
    seed: int
    dist_dir: str
    png_compress_level: int

    @property
    def stem(self) -> str:
        """The reference's name up to its first ``.`` (the prefix of its distorted images' names)."""
        return self.name.split(".", 1)[0]

    def key(self) -> dict:
        """Settings that determine this reference's outputs; a journal record is reused only if they match.

        ``types`` holds the KADIS types and the additional ones, so the key covers ``extra_types`` and
        ``extra_types_per_ref``: a run that asks for other additional types redoes the references whose types change.
        Without additional types the key is what it was before they existed, so older journals still resume.
        """
        return {
            "format": _JOURNAL_FORMAT,
            "ref": self.name,
            "types": list(self.types),
            "levels": list(self.levels),
            "labels": list(self.labels),
            "seed": self.seed,
        }

    def dist_name(self, type_id: int, level: int) -> str:
        """The file name of the reference's image of ``type_id`` at ``level``: ``<stem>_TT_LL.png``."""
        return f"{self.stem}_{type_id:02d}_{level:02d}.png"


def _draw_types(seed: int, ref_name: str, pool: Sequence[int], count: int) -> tuple[int, ...]:
    """``count`` distinct types for one reference, drawn from ``pool`` (frozen: see :mod:`..seeds`)."""
    rng = kadis_type_rng(seed, ref_name)
    return tuple(sorted(int(t) for t in rng.choice(np.asarray(pool), size=count, replace=False)))


def _draw_extra_types(seed: int, ref_name: str, pool: Sequence[int], count: int | None) -> tuple[int, ...]:
    """The additional types of one reference: all of ``pool`` (``count`` None), or ``count`` of them drawn from the
    stream of :func:`..seeds.kadis_extra_type_rng` (frozen), which leaves the KADIS draw of :func:`_draw_types`
    alone."""
    if count is None:
        return tuple(pool)
    rng = kadis_extra_type_rng(seed, ref_name)
    return tuple(sorted(int(t) for t in rng.choice(np.asarray(pool), size=count, replace=False)))


def _list_references(refs: Path) -> dict[str, Path]:
    """Reference images directly inside ``refs`` (no recursion, hidden files ignored), by file name."""
    found = {
        p.name: p
        for p in refs.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in REF_EXTENSIONS
    }
    return dict(sorted(found.items()))


def _read_ref_csv(path: Path) -> dict[str, list[int]]:
    """Parse ``kadis700k_ref_imgs.csv``: reference name -> type ids from column 2 (column 3 is ignored)."""
    types: dict[str, list[int]] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for line_number, row in enumerate(csv.reader(handle), start=1):
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if line_number == 1 and cells[0].lower() == "ref_im":
                continue
            if len(cells) < 2 or not cells[0] or not cells[1]:
                raise ValueError(
                    f"{path}: line {line_number}: expected 'ref_im,dist_type_1[,dist_type_2]' with a reference name "
                    f"and a type id, got {','.join(row)!r}"
                )
            try:
                type_id = int(float(cells[1]))
            except ValueError:
                raise ValueError(
                    f"{path}: line {line_number}: expected an integer distortion type id in column 2, got {cells[1]!r}"
                ) from None
            if type_id not in DISTORTION_TYPES:
                raise ValueError(f"{path}: line {line_number}: expected a distortion type id in "
                                 f"{min(DISTORTION_TYPES)}..{max(DISTORTION_TYPES)}, got {type_id}")
            entry = types.setdefault(cells[0], [])
            if type_id not in entry:
                entry.append(type_id)
    if not types:
        raise ValueError(f"{path}: expected at least one 'ref_im,dist_type_1' row, got none")
    return types


def _check_stems(names: Iterable[str]) -> None:
    """Raise if two references share the part of their name before the first '.', which names the outputs."""
    by_stem: dict[str, list[str]] = {}
    for name in names:
        by_stem.setdefault(name.split(".", 1)[0], []).append(name)
    clashes = [group for group in by_stem.values() if len(group) > 1]
    if clashes:
        shown = "; ".join(", ".join(group) for group in clashes[:5])
        raise ValueError(
            "expected reference names that differ before their first '.', which names the distorted images; "
            f"got clashes: {shown}"
        )


def _assigned_types(refs_dir: Path, ref_csv: Path, available: dict[str, Path],
                    skip_types: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """The types ``ref_csv`` assigns to each reference it lists (skipped types removed; case-insensitive names)."""
    by_lower = {name.lower(): name for name in available}
    assignments: dict[str, tuple[int, ...]] = {}
    skipped = 0
    missing = []
    for name, type_ids in _read_ref_csv(ref_csv).items():
        kept = tuple(t for t in type_ids if t not in skip_types)
        if not kept:
            skipped += 1
            continue
        real = name if name in available else by_lower.get(name.lower())
        if real is None:
            missing.append(name)
            continue
        assignments[real] = tuple(sorted(kept))
    if skipped:
        _logger.info("%d reference(s) of %s have only skipped types %s", skipped, ref_csv, list(skip_types))
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} reference(s) listed in {ref_csv} are not in {refs_dir} (expected image files with "
            f"these names, e.g. {', '.join(missing[:5])})"
        )
    return assignments


def plan(refs: str | os.PathLike, out: str | os.PathLike, settings: KadisSettings) -> list[RefTask]:
    """The sorted list of per-reference tasks of a run.

    Args:
        refs: folder of pristine reference images (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, any case; not recursive).
        out: the output folder (nothing is written here).
        settings: what to generate.

    Returns:
        One :class:`RefTask` per reference, sorted by file name (after ``settings.limit``).

    Raises:
        FileNotFoundError: ``refs`` or ``ref_csv`` does not exist, or ``ref_csv`` lists missing references.
        ValueError: a malformed ``ref_csv``, no references, ``types_per_ref`` or ``extra_types_per_ref`` larger than
            its pool of types (after ``skip_types``), or references whose names clash before the first '.'.
    """
    refs_dir = Path(refs)
    if not refs_dir.is_dir():
        raise FileNotFoundError(f"expected refs to be an existing folder of reference images, got {str(refs_dir)!r}")
    if settings.ref_csv is not None and not settings.ref_csv.is_file():
        raise FileNotFoundError(f"expected ref_csv to be an existing CSV file, got {str(settings.ref_csv)!r}")
    available = _list_references(refs_dir)
    pool = [t for t in KADIS_TYPE_IDS if t not in settings.skip_types]  # frozen: never the types added later
    extra_pool = [t for t in settings.extra_types if t not in settings.skip_types]
    if settings.extra_types and not extra_pool:
        raise ValueError(f"expected extra_types that are not all in skip_types, got extra_types "
                         f"{list(settings.extra_types)} and skip_types {list(settings.skip_types)}")
    if (settings.extra_types_per_ref or 0) > len(extra_pool):
        raise ValueError(f"expected extra_types_per_ref in 1..{len(extra_pool)} (extra_types not skipped), got "
                         f"{settings.extra_types_per_ref}")
    if settings.ref_csv is not None:
        assignments = _assigned_types(refs_dir, settings.ref_csv, available, settings.skip_types)
        names = sorted(assignments)
    else:
        if not 1 <= settings.types_per_ref <= len(pool):
            raise ValueError(f"expected types_per_ref in 1..{len(pool)} (types not skipped), got "
                             f"{settings.types_per_ref}")
        names = list(available)
        assignments = {}
    if not names:
        raise ValueError(f"no reference images ({', '.join(REF_EXTENSIONS)}) to process in {refs_dir}")
    if settings.limit is not None:
        names = names[:settings.limit]
    _check_stems(names)
    dist_dir = str(Path(out) / DIST_DIR)
    tasks = []
    for name in names:
        types = assignments[name] if settings.ref_csv is not None else _draw_types(settings.seed, name, pool,
                                                                                     settings.types_per_ref)
        if extra_pool:
            types = tuple(sorted({*types, *_draw_extra_types(settings.seed, name, extra_pool,
                                                             settings.extra_types_per_ref)}))
        tasks.append(RefTask(name=name, path=str(available[name].resolve()), types=types, levels=settings.levels,
                             labels=settings.labels, seed=settings.seed, dist_dir=dist_dir,
                             png_compress_level=settings.png_compress_level))
    return tasks
