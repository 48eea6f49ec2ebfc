"""The ``vtamiq`` command: score image pairs, list registered models, convert the authors' checkpoints.

Examples::

    vtamiq score ref.png dist.png
    vtamiq score --ref-dir refs/ --dist-dir dists/ --output scores.csv
    vtamiq score --pairs pairs.csv --output scores.json
    vtamiq score --pairs pairs.csv --output scores.json --resume       # after an interruption: only what is missing
    torchrun --standalone --nproc_per_node=4 -m vtamiq_metric.cli score --pairs pairs.csv --output scores.csv
    vtamiq score --pairs pairs.csv --output scores.csv --shard 3/8   # writes scores.shard-3-of-8.csv
    vtamiq merge-scores scores.csv                                   # joins scores.shard-*-of-8.csv
    vtamiq models
    vtamiq map ref.png dist.png --out map.png --show-sampling          # needs vtamiq-metric[plot]
    vtamiq convert vtamiq_kadis700k.pth --variant release2022 --out vtamiq-release2022/

Scores are distortions: 0 means identical and higher means worse.

Folder and CSV modes (``vtamiq score --help`` says the same to users):

- Batches: ``--batch-size`` consecutive pairs (default :func:`vtamiq_metric.api.auto_batch_size` for the first
  image's size) are decoded by a pool of threads while the model scores the previous batch; each pair is decoded and
  checked on its own, so a bad pair fails alone. The pairs of a batch that decoded are scored together, one model
  call per image size (and dtype), through ``api._score_prepared``, the core of :func:`vtamiq_metric.score`: CAPS
  draws do not depend on the batch, so the scores equal ``score()`` pair by pair (up to float rounding of batched
  kernels). A failing model call is retried pair by pair.
- Output: rows reach ``--output`` as batches finish (a CSV is appended to and flushed, a JSON file is rewritten
  atomically at most every ``_JSON_REWRITE_SECONDS``) and the file is rewritten in input order at the end, through
  :func:`vtamiq_metric._io.atomic_path`. SIGINT and SIGTERM stop the run after the current batch with every finished
  pair saved (exit status 130 and 143); ``--resume`` keeps the scored rows of the file (matched by ref and dist) and
  scores the others. Exit status: 0 all scored, 1 all failed, 2 usage error, 3 some failed.

Scaling out (folder and CSV modes): under ``torchrun`` every process (one per GPU, ``cuda:LOCAL_RANK``, or per CPU
worker) scores pairs ``rank, rank + world, ...`` of the pairs to score, the ranks exchange their rows after every batch
(all stop after the same batch on a signal), and rank 0 writes one output in input order. For
independent jobs (e.g. a Slurm array) ``--shard I/N`` scores only pairs whose index ``% N == I`` and writes
``<output stem>.shard-I-of-N<suffix>`` with two extra columns, ``index`` (position in the input list) and ``total``
(number of pairs in the input); ``vtamiq merge-scores OUTPUT`` checks that every pair is there exactly once and
writes OUTPUT in input order, identical to a single run's file. Both can be combined.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._io import atomic_write_text
from ._version import __version__

if TYPE_CHECKING:
    import torch

    from ._distributed import DistContext
    from .model.vtamiq import VTAMIQ

__all__ = ["main", "parse_shard", "shard_path"]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class CLIError(Exception):
    """A user error reported as one line on stderr with exit status 2."""


def _add_scoring_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="registered name, hf-hub:org/repo[@rev], or a local weights "
                                                       "path (default: the bundled model)")
    parser.add_argument("--patches", type=_positive_int, default=None, help="patches per image (default: the model's)")
    parser.add_argument("--repeats", type=_positive_int, default=1, help="seeded CAPS draws to average (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: CUDA if available)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto = bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16, AMX), fp32 "
                             "elsewhere")


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def parse_shard(text: str) -> tuple[int, int]:
    """Parse an ``--shard I/N`` value (``vtamiq score`` and ``vtamiq-train make-kadis``): ``"3/8"`` -> ``(3, 8)``.

    Raises:
        argparse.ArgumentTypeError: not ``I/N`` with ``0 <= I < N`` (argparse prints the message as the error).
    """
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if match is None or not 0 <= int(match[1]) < int(match[2]):
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N (e.g. 3/8), got {text!r}")
    return int(match[1]), int(match[2])


def shard_path(output: Path, index: int, count: int) -> Path:
    """The file ``vtamiq score --shard INDEX/COUNT --output OUTPUT`` writes, e.g. ``scores.shard-3-of-8.csv``."""
    return output.with_name(f"{output.stem}.shard-{index}-of-{count}{output.suffix}")


_SCORE_DESCRIPTION = """\
Score image pairs: one pair (REF DIST), two folders paired by file name (--ref-dir, --dist-dir), or a CSV list
(--pairs). Scores are distortions: 0 = identical, higher = worse.

