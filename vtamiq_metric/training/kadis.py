"""KADIS-700k without MATLAB: distort pristine references with our KADID port and label them (VSI by default).

This is the generator behind ``vtamiq-train make-kadis --refs DIR --out DIR``. It replaces the MATLAB script
``generate_kadis700k.m`` of the KADIS-700k release (which writes BMPs and no labels) and the unpublished score file
VTAMIQ trained on, and can also build a KADIS-like set from any folder of pristine images.

Output layout (a vtamiq-metric format, not an official KADIS file; the KADIS-700k dataset reader expects exactly
this)::

    <out>/dist_imgs/<stem>_<TT>_<LL>.png   one distorted image per (reference, type, level)
    <out>/kadis700k_scores.csv              dist_img,ref_img,dist_type,dist_level,<label...>
    <out>/.kadis_progress.jsonl             resume journal (safe to delete once the CSV exists)
    <out>/.kadis_progress.shard-I-of-N.jsonl  the journal of shard I of N (``--shard I/N``)

- ``stem`` is the reference file name up to its first ``.`` (as ``generate_kadis700k.m`` names files), ``TT`` the
  KADID type id (01..25) and ``LL`` the level (01..05), both two digits, e.g. ``dist_imgs/a-fleshy-plant_07_01.png``.
  Images are PNG rather than MATLAB's BMP: lossless as well, and smaller (25-60 % smaller than BMP for our 512 x 384
  test images at the default zlib level 1, which writes up to 6x faster than Pillow's default level 6 for files
  5-15 % larger; ``png_compress_level`` / ``--png-compress-level`` chooses).
- CSV columns: ``dist_img`` relative to ``<out>`` with ``/`` separators; ``ref_img`` relative to ``<out>`` when the
  references live inside ``<out>``, else absolute; ``dist_type`` (1..25) and ``dist_level`` (1..5) as integers;
  then one column per label (e.g. ``vsi``), a similarity in [0, 1] where 1 = identical, written with full float
  precision. Rows are sorted by (reference file name, type, level). The file is written once, atomically, when
  every reference is done.

Distortion types: with ``ref_csv`` (KADIS-700k's ``kadis700k_ref_imgs.csv``, header
``ref_im,dist_type_1,dist_type_2``), each reference gets the type in column 2 and column 3 is ignored, as in the
MATLAB script. Otherwise ``types_per_ref`` distinct types (default 1, as in KADIS) are drawn per reference from a
generator seeded by (``seed``, reference file name), so a reference keeps its types when other references are added
or removed. Types in ``skip_types`` (default 15, denoise, which VTAMIQ skipped: 671,300 instead of 700,000 pairs)
are never drawn, and CSV rows with such a type are left out.

Determinism: each distorted image uses its own seed, derived from (``seed``, CRC-32 of the reference file name, type,
level) through ``numpy.random.SeedSequence``, and label computations run single-threaded, so the images and the CSV
do not depend on the number of workers or the processing order.

Resuming: workers handle one reference at a time; images are written to a temporary file and renamed
(``os.replace``), and when a reference is finished its rows (with labels) are appended to the journal and flushed to
disk. A run that is killed at any moment leaves no partial PNG or CSV; rerunning the same command skips every
reference whose journal record matches the current settings and whose images exist, and writes the CSV from the
journal (one record per reference, so a reference recorded twice never gives duplicate rows). Changing the seed,
levels or labels redoes the affected references. Do not run two generators on the same output folder at once,
except the shards of one split (below).

Many machines (``shard=(i, n)``, ``--shard I/N``): the sorted reference list (after ``limit``) is split by index,
shard ``i`` taking references ``k`` with ``k % n == i``, so ``n`` machines (e.g. a Slurm array over a shared
filesystem) write disjoint images into the same ``<out>/dist_imgs/`` and each appends to its own journal
``.kadis_progress.shard-i-of-n.jsonl``. A shard writes no CSV. When all are finished, :func:`merge_kadis`
(``--merge``, with the same references and settings) checks that every reference has exactly one valid record (its
settings match and its images exist; none missing, none recorded twice with different rows) and writes the CSV
atomically; it is byte-identical to the CSV of one unsharded run. Every run reads every journal in ``<out>``, so
references already done (by any shard, or unsharded) are never redone, and a plain rerun without ``--shard`` also
completes and writes the CSV.

Parallelism uses ``concurrent.futures.ProcessPoolExecutor`` with the ``spawn`` start method; a script that calls
:func:`generate_kadis` with ``workers > 1`` must guard its entry point with ``if __name__ == "__main__":``.

Example:
    >>> from vtamiq_metric.training.kadis import generate_kadis
    >>> csv_path = generate_kadis(  # doctest: +SKIP
    ...     "kadis700k/ref_imgs", "kadis_out", ref_csv="kadis700k/kadis700k_ref_imgs.csv", workers=16
    ... )
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import json
import logging
import multiprocessing
import os
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vtamiq_metric.training.distortions import DISTORTIONS, apply_distortion
from vtamiq_metric.training.labels import LABELS, compute_label

__all__ = [
    "DEFAULT_SKIP_TYPES",
    "DIST_DIR",
    "JOURNAL_NAME",
    "REF_EXTENSIONS",
    "SCORES_NAME",
    "KadisGenerationError",
    "generate_kadis",
    "image_seed",
    "merge_kadis",
]

_logger = logging.getLogger(__name__)

REF_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
"""Reference file extensions that are picked up from ``refs`` (compared case-insensitively)."""
DIST_DIR = "dist_imgs"
SCORES_NAME = "kadis700k_scores.csv"
JOURNAL_NAME = ".kadis_progress.jsonl"
DEFAULT_SKIP_TYPES = (15,)
"""Types left out by default: 15 (denoise), which VTAMIQ skipped and our port only approximates."""
ALL_LEVELS = (1, 2, 3, 4, 5)

_JOURNAL_FORMAT = 1
_TMP_SUFFIX = ".tmp"


class KadisGenerationError(ValueError):
    """Some reference images could not be processed (unreadable, corrupt or too small).

    Attributes:
        failures: reference file name -> error message.
    """

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = dict(sorted(failures.items()))
        shown = "; ".join(f"{name}: {message}" for name, message in list(self.failures.items())[:10])
        more = f" (and {len(self.failures) - 10} more)" if len(self.failures) > 10 else ""
        super().__init__(
            f"{len(self.failures)} reference image(s) could not be processed: {shown}{more}. Finished references are "
            "kept in the journal; fix or remove these files (or pass on_error='skip' / --skip-bad-refs) and rerun."
        )


@dataclass(frozen=True)
class _RefTask:
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
        return self.name.split(".", 1)[0]

    def key(self) -> dict:
        """Settings that determine this reference's outputs; a journal record is reused only if they match."""
        return {
            "format": _JOURNAL_FORMAT,
            "ref": self.name,
            "types": list(self.types),
            "levels": list(self.levels),
            "labels": list(self.labels),
            "seed": self.seed,
        }

    def dist_name(self, type_id: int, level: int) -> str:
        return f"{self.stem}_{type_id:02d}_{level:02d}.png"


