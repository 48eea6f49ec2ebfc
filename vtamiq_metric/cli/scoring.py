"""``vtamiq score``: the batch-scoring loop.

Batches: ``--batch-size`` consecutive pairs (default :func:`vtamiq_metric.api.batch_size_for` the first image's size)
are decoded by a pool of threads while the model scores the previous batch; each pair is decoded and checked on its
own, so a bad pair fails alone. The pairs of a batch that decoded are scored together, one model call per image size
(and dtype), through :func:`vtamiq_metric.api.score_batch`, the core of :func:`vtamiq_metric.score`: CAPS draws do not
depend on the batch, so the scores equal ``score()`` pair by pair (up to float rounding of batched kernels). A failing
model call is retried pair by pair.

Whatever decoding a pair raises (a damaged file, a format outside the allow-list, out of memory) fails that pair
alone. The next batch is decoded during scoring only when the two batches' decoded images fit in
:data:`_DECODE_AHEAD_BYTES` together.

Output: the file is claimed first (:mod:`.outfile`: locked, checked to be none of the inputs, its record of options
written); the rows go to the writers of :mod:`.formats` as batches finish; at the end a file is rewritten in input
order (unless it holds that already). SIGINT and SIGTERM stop the run after the current batch with every finished
pair saved (exit status 130 and 143); ``--resume`` keeps the scored rows of the file (matched by ref and dist, made
with the same options) and scores the others. A non-finite score fails its pair. Exit status: 0 all scored, 1 all
failed, 2 usage error, 3 some failed.

Scaling out: under ``torchrun`` every process (one per GPU, ``cuda:LOCAL_RANK``, or per CPU worker) scores pairs
``rank, rank + world, ...`` of the pairs to score, the ranks exchange their rows after every batch (all stop after the
same batch on a signal), and rank 0 writes one output in input order. For independent jobs (e.g. a Slurm array)
``--shard I/N`` scores only pairs whose index ``% N == I`` and writes ``<output stem>.shard-I-of-N<suffix>`` with two
extra columns, ``index`` (position in the input list) and ``total`` (number of pairs in the input); ``vtamiq
merge-scores OUTPUT`` checks that every pair is there exactly once and writes OUTPUT in input order, identical to a
single run's file. Both can be combined.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any, final

import torch

from .. import _torchrun as torchrun
from .. import api
from .._frontend import DEFAULT_MAX_PIXELS, Scorer, ScoringOptions, default_model_name, resolve, resolve_device
from .._validation import decoded_bytes, image_size, prepare_pair
from .common import CLIError, shard_path
from .formats import FIELDS, SHARD_FIELDS, FileWriter, ResultWriter, RunOutput, StdoutWriter, file_writer, writer_class
from .outfile import OutputLock, changed_options, check_not_an_input, meta_path, read_record, run_record, write_record
from .pairs import Pair, pairs_from_args

__all__ = ["run_score"]

# At most this many threads decode images (fewer on machines with fewer cores, and never more than a batch).
_DECODE_THREADS = 4
# The next batch is decoded while the current one is scored only when the two together hold at most this many bytes
# of decoded images (estimated from the headers, vtamiq_metric._validation.decoded_bytes); otherwise it is decoded
# after the current batch is scored, so a batch of very large images never has a second one beside it in memory.
_DECODE_AHEAD_BYTES = 2 * 2**30
# What a failing model call raises: the batch is retried pair by pair, and a pair that still fails is reported
# (torch.OutOfMemoryError is a RuntimeError; NotImplementedError too).
_PAIR_ERRORS = (OSError, ValueError, TypeError, RuntimeError, MemoryError)

Decoded = tuple[torch.Tensor, torch.Tensor] | str  # a decoded pair (ref, dist), or why it failed


def run_score(args: argparse.Namespace) -> int:
    """``vtamiq score``: check the arguments, read the pairs, score them (under torchrun too); the exit status."""
    to_file = issubclass(writer_class(args.output), FileWriter)  # refuses an unknown suffix before any work
    if args.resume and not to_file:
        raise CLIError("--resume needs --output (the file whose missing pairs it scores)")
    pairs, single = pairs_from_args(args)
    if args.shard is not None and (single or not to_file):
        raise CLIError("--shard needs the folder or CSV mode and --output (each shard writes its own file)")
    device = None if args.device is None else resolve_device(args.device, torch.empty(0), None)  # checked first
    ctx = torchrun.init_from_env(device)
    try:
        return _score_pairs(args, pairs, single=single, output=args.output if to_file else None, ctx=ctx)
    finally:
        torchrun.shutdown()


def _score_pairs(args: argparse.Namespace, pairs: list[Pair], *, single: bool, output: Path | None,
                 ctx: torchrun.DistContext) -> int:
    """Score this process's share of ``pairs`` (shard, then rank) batch by batch; after every batch the ranks
    exchange their rows, rank 0 hands them to the writers, and all stop together after a signal."""
    shard_i, shard_n = args.shard or (0, 1)
    selected = [k for k in range(len(pairs)) if k % shard_n == shard_i]
    if output is not None and args.shard is not None:
        output = shard_path(output, shard_i, shard_n)
    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels or None
    options = ScoringOptions(num_patches=args.patches, num_repeats=args.repeats, seed=args.seed,
                             precision=args.precision, batch_size=args.batch_size, max_pixels=max_pixels)
    scorer = resolve(args.model, options, device=ctx.device if ctx.distributed else args.device)
    lock, done = _claim_output(args, output, pairs, selected, scorer, ctx)
    try:
        return _score_selected(args, pairs, selected, done, single=single, output=output, scorer=scorer,
                               max_pixels=max_pixels, ctx=ctx)
    finally:
        if lock is not None:
            lock.release()


def _score_selected(args: argparse.Namespace, pairs: list[Pair], selected: list[int], done: dict[int, dict], *,
                    single: bool, output: Path | None, scorer: Scorer, max_pixels: int | None,
                    ctx: torchrun.DistContext) -> int:
    """Score the ``selected`` pairs that are not ``done``: the loop, the writers, the exit status."""
    shard_i, shard_n = args.shard or (0, 1)
    todo = [k for k in selected if k not in done]
    mine = todo[ctx.rank::ctx.world_size]

    results = dict(done)  # every rank holds every row (rows are exchanged after each batch)
    writers = _writers(args, output, done, single=single, total=len(pairs)) if ctx.is_main else []
    progress = None
    if len(pairs) > 1 and not args.no_progress and ctx.is_main:
        from tqdm.auto import tqdm  # only the folder modes show a bar (every rank's pairs under torchrun)

        progress = tqdm(total=len(selected), initial=len(done), unit="pair", file=sys.stderr)
    interrupted: int | None = None
    prefetch = _Prefetcher(pairs, mine, _batch_size(scorer, pairs, mine), patch_size=scorer.model.config.patch_size,
                           max_pixels=max_pixels)
    try:
        with _StopRequest(immediate=not ctx.distributed, announce=ctx.is_main) as stop:
            ended = False  # the loop ran to its end or a signal stopped it (no error on its way)
            try:
                for writer in writers:
                    writer.start()
                while True:
                    decoded = prefetch.next_batch()
                    local = _score_batch(decoded, pairs, scorer) if decoded else []
                    parts = torchrun.all_gather_objects((local, prefetch.more(), stop.signum))
                    new = sorted((item for part in parts for item in part[0]), key=lambda item: item[0])
                    results.update(new)
                    for writer in writers:
                        writer.add(new)
                    if progress is not None:
                        progress.update(len(new))
                    signals = [part[2] for part in parts if part[2] is not None]
                    if signals:
                        interrupted = signals[0]
                        break
                    if not any(part[1] for part in parts):
                        break
                if interrupted is None and any(k not in results for k in selected):
                    missing = [k for k in selected if k not in results][:10]
                    raise RuntimeError(f"expected results for all {len(selected)} pairs, missing pairs {missing}...")
                ended = True
            except _Interrupted as exc:
                interrupted, ended = exc.signum, True
            finally:
                stop.defer()
                for writer in writers:
                    _close(writer, ended, results, selected)  # a file keeps every finished pair, even on an error
    finally:
        prefetch.close()
        if progress is not None:
            progress.close()

    rows = [results[k] for k in selected if k in results]
    if interrupted is not None:
        if ctx.is_main:
            saved = f"; they are in {output}: run the same command with --resume to score the rest" if output else ""
            print(f"vtamiq: interrupted by {signal.Signals(interrupted).name}: {len(rows)} of {len(selected)} pairs "
                  f"done{saved}", file=sys.stderr)
        return 128 + interrupted
    if ctx.is_main and args.shard is not None:
        print(f"vtamiq: shard {shard_i}/{shard_n}: {len(rows)} of {len(pairs)} pairs -> {output}", file=sys.stderr)
    failures = sum(row["error"] is not None for row in rows)
    if rows and failures == len(rows):
        return 1
    return 0 if failures == 0 else 3


def _close(writer: ResultWriter, ended: bool, results: dict[int, dict], selected: list[int]) -> None:
    """Close ``writer``; a file that cannot be written (a full disk...) is an ``OSError`` that says where the
    finished rows are and how to complete the file."""
    try:
        writer.close(ended)
    except OSError as exc:
        if not isinstance(writer, FileWriter):
            raise
        scored = sum(1 for k in selected if k in results)
        raise OSError(exc.errno, f"cannot write {writer.path} ({exc.strerror or exc}): {scored} of {len(selected)} "
                                 f"pairs were scored and the rows written so far are in {writer.path}; make room "
                                 f"and run the same command with --resume to complete it") from None


def _writers(args: argparse.Namespace, output: Path | None, done: dict[int, dict], *, single: bool,
             total: int) -> list[ResultWriter]:
    """The writers of rank 0: the ``--output`` file's, and standard output's unless a file takes every row."""
    run = RunOutput(output, SHARD_FIELDS if args.shard else FIELDS, total if args.shard else None, single, args.json)
    writers: list[ResultWriter] = []
    if output is not None:
        writers.append(writer_class(output)(run, done))
    if output is None or args.json or single:
        writers.append(StdoutWriter(run, done))
    return writers


def _claim_output(args: argparse.Namespace, output: Path | None, pairs: list[Pair], selected: list[int],
                  scorer: Scorer, ctx: torchrun.DistContext) -> tuple[OutputLock | None, dict[int, dict]]:
    """Rank 0 claims the results file and tells the other ranks: it checks that the file is none of the inputs,
    locks it, reads the rows ``--resume`` keeps (checked against the file's record of options) and writes the run's
    record. Returns rank 0's lock (None elsewhere, and without a file) and the kept rows, by pair index.

    Raises:
        CLIError: on every rank, when rank 0 refuses the file; OSError when it cannot write the record.
    """
    if output is None:
        return None, {}
    found: tuple[str, object] | None = None
    lock: OutputLock | None = None
    if ctx.is_main:
        try:
            check_not_an_input(output, [args.pairs, args.model if args.model is not None else None,
                                        *(path for pair in pairs for path in (pair.ref, pair.dist) if path)])
            lock = OutputLock(output).acquire()
            record = run_record(scorer, args.model if args.model is not None else default_model_name())
            done = _resumable(output, pairs, selected, record) if args.resume else {}
            write_record(output, record)
            found = ("ok", done)
        except (CLIError, OSError) as exc:
            if lock is not None:
                lock.release()
                lock = None
            found = ("usage" if isinstance(exc, CLIError) else "os", str(exc))
    status, value = torchrun.all_gather_objects(found)[0]
    if status == "usage":
        raise CLIError(value)
    if status == "os":
        raise OSError(value)
    if ctx.is_main and value:
        print(f"vtamiq: --resume: {len(value)} of {len(selected)} pairs already scored in {output}", file=sys.stderr)
    return lock, value


def _resumable(path: Path, pairs: list[Pair], selected: list[int], record: dict) -> dict[int, dict]:
    """The rows of ``path`` that hold a score, by pair index (matched by the ref and dist paths).

    Rows without a score (failed pairs) are scored again. A missing file means nothing is done yet. Kept rows must
    come from the options of this run: the file's record (:mod:`.outfile`) must equal ``record``'s options.

    Raises:
        CLIError: the file cannot be read, is not a results table, holds pairs this input does not have, or holds
            scores made with other options (or without a record of them).
    """
    if not path.exists():
        return {}
    rows = file_writer(path).read_rows(path, partial=True)
    where: dict[tuple[str, str], list[int]] = {}
    for k in selected:
        where.setdefault((pairs[k].ref, pairs[k].dist), []).append(k)
    done: dict[int, dict] = {}
    foreign = []
    for row in rows:
        if not isinstance(row.get("ref"), str) or not isinstance(row.get("dist"), str):
            raise CLIError(f"--resume: {path} is not a `vtamiq score` results file (expected rows with "
                           f"{', '.join(FIELDS)})")
        key = (row["ref"], row["dist"])
        if key not in where:
            foreign.append(key)
            continue
        value, spread = _number(row.get("score")), _number(row.get("std"))
        if value is None:
            continue
        for k in where[key]:
            done[k] = _row(pairs[k], value, spread)
    if foreign:
        raise CLIError(f"--resume: {path} holds {len(foreign)} row(s) for pairs that are not in this input (e.g. "
                       f"{foreign[0][0]} / {foreign[0][1]}); resume with the input (and options) of the run that "
                       f"wrote it, or choose another --output")
    if done:
        recorded = read_record(path)
        if recorded is None:
            raise CLIError(f"--resume: {path} holds scores but no {meta_path(path).name} recording the options they "
                           f"were made with, so they cannot be continued safely; run without --resume to score "
                           f"everything again, or choose another --output")
        changes = changed_options(recorded, record)
        if changes:
            raise CLIError(f"--resume: the scores in {path} were made with other options than this run's: "
                           f"{'; '.join(changes)} (recorded in {meta_path(path).name}); resume with the options of "
                           f"the run that wrote it, or choose another --output")
    return done


def _number(value: object) -> float | None:
    """A score cell read back: a float, or None for an empty, missing or non-numeric cell."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _batch_size(scorer: Scorer, pairs: list[Pair], mine: list[int]) -> int:
    """``--batch-size``, or :func:`vtamiq_metric.api.batch_size_for` the first readable image of this process."""
    for k in mine[:16]:
        size = image_size(pairs[k].ref) if pairs[k].error is None else None
        if size is not None:
            return api.batch_size_for(scorer, size[0], size[1], len(mine))
    return scorer.options.batch_size or 1


class _Interrupted(BaseException):
    """A second SIGINT/SIGTERM: stop at once instead of after the current batch."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@final
class _StopRequest:
    """SIGINT and SIGTERM handlers for the scoring loop (installed only in the main thread, restored on exit).

    The first signal is remembered (``signum``) and the loop stops after the current batch, so that every finished
    pair reaches the output (rank 0 says so on stderr). A second one raises :class:`_Interrupted` at once when
    ``immediate`` (a single process); under torchrun it is ignored, because every rank must stop after the same batch
    (torchrun forwards the signal it receives, so each worker may see Ctrl-C twice).
    """

    def __init__(self, *, immediate: bool, announce: bool) -> None:
        self.signum: int | None = None
        self._immediate, self._announce = immediate, announce
        self._previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def defer(self) -> None:
        """From now on a signal only asks to stop (the results are being saved)."""
        self._immediate = False

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            if self._immediate:
                raise _Interrupted(self.signum)
            return
        self.signum = signum
        if not self._announce:
            return
        again = "; send it again to stop at once" if self._immediate else ""
        print(f"\nvtamiq: {signal.Signals(signum).name} received: stopping after the current batch and saving the "
              f"results{again}", file=sys.stderr, flush=True)


def _decode(pair: Pair, patch_size: int, max_pixels: int | None) -> Decoded:
    """Decode and check one pair (in a decode thread): ``(ref, dist)``, each ``(1, 3, H, W)`` (uint8 for 8-bit
    files), or the error that makes the pair fail.

    Whatever the decoding raises fails this pair alone (reported, skipped, counted in exit status 3), out-of-memory
    included: one bad or oversized file never stops a run.
    """
    if pair.error is not None:
        return f"ValueError: {pair.error}"
    try:
        return prepare_pair(pair.ref, pair.dist, patch_size=patch_size, max_pixels=max_pixels, keep_uint8=True)
    except MemoryError as exc:
        return f"MemoryError: out of memory decoding the pair{f' ({exc})' if str(exc) else ''}"
    except Exception as exc:  # noqa: BLE001 - see the docstring: a pair's failure is its row's error
        return f"{type(exc).__name__}: {exc}"


def _pair_bytes(pair: Pair) -> int:
    """The decoded bytes of a pair, from the headers (0 when unknown: such a pair fails to decode)."""
    if pair.error is not None:
        return 0
    ref_bytes, dist_bytes = decoded_bytes(pair.ref), decoded_bytes(pair.dist)
    if ref_bytes is None or dist_bytes is None:
        return 0
    return 2 * max(ref_bytes, dist_bytes)  # one float side makes both float


class _Prefetcher:
    """Batches of ``indices`` in order, each pair decoded in a pool of threads. Batch k + 1 is submitted when batch
    k is handed out, so that it decodes while the model scores batch k, if the two hold at most ``ahead_bytes`` of
    decoded images together (else when batch k + 2... is asked for); at most two batches are ever held."""

    def __init__(self, pairs: list[Pair], indices: list[int], batch_size: int, *, patch_size: int,
                 max_pixels: int | None, ahead_bytes: int = _DECODE_AHEAD_BYTES) -> None:
        self._pairs = pairs
        self._batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
        self._options = (patch_size, max_pixels)
        self._ahead_bytes = ahead_bytes
        self._sizes: dict[int, int] = {}  # the decoded bytes of the next batch to submit, by its position
        threads = max(1, min(_DECODE_THREADS, os.cpu_count() or 1, batch_size))
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vtamiq-decode")
        self._pending: list[tuple[list[tuple[int, Future]], int]] = []  # (the batch's futures, its decoded bytes)
        self._submitted = 0
        self._submit()

    def _submit(self) -> None:
        if self._submitted < len(self._batches):
            batch = self._batches[self._submitted]
            futures = [(k, self._pool.submit(_decode, self._pairs[k], *self._options)) for k in batch]
            self._pending.append((futures, self._next_size()))
            self._submitted += 1

    def _next_size(self) -> int:
        """The decoded bytes of the next batch not yet submitted (0 if none is left); read once per batch."""
        if self._submitted >= len(self._batches):
            return 0
        if self._sizes.get(self._submitted) is None:
            self._sizes = {self._submitted: sum(_pair_bytes(self._pairs[k]) for k in self._batches[self._submitted])}
        return self._sizes[self._submitted]

    def more(self) -> bool:
        """Whether a batch is still to be handed out."""
        return bool(self._pending) or self._submitted < len(self._batches)

    def next_batch(self) -> list[tuple[int, Decoded]]:
        """The next batch, decoded: ``(index, (ref, dist) or error)`` in input order; ``[]`` when none is left."""
        if not self._pending:
            self._submit()  # a batch held back because it did not fit beside the previous one
        if not self._pending:
            return []
        current, size = self._pending.pop(0)
        if size + self._next_size() <= self._ahead_bytes:
            self._submit()  # the next batch decodes while the caller scores this one
        return [(k, future.result()) for k, future in current]

    def close(self) -> None:
        """Stop the decode threads; decodes not yet started are cancelled."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _row(pair: Pair, score: float | None = None, std: float | None = None, error: str | None = None) -> dict:
    return {"ref": pair.ref, "dist": pair.dist, "score": score, "std": std, "error": error}


def _failed(pair: Pair, error: str) -> dict:
    where = pair.error if pair.error is not None else f"{pair.ref} / {pair.dist}: {error}"
    print(f"vtamiq: skipping {where}", file=sys.stderr)
    return _row(pair, error=error)


def _score_batch(decoded: list[tuple[int, Decoded]], pairs: list[Pair], scorer: Scorer) -> list[tuple[int, dict]]:
    """Rows of one decoded batch, in its order. Pairs that failed to decode are reported; the others are scored by
    image size (one model call per size and dtype), and a failing call is retried pair by pair."""
    rows: dict[int, dict] = {}
    groups: dict[tuple, list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
    for k, item in decoded:
        if isinstance(item, str):
            rows[k] = _failed(pairs[k], item)
        else:
            ref, dist = item
            groups.setdefault((tuple(ref.shape[-2:]), ref.dtype), []).append((k, ref, dist))
    for members in groups.values():
        _score_group(members, pairs, scorer, rows)
    return [(k, rows[k]) for k, _ in decoded]


def _score_group(members: list[tuple[int, torch.Tensor, torch.Tensor]], pairs: list[Pair], scorer: Scorer,
                 rows: dict[int, dict]) -> None:
    try:
        ref = torch.cat([ref for _, ref, _ in members]).to(scorer.device)
        dist = torch.cat([dist for _, _, dist in members]).to(scorer.device)
        mean, std = api.score_batch(scorer, ref, dist)
        del ref, dist
    except _PAIR_ERRORS as exc:
        error = f"{type(exc).__name__}: {exc}"
        if len(members) == 1:
            rows[members[0][0]] = _failed(pairs[members[0][0]], error)
            return
        print(f"vtamiq: a batch of {len(members)} pairs failed ({error}); scoring them one by one", file=sys.stderr)
        for member in members:
            _score_group([member], pairs, scorer, rows)
        return
    for (k, _, _), value, spread in zip(members, mean.tolist(), std.tolist(), strict=True):
        if math.isfinite(value) and math.isfinite(spread):
            rows[k] = _row(pairs[k], value, spread)
        else:  # never written as a bare NaN (not JSON): a failed pair, reported and counted in the exit status
            rows[k] = _failed(pairs[k], f"ValueError: the model gave a non-finite score ({value}, std {spread}) for "
                                        f"this pair")