The folder and CSV modes score --batch-size pairs per model call while background threads decode the next batch.
A batch holds consecutive pairs in input order; pairs of different image sizes within it are scored in separate
model calls, so mixed sizes work (sort the input by size for the fewest calls). Scores do not depend on the batch.

--output is kept current while the run goes: a .csv gets each batch's rows appended, a .json file is rewritten
atomically (at most every 2 s), and at the end the file is rewritten in input order. SIGINT (Ctrl-C) or SIGTERM
stops after the current batch and saves every finished pair (in a single process, a second signal stops at once);
rerun the same command with --resume to score only what is missing."""

_SCORE_EPILOG = """\
exit status:
  0    every pair was scored
  1    every pair failed, or an error stopped the run (e.g. an unreadable model or an unavailable device)
  2    usage error: bad arguments, a missing folder or pairs file, a pairs CSV without its ref,dist header, an
       --output suffix other than .csv or .json, or a --resume file written for another input
  3    some pairs failed: each is reported on stderr and has a row with its error in the output; the rest are scored
  130  interrupted by SIGINT, 143 by SIGTERM: the pairs finished so far are in --output"""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtamiq", description="VTAMIQ full-reference image quality "
                                     "(distortion score: 0 = identical, higher = worse).")
    parser.add_argument("--version", action="version", version=f"vtamiq-metric {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p_score = sub.add_parser("score", help="score image pairs", description=_SCORE_DESCRIPTION,
                             epilog=_SCORE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p_score.add_argument("ref", nargs="?", help="reference image (single-pair mode)")
    p_score.add_argument("dist", nargs="?", help="distorted image (single-pair mode)")
    p_score.add_argument("--ref-dir", type=Path, help="folder of references, paired with --dist-dir by file name")
    p_score.add_argument("--dist-dir", type=Path, help="folder of distorted images")
    p_score.add_argument("--pairs", type=Path, help="CSV with columns ref,dist (paths relative to the CSV)")
    p_score.add_argument("--output", type=Path, help="write results to this .csv or .json file (the suffix chooses "
                                                      "the format; any other suffix is refused)")
    p_score.add_argument("--json", action="store_true", help="print JSON instead of plain text")
    p_score.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p_score.add_argument("--shard", type=parse_shard, metavar="I/N",
                         help="score only pairs whose index %% N == I and write OUTPUT's shard file "
                              "(STEM.shard-I-of-N.SUFFIX); join shards with `vtamiq merge-scores OUTPUT`")
    p_score.add_argument("--batch-size", type=_positive_int, default=None, metavar="N",
                         help="pairs decoded and scored together (default: automatic, vtamiq_metric.api."
                              "auto_batch_size: a few on CPU, as many as fit in about half the free memory on CUDA)")
    p_score.add_argument("--resume", action="store_true",
                         help="keep the scores already in OUTPUT (matched by ref and dist paths), score only the "
                              "missing or failed pairs and complete the file; without it OUTPUT is replaced")
    p_score.add_argument("--max-pixels", type=_non_negative_int, default=None, metavar="N",
                         help="refuse images of more pixels than N before decoding them (default 150,000,000; "
                              "0 = no limit)")
    _add_scoring_options(p_score)

    p_merge = sub.add_parser("merge-scores", help="join the shard files of `vtamiq score --shard I/N`")
    p_merge.add_argument("output", type=Path, help="the --output given to the sharded runs (shards are found "
                                                   "beside it); written in input order")

    sub.add_parser("models", help="list registered weights")

    _add_map_parser(sub)

    p_convert = sub.add_parser("convert", help="convert an authors' .pth checkpoint to a safetensors model directory")
    p_convert.add_argument("checkpoint", type=Path)
    p_convert.add_argument("--variant", required=True, choices=("paper2021", "release2022", "head2024"),
                           help="code era of the checkpoint (the published KADIS-700k weights are release2022)")
    p_convert.add_argument("--out", type=Path, required=True, help="output directory")
    return parser


@dataclass(frozen=True)
class _Pair:
    """One pair to score: the two paths as they appear in the results, or the reason the input row is unusable."""

    ref: str
    dist: str
    error: str | None = None  # a malformed --pairs row: reported and skipped, never decoded


def _pairs_from_dirs(ref_dir: Path, dist_dir: Path) -> list[_Pair]:
    for folder in (ref_dir, dist_dir):
        if not folder.is_dir():
            raise CLIError(f"not a directory: {folder}")
    refs = {p.name: p for p in sorted(ref_dir.iterdir()) if p.suffix.lower() in _IMAGE_SUFFIXES}
    dists = {p.name: p for p in sorted(dist_dir.iterdir()) if p.suffix.lower() in _IMAGE_SUFFIXES}
    common = sorted(set(refs) & set(dists))
    if not common:
        raise CLIError(f"no file names in common between {ref_dir} and {dist_dir}")
    unpaired = sorted(set(refs) ^ set(dists))
    if unpaired:
        logging.getLogger(__name__).warning("%d files have no partner and are skipped: %s", len(unpaired),
                                            ", ".join(unpaired[:5]))
    return [_Pair(str(refs[name]), str(dists[name])) for name in common]


def _pairs_from_csv(path: Path) -> list[_Pair]:
    """The pairs of a ``--pairs`` CSV, one per data row; a malformed row becomes a pair holding its error.

    Paths are relative to the CSV's folder. A row is malformed when it has more or fewer cells than the header, or
    an empty (or blank) ``ref`` or ``dist`` cell; blank lines are skipped. A file without a ``ref,dist`` header raises
    :class:`CLIError` (a usage error).
    """
    if not path.is_file():
        raise CLIError(f"pairs file not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: a spreadsheet's byte-order mark
        reader = csv.reader(handle)
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
            error = None
            if len(cells) != len(header):
                error = f"expected {len(header)} cells ({','.join(header)}), got {len(cells)}"
            else:
                empty = [name for name in ("ref", "dist") if not given[name]]
                if empty:
                    error = (f"the {empty[0]!r} cell is empty" if len(empty) == 1
                             else "the 'ref' and 'dist' cells are empty")
            if error is not None:
                error = f"{path.name} line {start}: {error}"
            pairs.append(_Pair(ref, dist, error))
        return pairs


_OUTPUT_SUFFIXES = (".csv", ".json")
_FIELDS = ["ref", "dist", "score", "std", "error"]
_SHARD_FIELDS = ["index", "total", *_FIELDS]


def _check_output_suffix(output: Path) -> None:
    """Refuse an output file that is neither ``.csv`` nor ``.json`` (the format follows the suffix)."""
    if output.suffix.lower() not in _OUTPUT_SUFFIXES:
        raise CLIError(f"expected an output file ending in {' or '.join(_OUTPUT_SUFFIXES)} (the format follows the "
                       f"suffix), got {str(output)!r}")


def _write_results(rows: list[dict], output: Path, fields: list[str] = _FIELDS) -> None:
    """Write rows as JSON or CSV (by suffix), atomically."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".json":
        atomic_write_text(output, json.dumps(rows, indent=2) + "\n")
        return
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(output, table.getvalue(), newline="")


