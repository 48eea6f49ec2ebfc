"""The ``vtamiq`` command: score image pairs, list registered models, convert the authors' checkpoints.

Examples::

    vtamiq score ref.png dist.png
    vtamiq score --ref-dir refs/ --dist-dir dists/ --output scores.csv
    vtamiq score --pairs pairs.csv --output scores.json
    vtamiq models
    vtamiq convert vtamiq_kadis700k.pth --variant release2022 --out vtamiq-release2022/

Scores are distortions: 0 means identical and higher means worse.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ._version import __version__

__all__ = ["main"]

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
                        help="auto = bf16 autocast on CUDA, fp32 on CPU")


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
    p_score.add_argument("--output", type=Path, help="write results to this .csv or .json file")
    p_score.add_argument("--json", action="store_true", help="print JSON instead of plain text")
    p_score.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_scoring_options(p_score)

    sub.add_parser("models", help="list registered weights")

    p_convert = sub.add_parser("convert", help="convert an authors' .pth checkpoint to a safetensors model directory")
    p_convert.add_argument("checkpoint", type=Path)
    p_convert.add_argument("--variant", required=True, choices=("paper2021", "release2022", "head2024"),
                           help="code era of the checkpoint (the published KADIS-700k weights are release2022)")
    p_convert.add_argument("--out", type=Path, required=True, help="output directory")
    return parser


def _pairs_from_dirs(ref_dir: Path, dist_dir: Path) -> list[tuple[Path, Path]]:
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
    return [(refs[name], dists[name]) for name in common]


def _pairs_from_csv(path: Path) -> list[tuple[Path, Path]]:
    if not path.is_file():
        raise CLIError(f"pairs file not found: {path}")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"ref", "dist"} <= set(reader.fieldnames):
            raise CLIError(f"{path} must have a header with columns 'ref' and 'dist', got {reader.fieldnames}")
        return [(path.parent / row["ref"], path.parent / row["dist"]) for row in reader]


def _write_results(rows: list[dict], output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".json":
        output.write_text(json.dumps(rows, indent=2) + "\n")
        return
    with open(output, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["ref", "dist", "score", "std", "error"])
        writer.writeheader()
        writer.writerows(rows)


def _score(args: argparse.Namespace) -> int:
    import torch

    from .api import resolve_device, resolve_model, score

    modes = [args.ref is not None, args.ref_dir is not None or args.dist_dir is not None, args.pairs is not None]
    if sum(modes) != 1:
        raise CLIError("give exactly one of: REF DIST, --ref-dir with --dist-dir, or --pairs CSV")
    if modes[0]:
        if args.dist is None:
            raise CLIError("single-pair mode needs two images: vtamiq score REF DIST")
        pairs = [(Path(args.ref), Path(args.dist))]
    elif modes[1]:
        if args.ref_dir is None or args.dist_dir is None:
            raise CLIError("--ref-dir and --dist-dir go together")
        pairs = _pairs_from_dirs(args.ref_dir, args.dist_dir)
    else:
        pairs = _pairs_from_csv(args.pairs)

    device = resolve_device(args.device, torch.empty(0), None)
    model = resolve_model(args.model, device)
    options = dict(model=model, num_patches=args.patches, num_repeats=args.repeats, seed=args.seed,
                   precision=args.precision, return_std=True)
    rows: list[dict] = []
    failures = 0
    progress = None
    if len(pairs) > 1 and not args.no_progress:
        from tqdm.auto import tqdm  # optional: only the folder modes show a bar

        progress = tqdm(total=len(pairs), unit="pair", file=sys.stderr)
    for ref, dist in pairs:
        row = {"ref": str(ref), "dist": str(dist), "score": None, "std": None, "error": None}
        try:
            mean, std = score(str(ref), str(dist), **options)
            row["score"], row["std"] = float(mean[0]), float(std[0])
        except (OSError, ValueError, TypeError) as exc:
            failures += 1
            row["error"] = f"{type(exc).__name__}: {exc}"
            print(f"vtamiq: skipping {ref} / {dist}: {row['error']}", file=sys.stderr)
        rows.append(row)
        if progress is not None:
            progress.update()
    if progress is not None:
        progress.close()

    if args.output is not None:
        _write_results(rows, args.output)
    if args.json:
        print(json.dumps(rows[0] if modes[0] else rows, indent=2))
    elif modes[0]:
        if rows[0]["error"] is None:
            print(f"{rows[0]['score']:.6f}")
    elif args.output is None:
        for row in rows:
            shown = f"{row['score']:.6f}" if row["error"] is None else "error"
            print(f"{row['ref']}\t{row['dist']}\t{shown}")
    if failures == len(rows):
        return 1
    return 0 if failures == 0 else 3


def _models() -> int:
    from .hub import DEFAULT_MODEL, PRETRAINED

    if not PRETRAINED:
        print("no registered weights in this version; load a local file or hf-hub:org/repo")
        return 0
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
        return _convert(args)
    except CLIError as exc:
        print(f"vtamiq: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError, TypeError, KeyError) as exc:
        print(f"vtamiq: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