def image_seed(seed: int, ref_name: str, type_id: int, level: int) -> int:
    """Seed of one distorted image, independent of processing order and worker count.

    Args:
        seed: global non-negative seed.
        ref_name: reference file name (e.g. ``"a-fleshy-plant-1464418.png"``).
        type_id: KADID type id 1..25.
        level: level 1..5.

    Returns:
        A 64-bit non-negative int from ``numpy.random.SeedSequence([seed, crc32(ref_name), type_id, level])``.
    """
    crc = zlib.crc32(ref_name.encode("utf-8"))
    return int(np.random.SeedSequence([seed, crc, type_id, level]).generate_state(1, dtype=np.uint64)[0])


def _draw_types(seed: int, ref_name: str, pool: Sequence[int], count: int) -> tuple[int, ...]:
    """``count`` distinct types for one reference, drawn from ``pool`` with a (seed, name)-seeded generator."""
    crc = zlib.crc32(ref_name.encode("utf-8"))
    rng = np.random.default_rng(np.random.SeedSequence([seed, crc]))
    return tuple(sorted(int(t) for t in rng.choice(np.asarray(pool), size=count, replace=False)))


# ----------------------------------------------------------------------------------------------------------------
# Worker side


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch single-threaded so that float reductions, hence labels, do not depend on the thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _init_worker() -> None:
    torch.set_num_threads(1)