def _read_results(path: Path, *, partial: bool = False) -> list[dict]:
    """The rows of a results file. With ``partial``, a CSV's last line is dropped when it lacks its line end (a run
    killed while appending)."""
    with open(path, newline="", encoding="utf-8") as handle:  # newline="": CSV line ends reach the parser as written
        text = handle.read()
    if path.suffix.lower() == ".json":
        rows = json.loads(text)
        if not isinstance(rows, list):
            raise CLIError(f"{path}: expected a JSON list of rows, got {type(rows).__name__}")
        return rows
    if partial and text and not text.endswith(("\n", "\r")):
        text = text[:text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text, newline="")))


def _score(args: argparse.Namespace) -> int:
    modes = [args.ref is not None, args.ref_dir is not None or args.dist_dir is not None, args.pairs is not None]
    if sum(modes) != 1:
        raise CLIError("give exactly one of: REF DIST, --ref-dir with --dist-dir, or --pairs CSV")
    if args.output is not None:
        _check_output_suffix(args.output)
    elif args.resume:
        raise CLIError("--resume needs --output (the file whose missing pairs it scores)")
    if modes[0]:
        if args.dist is None:
            raise CLIError("single-pair mode needs two images: vtamiq score REF DIST")
        pairs = [_Pair(args.ref, args.dist)]
    elif modes[1]:
        if args.ref_dir is None or args.dist_dir is None:
            raise CLIError("--ref-dir and --dist-dir go together")
        pairs = _pairs_from_dirs(args.ref_dir, args.dist_dir)
    else:
        pairs = _pairs_from_csv(args.pairs)

    shard_i, shard_n = args.shard or (0, 1)
    if args.shard is not None and (modes[0] or args.output is None):
        raise CLIError("--shard needs the folder or CSV mode and --output (each shard writes its own file)")
    from . import _distributed as distributed

    ctx = distributed.init_from_env(args.device)
    try:
        return _score_pairs(args, pairs, single=modes[0], shard=(shard_i, shard_n), ctx=ctx)
    finally:
        distributed.shutdown()


