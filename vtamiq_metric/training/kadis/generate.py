"""Drive a KADIS run: :func:`generate_kadis` (plan, skip what the journals hold, work, write the CSV) and
:func:`merge_kadis` (check the shards of a split run and write the CSV)."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from . import journal, worker
from .plan import DIST_DIR, KadisSettings, RefTask, plan

__all__ = ["KadisGenerationError", "generate_kadis", "merge_kadis"]

_logger = logging.getLogger(__name__)


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


def _settings(settings: KadisSettings | None, fields: dict[str, Any]) -> KadisSettings:
    """``settings``, or ``KadisSettings(**fields)`` for the keyword shorthand of the two entry points."""
    if settings is None:
        return KadisSettings(**fields)
    if fields:
        raise TypeError(f"pass either a KadisSettings or its fields as keywords, not both (got {sorted(fields)})")
    if not isinstance(settings, KadisSettings):
        raise TypeError(f"expected settings as a KadisSettings, got {type(settings).__name__}")
    return settings


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


def _work(pending: list[RefTask], total: int, done: dict[str, dict], journal_file: Path, *, workers: int,
          progress: bool) -> dict[str, str]:
    """Process ``pending``, appending each finished reference to the journal and to ``done``; returns failures."""
    failures: dict[str, str] = {}
    if not pending:
        return failures
    from tqdm.auto import tqdm

    log = journal.Journal(journal_file)
    bar = tqdm(total=total, initial=total - len(pending), unit="ref", desc="make-kadis", disable=not progress)
    num_workers = min(workers, len(pending))
    results = worker.run_serial(pending) if num_workers == 1 else worker.run_parallel(pending, num_workers)
    try:
        for name, record, error in results:
            if record is not None:
                log.append(record)
                done[name] = record
            else:
                failures[name] = error or "unknown error"
                _logger.error("make-kadis: reference %s failed: %s", name, error)
                bar.set_postfix(failed=len(failures))
            bar.update(1)
    finally:
        bar.close()
        log.close()
    return failures


def generate_kadis(
    refs: str | os.PathLike,
    out: str | os.PathLike,
    settings: KadisSettings | None = None,
    *,
    workers: int | None = None,
    on_error: str = "raise",
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    **fields: Any,
) -> Path:
    """Generate KADIS-style distorted images and weak labels; resumable and deterministic (see the package docstring).

    Args:
        refs: folder of pristine reference images (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, any case; not recursive).
        out: output folder (created if needed); receives ``dist_imgs/``, the CSV and the journal.
        settings: what to generate (:class:`KadisSettings`). Its fields may instead be given as keywords, e.g.
            ``generate_kadis(refs, out, seed=3, levels=[1, 5])`` means ``KadisSettings(seed=3, levels=[1, 5])``.
        workers: worker processes (default ``os.cpu_count()``), each running torch single-threaded; 1 runs in this
            process (torch is set to one thread while a reference is processed, then restored).
        on_error: ``"raise"``: references that fail (unreadable, corrupt, too small) are reported together with a
            :class:`KadisGenerationError` after all others are processed, and no CSV is written; ``"skip"``: they are
            logged and left out of the CSV.
        progress: show a tqdm progress bar over references.
        shard: ``(i, n)``: process only references ``k % n == i`` of the sorted list, append to this shard's own
            journal and write no CSV (see "Many machines" in the package docstring and :func:`merge_kadis`).
        **fields: :class:`KadisSettings` fields, when ``settings`` is not given.

    Returns:
        Path of ``<out>/kadis700k_scores.csv``; with ``shard``, the path of the shard's journal.

    Raises:
        FileNotFoundError: if ``refs`` or ``ref_csv`` does not exist, or ``ref_csv`` lists missing references.
        TypeError: for wrongly typed arguments, or both ``settings`` and keyword fields.
        ValueError: for invalid arguments, a malformed ``ref_csv``, no references, references whose names clash
            before the first '.', or (``KadisGenerationError``) references that could not be processed.
    """
    settings = _settings(settings, fields)
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"expected workers as a positive int, got {workers!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"expected on_error 'raise' or 'skip', got {on_error!r}")
    shard = _check_shard(shard)
    out_dir = Path(out)
    all_tasks = plan(refs, out_dir, settings)
    tasks = all_tasks if shard is None else [task for k, task in enumerate(all_tasks) if k % shard[1] == shard[0]]
    (out_dir / DIST_DIR).mkdir(parents=True, exist_ok=True)
    journal.remove_stale_temporaries(out_dir, None if shard is None else tasks)
    journal_file = journal.journal_path(out_dir, shard)
    valid = journal.valid_records(tasks, journal.read_journals(out_dir))
    done = {task.name: valid[task.name][0][1] for task in tasks if valid[task.name]}
    pending = [task for task in tasks if task.name not in done]
    _logger.info(
        "make-kadis%s: %d reference(s), %d already done, %d to process, %d image(s) each",
        "" if shard is None else f" shard {shard[0]}/{shard[1]}",
        len(tasks),
        len(done),
        len(pending),
        len(settings.levels) * (len(tasks[0].types) if tasks else 0),
    )
    failures = _work(pending, len(tasks), done, journal_file, workers=workers, progress=progress)
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
        if not journal_file.exists():  # nothing to process here: an empty journal still marks the shard as run
            journal_file.touch()
        return journal_file
    finished = [task for task in tasks if task.name in done]
    path = journal.write_scores(finished, done, settings.labels, out_dir)
    _logger.info("make-kadis: wrote %s (%d rows)", path, sum(len(done[t.name]["rows"]) for t in finished))
    return path


def merge_kadis(refs: str | os.PathLike, out: str | os.PathLike, settings: KadisSettings | None = None,
                **fields: Any) -> Path:
    """Check the shards of a sharded :func:`generate_kadis` run and write ``kadis700k_scores.csv`` atomically.

    Give the references and settings the shards were run with (``shard`` aside). Processes nothing: it fails
    instead of filling gaps (run the missing shards, or :func:`generate_kadis` without ``shard``).

    Args:
        refs: folder of pristine reference images, as given to the shards.
        out: the shards' common output folder.
        settings: as given to the shards (``png_compress_level`` is not used).
        **fields: :class:`KadisSettings` fields, when ``settings`` is not given.

    Returns:
        Path of ``<out>/kadis700k_scores.csv``, identical to the CSV of one unsharded run.

    Raises:
        FileNotFoundError: as :func:`generate_kadis`.
        TypeError: for wrongly typed arguments.
        ValueError: invalid arguments; references without a valid journal record (missing; the message names their
            shard for each split found in ``out``); a reference recorded twice with different rows; or CSV rows
            that are not one per (reference, type, level).
    """
    settings = _settings(settings, fields)
    out_dir = Path(out)
    tasks = plan(refs, out_dir, settings)
    valid = journal.valid_records(tasks, journal.read_journals(out_dir))
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
    path = journal.write_scores(tasks, done, settings.labels, out_dir)
    _logger.info(
        "make-kadis: merged %d reference(s) from %d journal(s) into %s (%d rows)",
        len(tasks),
        len({j for found in valid.values() for j, _ in found}),
        path,
        expected,
    )
    return path