def _load_reference(path: str) -> np.ndarray:
    """Read a reference as (H, W, 3) uint8 RGB (grey, palette and alpha images are converted)."""
    with Image.open(path) as image:
        image.load()
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _write_png_atomic(array: np.ndarray, path: Path, compress_level: int) -> None:
    """Write ``array`` as PNG through a temporary file in the same folder and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}{_TMP_SUFFIX}")
    try:
        Image.fromarray(array).save(tmp, format="PNG", compress_level=compress_level)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """(N, H, W, 3) uint8 images -> (N, 3, H, W) float64 in [0, 1]."""
    stacked = torch.from_numpy(np.stack(images))  # (N, H, W, 3)
    return stacked.permute(0, 3, 1, 2).to(torch.float64) / 255.0  # (N, 3, H, W)


def _process_reference(task: _RefTask) -> dict:
    """Distort one reference at every (type, level), write the PNGs and compute the labels.

    Returns:
        The journal record: ``{"key": task.key(), "rows": [[dist_file, type, level, {label: value}], ...]}``.
    """
    with _single_thread():
        ref = _load_reference(task.path)
        ref_tensor = _to_tensor([ref])  # (1, 3, H, W)
        rows: list[list] = []
        for type_id in task.types:
            dists = []
            for level in task.levels:
                dist = apply_distortion(ref, type_id, level, seed=image_seed(task.seed, task.name, type_id, level))
                _write_png_atomic(dist, Path(task.dist_dir) / task.dist_name(type_id, level), task.png_compress_level)
                dists.append(dist)
            dist_tensor = _to_tensor(dists)  # (levels, 3, H, W)
            values = {name: compute_label(name, ref_tensor, dist_tensor).tolist() for name in task.labels}
            for index, level in enumerate(task.levels):
                rows.append(
                    [task.dist_name(type_id, level), type_id, level, {n: values[n][index] for n in task.labels}]
                )
    return {"key": task.key(), "rows": rows}


def _run_task(task: _RefTask) -> tuple[str, dict | None, str | None]:
    """Worker entry point: ``(name, record, None)`` on success, ``(name, None, message)`` if the reference fails."""
    try:
        return task.name, _process_reference(task), None
    except Exception as error:  # noqa: BLE001 - a failing reference is reported by name, not fatal
        return task.name, None, f"{type(error).__name__}: {error}"


# ----------------------------------------------------------------------------------------------------------------
# Planning


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
            if type_id not in DISTORTIONS:
                raise ValueError(f"{path}: line {line_number}: expected a distortion type id in 1..25, got {type_id}")
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


def _normalise_ints(values: Iterable[int], what: str, valid: Iterable[int]) -> tuple[int, ...]:
    valid_set = set(valid)
    result: list[int] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"expected {what} as ints, got {type(value).__name__} {value!r}")
        if int(value) not in valid_set:
            raise ValueError(f"expected {what} in {min(valid_set)}..{max(valid_set)}, got {value}")
        if int(value) not in result:
            result.append(int(value))
    return tuple(sorted(result))


def _plan(
    refs_dir: Path,
    out_dir: Path,
    *,
    ref_csv: Path | None,
    seed: int,
    types_per_ref: int,
    levels: tuple[int, ...],
    labels: tuple[str, ...],
    skip_types: tuple[int, ...],
    limit: int | None,
    png_compress_level: int,
) -> list[_RefTask]:
    """Build the sorted list of per-reference tasks."""
    available = _list_references(refs_dir)
    pool = [t for t in DISTORTIONS if t not in skip_types]
    if ref_csv is not None:
        by_lower = {name.lower(): name for name in available}
        wanted = _read_ref_csv(ref_csv)
        assignments: dict[str, tuple[int, ...]] = {}
        skipped = 0
        missing = []
        for name, type_ids in wanted.items():
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
        names = sorted(assignments)
    else:
        if not 1 <= types_per_ref <= len(pool):
            raise ValueError(f"expected types_per_ref in 1..{len(pool)} (types not skipped), got {types_per_ref}")
        names = list(available)
        assignments = {}
    if not names:
        raise ValueError(f"no reference images ({', '.join(REF_EXTENSIONS)}) to process in {refs_dir}")
    if limit is not None:
        names = names[:limit]
    _check_stems(names)
    dist_dir = str(out_dir / DIST_DIR)
    tasks = []
    for name in names:
        types = assignments[name] if ref_csv is not None else _draw_types(seed, name, pool, types_per_ref)
        tasks.append(
            _RefTask(
                name=name,
                path=str(available[name].resolve()),
                types=types,
                levels=levels,
                labels=labels,
                seed=seed,
                dist_dir=dist_dir,
                png_compress_level=png_compress_level,
            )
        )
    return tasks


# ----------------------------------------------------------------------------------------------------------------
# Journal and CSV


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


def _journal_path(out_dir: Path, shard: tuple[int, int] | None) -> Path:
    if shard is None:
        return out_dir / JOURNAL_NAME
    stem, suffix = JOURNAL_NAME.rsplit(".", 1)
    return out_dir / f"{stem}.shard-{shard[0]}-of-{shard[1]}.{suffix}"


def _read_journals(out_dir: Path) -> dict[str, list[tuple[str, dict]]]:
    """Records of every journal in ``out_dir`` (unsharded and shards), as reference name -> [(journal, record)]."""
    stem, suffix = JOURNAL_NAME.rsplit(".", 1)
    paths = [out_dir / JOURNAL_NAME, *sorted(out_dir.glob(f"{stem}.shard-*-of-*.{suffix}"))]
    found: dict[str, list[tuple[str, dict]]] = {}
    for path in paths:
        for name, record in _read_journal(path).items():
            found.setdefault(name, []).append((path.name, record))
    return found


def _valid_records(tasks: Sequence[_RefTask], journals: dict[str, list[tuple[str, dict]]]) -> dict[str, list[tuple]]:
    """For each task, the (journal, record) pairs that complete it with the current settings."""
    return {task.name: [(j, r) for j, r in journals.get(task.name, []) if _is_done(task, r)] for task in tasks}


def _is_done(task: _RefTask, record: dict | None) -> bool:
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


class _Journal:
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
        self._handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def _ref_column(path: str, out_dir: Path) -> str:
    try:
        return Path(path).relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        return path


def _write_scores(tasks: Sequence[_RefTask], records: dict[str, dict], labels: Sequence[str], out_dir: Path) -> Path:
    """Write ``kadis700k_scores.csv`` atomically from the records of ``tasks`` (sorted by ref, type, level)."""
    rows = []
    for task in tasks:
        ref_img = _ref_column(task.path, out_dir)
        for dist_file, type_id, level, values in records[task.name]["rows"]:
            rows.append((task.name, type_id, level, f"{DIST_DIR}/{dist_file}", ref_img, values))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    path = out_dir / SCORES_NAME
    tmp = path.with_name(f".{path.name}.{os.getpid()}{_TMP_SUFFIX}")
    try:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["dist_img", "ref_img", "dist_type", "dist_level", *labels])
            for _, type_id, level, dist_img, ref_img, values in rows:
                writer.writerow([dist_img, ref_img, type_id, level, *(repr(float(values[n])) for n in labels)])
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _remove_stale_temporaries(out_dir: Path, own: Sequence[_RefTask] | None = None) -> None:
    """Delete temporary files that a killed run left behind (ours are hidden and end with '.tmp').

    With ``own`` (a shard), only the temporaries of those references' images, so that shards running at the same time
    in the same folder never delete each other's files in flight.
    """
    stale_files = [*(out_dir / DIST_DIR).glob(f".*{_TMP_SUFFIX}")]
    if own is None:
        stale_files += out_dir.glob(f".{SCORES_NAME}.*{_TMP_SUFFIX}")
    else:
        names = {task.dist_name(t, lv) for task in own for t in task.types for lv in task.levels}
        # ".<dist name>.<pid>.tmp" -> "<dist name>"
        stale_files = [p for p in stale_files if p.name[1 : -len(_TMP_SUFFIX)].rsplit(".", 1)[0] in names]
    for stale in stale_files:
        with contextlib.suppress(OSError):
            stale.unlink()


# ----------------------------------------------------------------------------------------------------------------
# Driver


def _run_serial(pending: Sequence[_RefTask]) -> Iterator[tuple[str, dict | None, str | None]]:
    for task in pending:
        yield _run_task(task)


def _run_parallel(pending: Sequence[_RefTask], workers: int) -> Iterator[tuple[str, dict | None, str | None]]:
    """Run tasks in spawned worker processes, keeping at most 2 x workers in flight; yields results as they finish."""
    context = multiprocessing.get_context("spawn")
    executor = cf.ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker)
    queue = iter(pending)
    in_flight: set[cf.Future] = set()
    try:
        for task in queue:
            in_flight.add(executor.submit(_run_task, task))
            if len(in_flight) >= 2 * workers:
                break
        while in_flight:
            done, in_flight = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
            for future in done:
                yield future.result()
                next_task = next(queue, None)
                if next_task is not None:
                    in_flight.add(executor.submit(_run_task, next_task))
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _prepare(
    refs: str | os.PathLike,
    out: str | os.PathLike,
    *,
    ref_csv: str | os.PathLike | None,
    seed: int,
    types_per_ref: int,
    levels: Sequence[int],
    labels: Sequence[str],
    skip_types: Sequence[int],
    limit: int | None,
    png_compress_level: int,
) -> list[_RefTask]:
    """Validate the settings shared by :func:`generate_kadis` and :func:`merge_kadis` and plan every reference."""
    refs_dir = Path(refs)
    out_dir = Path(out)
    if not refs_dir.is_dir():
        raise FileNotFoundError(f"expected refs to be an existing folder of reference images, got {str(refs_dir)!r}")
    csv_path = None if ref_csv is None else Path(ref_csv)
    if csv_path is not None and not csv_path.is_file():
        raise FileNotFoundError(f"expected ref_csv to be an existing CSV file, got {str(csv_path)!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"expected seed as a non-negative int, got {seed!r}")
    if isinstance(types_per_ref, bool) or not isinstance(types_per_ref, (int, np.integer)):
        raise TypeError(f"expected types_per_ref as an int, got {type(types_per_ref).__name__}")
    if csv_path is not None and types_per_ref != 1:
        raise ValueError(f"expected types_per_ref=1 with ref_csv (the CSV assigns the types), got {types_per_ref}")
    level_tuple = _normalise_ints(levels, "levels", ALL_LEVELS)
    if not level_tuple:
        raise ValueError("expected at least one level in 1..5, got none")
    skip_tuple = _normalise_ints(skip_types, "skip_types", DISTORTIONS)
    if isinstance(labels, str):
        raise TypeError(f"expected labels as a sequence of names, got the string {labels!r}")
    label_tuple = tuple(dict.fromkeys(labels))
    unknown = [name for name in label_tuple if name not in LABELS]
    if unknown:
        raise ValueError(f"unknown label(s) {unknown}; expected names among {sorted(LABELS)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"expected limit as a positive int or None, got {limit!r}")
    if isinstance(png_compress_level, bool) or not isinstance(png_compress_level, int):
        raise TypeError(f"expected png_compress_level as an int, got {type(png_compress_level).__name__}")
    if not 0 <= png_compress_level <= 9:
        raise ValueError(f"expected png_compress_level in 0..9, got {png_compress_level}")

    return _plan(
        refs_dir,
        out_dir,
        ref_csv=csv_path,
        seed=int(seed),
        types_per_ref=int(types_per_ref),
        levels=level_tuple,
        labels=label_tuple,
        skip_types=skip_tuple,
        limit=limit,
        png_compress_level=png_compress_level,
    )


def generate_kadis(
    refs: str | os.PathLike,
    out: str | os.PathLike,
    *,
    ref_csv: str | os.PathLike | None = None,
    seed: int = 0,
    types_per_ref: int = 1,
    levels: Sequence[int] = ALL_LEVELS,
    labels: Sequence[str] = ("vsi",),
    skip_types: Sequence[int] = DEFAULT_SKIP_TYPES,
    workers: int | None = None,
    limit: int | None = None,
    on_error: str = "raise",
    png_compress_level: int = 1,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> Path:
    """Generate KADIS-style distorted images and weak labels; resumable and deterministic (see the module docstring).

    Args:
        refs: folder of pristine reference images (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, any case; not recursive).
        out: output folder (created if needed); receives ``dist_imgs/``, the CSV and the journal.
        ref_csv: optional KADIS-700k ``kadis700k_ref_imgs.csv``; column 2 gives each listed reference its type.
            Without it, types are drawn per reference with ``seed``.
        seed: non-negative global seed for type draws and distortion randomness.
        types_per_ref: distinct types drawn per reference when ``ref_csv`` is None (KADIS: 1).
        levels: levels to generate, each in 1..5.
        labels: label names from :data:`vtamiq_metric.training.labels.LABELS` (may be empty: images only).
        skip_types: type ids never generated (default: 15, denoise).
        workers: worker processes (default ``os.cpu_count()``), each running torch single-threaded; 1 runs in this
            process (torch is set to one thread while a reference is processed, then restored).
        limit: process only the first ``limit`` references (sorted by file name).
        on_error: ``"raise"``: references that fail (unreadable, corrupt, too small) are reported together with a
            :class:`KadisGenerationError` after all others are processed, and no CSV is written; ``"skip"``: they are
            logged and left out of the CSV.
        png_compress_level: zlib level 0..9 of the PNG files (speed vs. size; pixels are lossless either way).
        progress: show a tqdm progress bar over references.
        shard: ``(i, n)``: process only references ``k % n == i`` of the sorted list, append to this shard's own
            journal and write no CSV (see "Many machines" in the module docstring and :func:`merge_kadis`).

    Returns:
        Path of ``<out>/kadis700k_scores.csv``; with ``shard``, the path of the shard's journal.

    Raises:
        FileNotFoundError: if ``refs`` or ``ref_csv`` does not exist, or ``ref_csv`` lists missing references.
        TypeError: for wrongly typed arguments.
        ValueError: for invalid arguments, a malformed ``ref_csv``, no references, references whose names clash
            before the first '.', or (``KadisGenerationError``) references that could not be processed.
    """
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"expected workers as a positive int, got {workers!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"expected on_error 'raise' or 'skip', got {on_error!r}")
    shard = _check_shard(shard)
    out_dir = Path(out)
    tasks = _prepare(
        refs,
        out,
        ref_csv=ref_csv,
        seed=seed,
        types_per_ref=types_per_ref,
        levels=levels,
        labels=labels,
        skip_types=skip_types,
        limit=limit,
        png_compress_level=png_compress_level,
    )
    label_tuple = tasks[0].labels
    level_tuple = tasks[0].levels
    all_tasks = tasks
    if shard is not None:
        tasks = [task for k, task in enumerate(all_tasks) if k % shard[1] == shard[0]]
    dist_dir = out_dir / DIST_DIR
    dist_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out_dir, None if shard is None else tasks)
    journal_path = _journal_path(out_dir, shard)
    valid = _valid_records(tasks, _read_journals(out_dir))
    done = {task.name: valid[task.name][0][1] for task in tasks if valid[task.name]}
    pending = [task for task in tasks if task.name not in done]
    _logger.info(
        "make-kadis%s: %d reference(s), %d already done, %d to process, %d image(s) each",
        "" if shard is None else f" shard {shard[0]}/{shard[1]}",
        len(tasks),
        len(done),
        len(pending),
        len(level_tuple) * (len(tasks[0].types) if tasks else 0),
    )

    failures: dict[str, str] = {}
    if pending:
        from tqdm.auto import tqdm

        journal = _Journal(journal_path)
        bar = tqdm(total=len(tasks), initial=len(done), unit="ref", desc="make-kadis", disable=not progress)
        num_workers = min(workers, len(pending))
        results = _run_serial(pending) if num_workers == 1 else _run_parallel(pending, num_workers)
        try:
            for name, record, error in results:
                if record is not None:
                    journal.append(record)
                    done[name] = record
                else:
                    failures[name] = error or "unknown error"
                    _logger.error("make-kadis: reference %s failed: %s", name, error)
                    bar.set_postfix(failed=len(failures))
                bar.update(1)
        finally:
            bar.close()
            journal.close()

    if failures and on_error == "raise":
        raise KadisGenerationError(failures)
    if failures:
        _logger.warning(
            "make-kadis: left %d failed reference(s) out of the %s", len(failures), "CSV" if shard is None else "shard"
        )
    if shard is not None:
        _logger.info(
            "make-kadis: shard %d/%d done (%d of %d references); when every shard is done, rerun with --merge",
            shard[0],
            shard[1],
            len(done),
            len(all_tasks),
        )
        if not journal_path.exists():  # nothing to process here: an empty journal still marks the shard as run
            journal_path.touch()
        return journal_path
    finished = [task for task in tasks if task.name in done]
    path = _write_scores(finished, done, label_tuple, out_dir)
    _logger.info("make-kadis: wrote %s (%d rows)", path, sum(len(done[t.name]["rows"]) for t in finished))
    return path


def _check_shard(shard: tuple[int, int] | None) -> tuple[int, int] | None:
    if shard is None:
        return None
    if not isinstance(shard, (tuple, list)) or len(shard) != 2:
        raise TypeError(f"expected shard as a pair (index, count), got {shard!r}")
    index, count = shard
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in (index, count)):
        raise TypeError(f"expected shard as two ints (index, count), got {shard!r}")
    if not 0 <= index < count:
        raise ValueError(f"expected shard (index, count) with 0 <= index < count, got {shard!r}")
    return int(index), int(count)


def merge_kadis(
    refs: str | os.PathLike,
    out: str | os.PathLike,
    *,
    ref_csv: str | os.PathLike | None = None,
    seed: int = 0,
    types_per_ref: int = 1,
    levels: Sequence[int] = ALL_LEVELS,
    labels: Sequence[str] = ("vsi",),
    skip_types: Sequence[int] = DEFAULT_SKIP_TYPES,
    limit: int | None = None,
) -> Path:
    """Check the shards of a sharded :func:`generate_kadis` run and write ``kadis700k_scores.csv`` atomically.

    Give the references and settings the shards were run with (``shard`` aside). Processes nothing: it fails
    instead of filling gaps (run the missing shards, or :func:`generate_kadis` without ``shard``).

    Args:
        refs: folder of pristine reference images, as given to the shards.
        out: the shards' common output folder.
        ref_csv: as given to the shards.
        seed: as given to the shards.
        types_per_ref: as given to the shards.
        levels: as given to the shards.
        labels: as given to the shards.
        skip_types: as given to the shards.
        limit: as given to the shards.

    Returns:
        Path of ``<out>/kadis700k_scores.csv``, identical to the CSV of one unsharded run.

    Raises:
        FileNotFoundError: as :func:`generate_kadis`.
        TypeError: for wrongly typed arguments.
        ValueError: invalid arguments; references without a valid journal record (missing; the message names their
            shard for each split found in ``out``); a reference recorded twice with different rows; or CSV rows
            that are not one per (reference, type, level).
    """
    out_dir = Path(out)
    tasks = _prepare(
        refs,
        out,
        ref_csv=ref_csv,
        seed=seed,
        types_per_ref=types_per_ref,
        levels=levels,
        labels=labels,
        skip_types=skip_types,
        limit=limit,
        png_compress_level=1,
    )
    journals = _read_journals(out_dir)
    valid = _valid_records(tasks, journals)
    missing = [(k, task.name) for k, task in enumerate(tasks) if not valid[task.name]]
    if missing:
        shard_journals = " ".join(p.name for p in out_dir.glob("*.shard-*-of-*.jsonl"))
        splits = sorted({int(count) for count in re.findall(r"shard-\d+-of-(\d+)", shard_journals)})
        where = "; ".join(
            f"{name} (shard {', '.join(f'{k % n}/{n}' for n in splits) or 'none'})" for k, name in missing[:10]
        )
        raise ValueError(
            f"expected a finished journal record for each of {len(tasks)} references, got {len(missing)} missing: "
            f"{where}{' ...' if len(missing) > 10 else ''}; rerun those shards with the same settings"
        )
    conflicts = [name for name, found in valid.items() if any(r["rows"] != found[0][1]["rows"] for _, r in found[1:])]
    if conflicts:
        shown = "; ".join(f"{name} in {sorted({j for j, _ in valid[name]})}" for name in conflicts[:10])
        raise ValueError(
            f"expected each reference recorded once (or identically), got different rows for {len(conflicts)}: {shown}"
        )
    done = {task.name: valid[task.name][0][1] for task in tasks}
    expected = sum(len(task.types) * len(task.levels) for task in tasks)
    images = [row[0] for task in tasks for row in done[task.name]["rows"]]
    if len(images) != expected or len(set(images)) != expected:
        raise ValueError(
            f"expected {expected} distinct (reference, type, level) rows, got {len(images)} rows for "
            f"{len(set(images))} images"
        )
    path = _write_scores(tasks, done, tasks[0].labels, out_dir)
    _logger.info(
        "make-kadis: merged %d reference(s) from %d journal(s) into %s (%d rows)",
        len(tasks),
        len({j for found in valid.values() for j, _ in found}),
        path,
        expected,
    )
    return path