# A JSON output is rewritten whole (atomically) after a batch when this many seconds passed since the last rewrite;
# a CSV output gets each batch's rows appended at once.
_JSON_REWRITE_SECONDS = 2.0
# At most this many threads decode images (fewer on machines with fewer cores, and never more than a batch).
_DECODE_THREADS = 4
# What a failing model call raises: the batch is retried pair by pair, and a pair that still fails is reported.
_PAIR_ERRORS = (OSError, ValueError, TypeError, RuntimeError)


class _Interrupted(BaseException):
    """A second SIGINT/SIGTERM: stop at once instead of after the current batch."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


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
        self._previous: dict[int, object] = {}

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


def _decode(pair: _Pair, patch_size: int, max_pixels: int | None) -> tuple[torch.Tensor, torch.Tensor] | str:
    """Decode and check one pair (in a decode thread): ``(ref, dist)``, each ``(1, 3, H, W)`` (uint8 for 8-bit
    files), or the error that makes the pair fail."""
    from ._validation import prepare_pair

    if pair.error is not None:
        return f"ValueError: {pair.error}"
    try:
        return prepare_pair(pair.ref, pair.dist, patch_size=patch_size, max_pixels=max_pixels, keep_uint8=True)
    except (OSError, ValueError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"


class _Prefetcher:
    """Batches of ``indices`` in order, each pair decoded in a pool of threads; batch k + 1 is submitted when batch
    k is handed out, so that it decodes while the model scores batch k (at most two batches are held)."""

    def __init__(self, pairs: list[_Pair], indices: list[int], batch_size: int, *, patch_size: int,
                 max_pixels: int | None) -> None:
        self._pairs = pairs
        self._batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
        self._options = (patch_size, max_pixels)
        threads = max(1, min(_DECODE_THREADS, os.cpu_count() or 1, batch_size))
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vtamiq-decode")
        self._pending: list[list[tuple[int, Future]]] = []
        self._submitted = 0
        self._submit()

    def _submit(self) -> None:
        if self._submitted < len(self._batches):
            batch = self._batches[self._submitted]
            self._pending.append([(k, self._pool.submit(_decode, self._pairs[k], *self._options)) for k in batch])
            self._submitted += 1

    def more(self) -> bool:
        """Whether a batch is still to be handed out."""
        return bool(self._pending)

    def next_batch(self) -> list[tuple[int, tuple[torch.Tensor, torch.Tensor] | str]]:
        """The next batch, decoded: ``(index, (ref, dist) or error)`` in input order; ``[]`` when none is left."""
        if not self._pending:
            return []
        current = self._pending.pop(0)
        self._submit()  # the next batch decodes while the caller scores this one
        return [(k, future.result()) for k, future in current]

    def close(self) -> None:
        """Stop the decode threads; decodes not yet started are cancelled."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _row(pair: _Pair, score: float | None = None, std: float | None = None, error: str | None = None) -> dict:
    return {"ref": pair.ref, "dist": pair.dist, "score": score, "std": std, "error": error}


