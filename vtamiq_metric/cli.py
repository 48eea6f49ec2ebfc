"""The ``vtamiq`` command: score image pairs, list registered models, convert the authors' checkpoints.

Examples::

    vtamiq score ref.png dist.png
    vtamiq score --ref-dir refs/ --dist-dir dists/ --output scores.csv
    vtamiq score --pairs pairs.csv --output scores.json
    torchrun --standalone --nproc_per_node=4 -m vtamiq_metric.cli score --pairs pairs.csv --output scores.csv
    vtamiq score --pairs pairs.csv --output scores.csv --shard 3/8   # writes scores.shard-3-of-8.csv
    vtamiq merge-scores scores.csv                                   # joins scores.shard-*-of-8.csv
    vtamiq models
    vtamiq map ref.png dist.png --out map.png --show-sampling          # needs vtamiq-metric[plot]
    vtamiq convert vtamiq_kadis700k.pth --variant release2022 --out vtamiq-release2022/

Scores are distortions: 0 means identical and higher means worse.

Scaling out (folder and CSV modes): under ``torchrun`` every process (one per GPU, ``cuda:LOCAL_RANK``, or per CPU
worker) scores pairs ``rank, rank + world, ...`` of the input list and rank 0 writes one output in input order. For
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
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._io import atomic_write_text
from ._version import __version__

if TYPE_CHECKING:
    from ._distributed import DistContext

__all__ = ["main", "parse_shard", "shard_path"]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class CLIError(Exception):
    """A user error reported as one line on stderr with exit status 2."""


def _add_scoring_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="registered name, hf-hub:org/repo[@rev], or a local weights "
                                                       "path (default: the bundled model)")
    parser.add_argument("--patches", type=int, default=None, help="patches per image (default: the model's)")
    parser.add_argument("--repeats", type=int, default=1, help="seeded CAPS draws to average (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: CUDA if available)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto = bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16, AMX), fp32 "
                             "elsewhere")


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


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtamiq", description="VTAMIQ full-reference image quality "
                                     "(distortion score: 0 = identical, higher = worse).")
    parser.add_argument("--version", action="version", version=f"vtamiq-metric {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p_score = sub.add_parser("score", help="score image pairs")
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


def _read_results(path: Path) -> list[dict]:
    if path.suffix.lower() == ".json":
        rows = json.loads(path.read_text())
        if not isinstance(rows, list):
            raise CLIError(f"{path}: expected a JSON list of rows, got {type(rows).__name__}")
        return rows
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _score(args: argparse.Namespace) -> int:
    modes = [args.ref is not None, args.ref_dir is not None or args.dist_dir is not None, args.pairs is not None]
    if sum(modes) != 1:
        raise CLIError("give exactly one of: REF DIST, --ref-dir with --dist-dir, or --pairs CSV")
    if args.output is not None:
        _check_output_suffix(args.output)
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


def _score_pairs(args: argparse.Namespace, pairs: list[_Pair], *, single: bool, shard: tuple[int, int],
                 ctx: DistContext) -> int:
    """Score this process's share of ``pairs`` (shard, then rank), gather on every rank, report on rank 0."""
    import torch

    from .api import resolve_device, resolve_model, score
    from . import _distributed as distributed

    shard_i, shard_n = shard
    selected = [k for k in range(len(pairs)) if k % shard_n == shard_i]
    mine = selected[ctx.rank::ctx.world_size]
    device = ctx.device if ctx.distributed else resolve_device(args.device, torch.empty(0), None)
    model = resolve_model(args.model, device)
    options = {"model": model, "num_patches": args.patches, "num_repeats": args.repeats, "seed": args.seed,
               "precision": args.precision, "return_std": True}
    local: list[tuple[int, dict]] = []
    progress = None
    if len(pairs) > 1 and not args.no_progress and ctx.is_main:
        from tqdm.auto import tqdm  # optional: only the folder modes show a bar (rank 0's share under torchrun)

        progress = tqdm(total=len(mine), unit="pair", file=sys.stderr)
    for k in mine:
        pair = pairs[k]
        row = {"ref": pair.ref, "dist": pair.dist, "score": None, "std": None, "error": None}
        if pair.error is not None:
            row["error"] = f"ValueError: {pair.error}"
            print(f"vtamiq: skipping {pair.error}", file=sys.stderr)
        else:
            try:
                mean, std = score(pair.ref, pair.dist, **options)
                row["score"], row["std"] = float(mean[0]), float(std[0])
            except (OSError, ValueError, TypeError) as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
                print(f"vtamiq: skipping {pair.ref} / {pair.dist}: {row['error']}", file=sys.stderr)
        local.append((k, row))
        if progress is not None:
            progress.update()
    if progress is not None:
        progress.close()

    gathered = sorted((item for part in distributed.all_gather_objects(local) for item in part), key=lambda x: x[0])
    if [k for k, _ in gathered] != selected:
        raise RuntimeError(f"expected results for pairs {selected[:10]}..., got {[k for k, _ in gathered][:10]}...")
    rows = [row for _, row in gathered]
    failures = sum(row["error"] is not None for row in rows)
    if ctx.is_main:
        _report(args, rows, gathered, single=single, shard=shard, total=len(pairs))
    if rows and failures == len(rows):
        return 1
    return 0 if failures == 0 else 3


def _report(args: argparse.Namespace, rows: list[dict], indexed: list[tuple[int, dict]], *, single: bool,
            shard: tuple[int, int], total: int) -> None:
    if args.shard is not None:
        path = shard_path(args.output, *shard)
        _write_results([{"index": k, "total": total, **row} for k, row in indexed], path, _SHARD_FIELDS)
        print(f"vtamiq: shard {shard[0]}/{shard[1]}: {len(rows)} of {total} pairs -> {path}", file=sys.stderr)
    elif args.output is not None:
        _write_results(rows, args.output)
    if args.json:
        print(json.dumps(rows[0] if single else rows, indent=2))
    elif single:
        if rows[0]["error"] is None:
            print(f"{rows[0]['score']:.6f}")
    elif args.output is None:
        for row in rows:
            shown = f"{row['score']:.6f}" if row["error"] is None else "error"
            print(f"{row['ref']}\t{row['dist']}\t{shown}")


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
