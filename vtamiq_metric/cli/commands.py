"""The small ``vtamiq`` commands: ``merge-scores``, ``models``, ``map`` and ``convert`` (``score`` is
:mod:`.scoring`)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .._frontend import DEFAULT_MAX_PIXELS
from .common import CLIError, out_of_memory, shard_path
from .formats import FIELDS, FileWriter, file_writer
from .outfile import OutputLock, changed_options, meta_path, read_record, write_record

__all__ = ["convert", "draw_map", "merge_scores", "models"]


def merge_scores(args: argparse.Namespace) -> int:
    """``vtamiq merge-scores OUTPUT``: join the shard files of ``vtamiq score --shard I/N`` into OUTPUT, in input
    order, after checking that every pair is there exactly once and that every shard was scored with the same options
    (their records, :mod:`.outfile`); OUTPUT gets that record too. OUTPUT is locked while it is written."""
    output: Path = args.output
    fmt = file_writer(output)
    with OutputLock(output):
        return _merge_shards(output, fmt)


def _merge_shards(output: Path, fmt: type[FileWriter]) -> int:
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
        for row in fmt.read_rows(path):
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
    write_record(output, _common_record(found))
    fmt.save([row for _, row in sorted(indexed, key=lambda x: x[0])], output, FIELDS)
    print(f"vtamiq: merged {total} pairs from {n} shards into {output}", file=sys.stderr)
    return 0


def _common_record(shards: dict[tuple[int, int], Path]) -> dict:
    """The record of options every shard file carries (:mod:`.outfile`); CLIError when one lacks it or differs."""
    records: list[tuple[Path, dict]] = []
    for _, path in sorted(shards.items()):
        record = read_record(path)
        if record is None:
            raise CLIError(f"{path} has no {meta_path(path).name} recording the options its scores were made with; "
                           f"score that shard again")
        changes = changed_options(records[0][1], record) if records else []
        if changes:
            raise CLIError(f"the shards were scored with different options: {records[0][0].name} -> {path.name}: "
                           f"{'; '.join(changes)}; score every shard with the same options")
        records.append((path, record))
    return records[0][1]


def models(args: argparse.Namespace) -> int:
    """``vtamiq models``: one line per registered model (name, where its weights are, licence, notes)."""
    from ..hub import DEFAULT_MODEL, PRETRAINED

    for name in sorted(PRETRAINED):
        entry = PRETRAINED[name]
        where = f"bundled ({entry.bundled_path})" if entry.bundled_path else f"{entry.hf_hub_id}@{entry.revision}"
        default = " [default]" if name == DEFAULT_MODEL else ""
        print(f"{name}{default}\t{where}\t{entry.license}\t{entry.notes}")
    return 0


def draw_map(args: argparse.Namespace) -> int:
    """``vtamiq map REF DIST --output FIGURE``: the damage-map figure (needs the ``plot`` extra)."""
    from .._plotting import check_figure_path, save_figure

    check_figure_path(args.output)  # fail on a missing matplotlib or a bad suffix before the model runs
    from ..maps import plot_damage_map

    for path in (args.ref, args.dist):
        if not path.is_file():
            raise CLIError(f"image not found: {path}")
    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels or None
    try:
        figure = plot_damage_map(str(args.ref), str(args.dist), model=args.model, num_patches=args.patches,
                                 num_repeats=args.repeats, steps=args.steps, seed=args.seed, device=args.device,
                                 show_sampling=args.show_sampling, max_pixels=max_pixels)
    except (MemoryError, RuntimeError) as exc:
        if not out_of_memory(exc):
            raise
        raise MemoryError(f"out of memory drawing the damage map of {args.ref} and {args.dist} ({exc}); downscale "
                          f"the images, or lower --max-pixels to refuse such images before decoding them") from None
    save_figure(figure, args.output)
    print(args.output)
    return 0


def convert(args: argparse.Namespace) -> int:
    """``vtamiq convert CHECKPOINT [--variant ERA] --output DIR``: an authors' ``.pth`` -> a safetensors directory."""
    from ..model.convert import load_reference_checkpoint

    model = load_reference_checkpoint(args.checkpoint, args.variant)  # variant None: detected from the keys
    out = model.save_pretrained(args.output)
    print(f"wrote {out / 'model.safetensors'} ({model.provenance['converted_from']}, depth {model.config.depth}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters)")
    return 0