def _failed(pair: _Pair, error: str) -> dict:
    where = pair.error if pair.error is not None else f"{pair.ref} / {pair.dist}: {error}"
    print(f"vtamiq: skipping {where}", file=sys.stderr)
    return _row(pair, error=error)


def _score_batch(decoded: list[tuple[int, tuple[torch.Tensor, torch.Tensor] | str]], pairs: list[_Pair],
                 model: VTAMIQ, device: torch.device, options: dict) -> list[tuple[int, dict]]:
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
        _score_group(members, pairs, model, device, options, rows)
    return [(k, rows[k]) for k, _ in decoded]


def _score_group(members: list[tuple[int, torch.Tensor, torch.Tensor]], pairs: list[_Pair], model: VTAMIQ,
                 device: torch.device, options: dict, rows: dict[int, dict]) -> None:
    import torch

    from .api import _score_prepared

    try:
        ref = torch.cat([ref for _, ref, _ in members]).to(device)
        dist = torch.cat([dist for _, _, dist in members]).to(device)
        mean, std = _score_prepared(model, ref, dist, **options)
        del ref, dist
    except _PAIR_ERRORS as exc:
        error = f"{type(exc).__name__}: {exc}"
        if len(members) == 1:
            rows[members[0][0]] = _failed(pairs[members[0][0]], error)
            return
        print(f"vtamiq: a batch of {len(members)} pairs failed ({error}); scoring them one by one", file=sys.stderr)
        for member in members:
            _score_group([member], pairs, model, device, options, rows)
        return
    for (k, _, _), value, spread in zip(members, mean.tolist(), std.tolist()):
        rows[k] = _row(pairs[k], value, spread)


def _auto_batch_size(args: argparse.Namespace, pairs: list[_Pair], mine: list[int], model: VTAMIQ,
                     device: torch.device, num_patches: int) -> int:
    """``--batch-size`` or, by default, :func:`vtamiq_metric.api.auto_batch_size` for the first readable image."""
    from ._precision import uses_bf16
    from ._validation import image_size
    from .api import auto_batch_size

    if args.batch_size is not None:
        return args.batch_size
    for k in mine[:16]:
        size = image_size(pairs[k].ref) if pairs[k].error is None else None
        if size is not None:
            return auto_batch_size(model.config, num_patches, size[0], size[1], len(mine), device,
                                   half_precision=uses_bf16(device, args.precision))
    return 1


class _Output:
    """The results file of a run (rank 0), kept current as batches finish.

    ``start`` writes the rows already known (``--resume``) atomically; ``add`` appends a batch's rows to a CSV and
    flushes, or rewrites a JSON file atomically when ``_JSON_REWRITE_SECONDS`` passed since its last rewrite;
    ``close`` rewrites the file atomically with every row in input order. A reader therefore always finds a valid
    file, and a run stopped by a signal or an error keeps every pair it finished.
    """

    def __init__(self, path: Path, fields: list[str], rows: dict[int, dict], *, total: int | None) -> None:
        self.path, self._fields, self._total = path, fields, total
        self._rows = dict(rows)
        self._json = path.suffix.lower() == ".json"
        self._handle: io.TextIOBase | None = None
        self._written = float("-inf")

    def _table(self, items: list[tuple[int, dict]]) -> list[dict]:
        if self._total is None:
            return [row for _, row in items]
        return [{"index": k, "total": self._total, **row} for k, row in items]

    def _rewrite(self) -> None:
        _write_results(self._table(sorted(self._rows.items())), self.path, self._fields)
        self._written = time.monotonic()

    def start(self) -> None:
        self._rewrite()
        if not self._json:
            self._handle = open(self.path, "a", newline="", encoding="utf-8")

    def add(self, items: list[tuple[int, dict]]) -> None:
        self._rows.update(items)
        if self._handle is not None:
            table = io.StringIO(newline="")
            csv.DictWriter(table, fieldnames=self._fields).writerows(self._table(items))
            self._handle.write(table.getvalue())  # one write per batch, then to the OS
            self._handle.flush()
        elif time.monotonic() - self._written >= _JSON_REWRITE_SECONDS:
            self._rewrite()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self._rewrite()


def _resumable(path: Path, pairs: list[_Pair], selected: list[int]) -> dict[int, dict]:
    """``--resume``: the rows of ``path`` that hold a score, by pair index (matched by the ref and dist paths).

    Rows without a score (failed pairs) are scored again. A missing file means nothing is done yet.

    Raises:
        CLIError: the file cannot be read, is not a results table, or holds pairs this input does not have.
    """
    if not path.exists():
        return {}
    try:
        rows = _read_results(path, partial=True)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CLIError(f"--resume: cannot read {path}: {exc}") from None
    where: dict[tuple[str, str], list[int]] = {}
    for k in selected:
        where.setdefault((pairs[k].ref, pairs[k].dist), []).append(k)
    done: dict[int, dict] = {}
    foreign = []
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("ref"), str) or not isinstance(row.get("dist"), str):
            raise CLIError(f"--resume: {path} is not a `vtamiq score` results file (expected rows with "
                           f"{', '.join(_FIELDS)})")
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
    return done


def _number(value: object) -> float | None:
    """A score cell read back: a float, or None for an empty, missing or non-numeric cell."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _score_pairs(args: argparse.Namespace, pairs: list[_Pair], *, single: bool, shard: tuple[int, int],
                 ctx: DistContext) -> int:
    """Score this process's share of ``pairs`` (shard, then rank) batch by batch; after every batch the ranks
    exchange their rows, rank 0 writes them, and all stop together after a signal."""
    import torch

    from . import _distributed as distributed
    from .api import DEFAULT_MAX_PIXELS, resolve_device, resolve_model

    shard_i, shard_n = shard
    selected = [k for k in range(len(pairs)) if k % shard_n == shard_i]
    output = None if args.output is None else shard_path(args.output, *shard) if args.shard else args.output
    done: dict[int, dict] = {}
    if args.resume:
        found: tuple[str, object] | None = None
        if ctx.is_main:  # rank 0 reads the file and tells the others
            try:
                found = ("ok", _resumable(output, pairs, selected))
            except CLIError as exc:
                found = ("error", str(exc))
        status, value = distributed.all_gather_objects(found)[0]
        if status == "error":
            raise CLIError(value)
        done = value
        if ctx.is_main and done:
            print(f"vtamiq: --resume: {len(done)} of {len(selected)} pairs already scored in {output}",
                  file=sys.stderr)
    todo = [k for k in selected if k not in done]
    mine = todo[ctx.rank::ctx.world_size]
    device = ctx.device if ctx.distributed else resolve_device(args.device, torch.empty(0), None)
    model = resolve_model(args.model, device)
    num_patches = model.config.num_patches if args.patches is None else args.patches
    batch_size = _auto_batch_size(args, pairs, mine, model, device, num_patches)
    options = {"num_patches": num_patches, "num_repeats": args.repeats, "seed": args.seed,
               "sampling": model.config.sampling, "precision": args.precision, "compile": False}
    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels or None

    results = dict(done)  # every rank holds every row (rows are exchanged after each batch)
    writer = None
    if output is not None and ctx.is_main:
        writer = _Output(output, _SHARD_FIELDS if args.shard else _FIELDS, done,
                         total=len(pairs) if args.shard else None)
    stream = ctx.is_main and not single and output is None and not args.json  # plain text lines on stdout
    progress = None
    if len(pairs) > 1 and not args.no_progress and ctx.is_main:
        from tqdm.auto import tqdm  # only the folder modes show a bar (every rank's pairs under torchrun)

        progress = tqdm(total=len(selected), initial=len(done), unit="pair", file=sys.stderr)
    interrupted: int | None = None
    prefetch = _Prefetcher(pairs, mine, batch_size, patch_size=model.config.patch_size, max_pixels=max_pixels)
    try:
        with _StopRequest(immediate=not ctx.distributed, announce=ctx.is_main) as stop:
            try:
                if writer is not None:
                    writer.start()
                while True:
                    decoded = prefetch.next_batch()
                    local = _score_batch(decoded, pairs, model, device, options) if decoded else []
                    parts = distributed.all_gather_objects((local, prefetch.more(), stop.signum))
                    new = sorted((item for part in parts for item in part[0]), key=lambda item: item[0])
                    results.update(new)
                    if writer is not None:
                        writer.add(new)
                    if stream:
                        for _, row in new:
                            shown = f"{row['score']:.6f}" if row["error"] is None else "error"
                            print(f"{row['ref']}\t{row['dist']}\t{shown}", flush=True)
                    if progress is not None:
                        progress.update(len(new))
                    signals = [part[2] for part in parts if part[2] is not None]
                    if signals:
                        interrupted = signals[0]
                        break
                    if not any(part[1] for part in parts):
                        break
            except _Interrupted as exc:
                interrupted = exc.signum
            finally:
                stop.defer()
                if writer is not None:
                    writer.close()  # every finished pair, in input order, even when an error is on its way
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
            if args.json:
                print(json.dumps(rows, indent=2))
        return 128 + interrupted
    if len(rows) != len(selected):
        missing = [k for k in selected if k not in results][:10]
        raise RuntimeError(f"expected results for all {len(selected)} pairs, missing pairs {missing}...")
    if ctx.is_main:
        _report(args, rows, single=single, shard=shard, total=len(pairs), output=output)
    failures = sum(row["error"] is not None for row in rows)
    if rows and failures == len(rows):
        return 1
    return 0 if failures == 0 else 3


def _report(args: argparse.Namespace, rows: list[dict], *, single: bool, shard: tuple[int, int], total: int,
            output: Path | None) -> None:
    if args.shard is not None:
        print(f"vtamiq: shard {shard[0]}/{shard[1]}: {len(rows)} of {total} pairs -> {output}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows[0] if single else rows, indent=2))
    elif single:
        if rows[0]["error"] is None:
            print(f"{rows[0]['score']:.6f}")


def _merge_scores(output: Path) -> int:
    _check_output_suffix(output)
    pattern = re.compile(rf"{re.escape(output.stem)}\.shard-(\d+)-of-(\d+){re.escape(output.suffix)}")
    found: dict[tuple[int, int], Path] = {}
    folder = output.parent if str(output.parent) else Path(".")
    for path in sorted(folder.glob(f"{output.stem}.shard-*-of-*{output.suffix}")):
        match = pattern.fullmatch(path.name)
        if match:
            found[(int(match[1]), int(match[2]))] = path
    if not found:
        raise CLIError(f"no shard files {output.stem}.shard-I-of-N{output.suffix} in {folder}")
    counts = sorted({n for _, n in found})
    if len(counts) != 1:
        raise CLIError(f"expected shard files of one --shard I/N split, got N = {counts} in {folder}")
    n = counts[0]
    missing = [i for i in range(n) if (i, n) not in found]
    if missing:
        raise CLIError(f"expected {n} shard files, missing shard(s) {missing} "
                       f"(e.g. {shard_path(output, missing[0], n)})")
    indexed: list[tuple[int, dict]] = []
    totals: set[int] = set()
    for (i, _), path in sorted(found.items()):
        for row in _read_results(path):
            try:
                k, total = int(row.pop("index")), int(row.pop("total"))
            except (KeyError, TypeError, ValueError):
                raise CLIError(f"{path}: expected integer 'index' and 'total' fields in every row") from None
            if k % n != i:
                raise CLIError(f"{path}: expected indices with index % {n} == {i}, got {k}")
            totals.add(total)
            indexed.append((k, row))
    if len(totals) > 1:
        raise CLIError(f"expected every shard to come from the same input, got totals {sorted(totals)}")
    total = totals.pop() if totals else 0
    indices = sorted(k for k, _ in indexed)
    if indices != list(range(total)):
        seen = set(indices)
        repeated = sorted({k for k in indices if indices.count(k) > 1})[:10]
        absent = [k for k in range(total) if k not in seen][:10]
        raise CLIError(f"expected each of {total} pairs exactly once, got {len(indices)} rows (missing {absent}, "
                       f"repeated {repeated})")
    _write_results([row for _, row in sorted(indexed, key=lambda x: x[0])], output)
    print(f"vtamiq: merged {total} pairs from {n} shards into {output}", file=sys.stderr)
    return 0


def _add_map_parser(sub: argparse._SubParsersAction) -> None:
    p_map = sub.add_parser("map", help="draw where VTAMIQ sees the damage (needs vtamiq-metric[plot])",
                           description="Write a figure: reference, distorted image, and the damage map "
                                       "(vtamiq_metric.damage_map: integrated gradients of the score, in score units "
                                       "per pixel) over the distorted image, with the score in the title.")
    p_map.add_argument("ref", type=Path, help="reference image")
    p_map.add_argument("dist", type=Path, help="distorted image (same size)")
    p_map.add_argument("--out", type=Path, required=True, help="figure file: .png, .pdf, .svg, ...")
    p_map.add_argument("--show-sampling", action="store_true",
                       help="add a panel with the CAPS sampling density (where the metric draws its patches)")
    p_map.add_argument("--draws", type=int, default=4, help="seeded CAPS draws to average (default 4)")
    p_map.add_argument("--steps", type=int, default=1, help="path points per draw (default 1)")
    p_map.add_argument("--model", default=None, help="registered name, hf-hub:org/repo[@rev], or a local weights "
                                                     "path (default: the bundled model)")
    p_map.add_argument("--patches", type=int, default=None, help="patches per image (default: the model's)")
    p_map.add_argument("--seed", type=int, default=0, help="first sampling seed (default 0)")
    p_map.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: CUDA if available)")


def _map(args: argparse.Namespace) -> int:
    from ._plotting import check_figure_path, save_figure

    check_figure_path(args.out)  # fail on a missing matplotlib or a bad suffix before the model runs
    from .maps import plot_damage_map

    for path in (args.ref, args.dist):
        if not path.is_file():
            raise CLIError(f"image not found: {path}")
    figure = plot_damage_map(str(args.ref), str(args.dist), model=args.model, num_patches=args.patches,
                             draws=args.draws, steps=args.steps, seed=args.seed, device=args.device,
                             show_sampling=args.show_sampling)
    save_figure(figure, args.out)
    print(args.out)
    return 0


def _models() -> int:
    from .hub import DEFAULT_MODEL, PRETRAINED

    for name in sorted(PRETRAINED):
        entry = PRETRAINED[name]
        where = f"bundled ({entry.bundled_path})" if entry.bundled_path else f"{entry.hf_hub_id}@{entry.revision}"
        default = " [default]" if name == DEFAULT_MODEL else ""
        print(f"{name}{default}\t{where}\t{entry.license}\t{entry.notes}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .model.convert import load_reference_checkpoint

    model = load_reference_checkpoint(args.checkpoint, args.variant)
    out = model.save_pretrained(args.out)
    print(f"wrote {out / 'model.safetensors'} ({args.variant}, depth {model.config.depth}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vtamiq`` command; returns the exit status (0 ok, 1 all pairs failed, 2 usage error, 3 some pairs
    failed)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="vtamiq: %(message)s")
    try:
        if args.command == "score":
            return _score(args)
        if args.command == "models":
            return _models()
        if args.command == "merge-scores":
            return _merge_scores(args.output)
        if args.command == "map":
            return _map(args)
        return _convert(args)
    except CLIError as exc:
        print(f"vtamiq: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError, TypeError, KeyError, ImportError) as exc:
        print(f"vtamiq: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
