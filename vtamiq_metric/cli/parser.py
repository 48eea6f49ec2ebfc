"""The ``vtamiq`` argument parser: one subparser per command; the options every scoring command shares are declared
once (:func:`add_model_options`), and the ``--output`` help of ``vtamiq score`` is built from the writer registry
(:data:`vtamiq_metric.cli.formats.WRITERS`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._checks import DEFAULT_MAX_PIXELS
from .._links import AUTHORS_REPOSITORY_URL, AUTHORS_WEIGHTS_URL
from .._precision import PRECISIONS
from .._version import __version__
from .common import choice_type, non_negative_int, parse_shard, positive_int, seed_int
from .formats import WRITERS, suffixes_text

__all__ = ["add_max_pixels_option", "add_model_options", "build_parser"]

_VARIANTS = ("paper2021", "release2022", "head2024")


def _score_description() -> str:
    formats = "\n".join(f"  {key:<6} {cls.help}" for key, cls in WRITERS.items())
    return f"""\
Score image pairs: one pair (REF DIST), two folders (--ref-dir, --dist-dir: each distorted file with the reference
of the same name, or of the longest stem that begins its name), or a CSV list (--pairs). Scores are distortions:
0 = identical, higher = worse.

The folder and CSV modes score --batch-size pairs per model call while background threads decode the next batch.
A batch holds consecutive pairs in input order; pairs of different image sizes within it are scored in separate
model calls, so mixed sizes work (sort the input by size for the fewest calls). Scores do not depend on the batch.

--output is kept current while the run goes, in the format its suffix names:
{formats}
At the end a file is rewritten in input order (unless it holds that already). SIGINT (Ctrl-C) or SIGTERM stops
after the current batch and saves every finished pair (in a single process, a second signal stops at once); rerun
the same command with --resume to score only what is missing.

The output file is protected: it is locked while a run writes it (OUTPUT.lock, removed at the end; a second run
writing it is refused, a lock left by a killed run is taken over) and it may not be one of the inputs.
OUTPUT.meta.json records what determines the scores (the model's sha256, patches, repeats, seed, precision, sampling
and viewing-distance settings): --resume refuses to add scores made with other ones, and merge-scores to join
shards made with different ones.

CSV cells are spreadsheet-safe: text starting with = + - @, a tab or a CR (a formula to a spreadsheet) or with '
gets a ' in front, which --resume and merge-scores drop. File names that are not UTF-8 are written as their bytes
(CSV, standard output) or \\udcXX escapes (JSON) and read back exactly. A non-finite score is a failed pair (no
score, an error), so the JSON is always valid."""


def _score_epilog() -> str:
    return f"""\
exit status:
  0    every pair was scored
  1    every pair failed, or an error stopped the run (e.g. an unreadable model or an unavailable device)
  2    usage error: bad arguments, a missing folder or pairs file, a pairs CSV without its ref,dist header, an
       --output suffix other than {suffixes_text()}, an --output that another run is writing or that is one of the
       inputs, or a --resume file written for another input or with other options
  3    some pairs failed: each is reported on stderr and has a row with its error in the output; the rest are scored
  130  interrupted by SIGINT, 143 by SIGTERM: the pairs finished so far are in --output"""


def add_output_option(parser: argparse.ArgumentParser, *, required: bool, help: str) -> None:
    """``--output`` (with its older spelling ``--out`` as an alias), a path."""
    parser.add_argument("--output", "--out", dest="output", type=Path, required=required, metavar="PATH",
                        help=f"{help} (--out is an alias)")


def add_max_pixels_option(parser: argparse.ArgumentParser) -> None:
    """``--max-pixels N`` (``max_pixels``; None = the default, 0 = no limit): ``vtamiq score`` and ``vtamiq map``."""
    parser.add_argument("--max-pixels", type=non_negative_int, default=None, metavar="N",
                        help=f"refuse images of more pixels than N before decoding them (default "
                             f"{DEFAULT_MAX_PIXELS:,}; 0 = no limit)")


def add_model_options(parser: argparse.ArgumentParser, *, repeats: int) -> None:
    """The options of every command that runs the metric: model, patches, repeats, seed, device.

    The values are checked like the Python API's (:mod:`vtamiq_metric._checks`), with the same words.
    """
    parser.add_argument("--model", default=None, help="registered name, hf-hub:org/repo[@rev], or a local weights "
                                                       "path (default: the bundled model)")
    parser.add_argument("--patches", type=positive_int, default=None, metavar="N",
                        help="patches per image (num_patches; default: the model's)")
    parser.add_argument("--repeats", type=positive_int, default=repeats, metavar="N",
                        help=f"seeded CAPS draws to average (num_repeats; default {repeats})")
    parser.add_argument("--seed", type=seed_int, default=0, help="first sampling seed (default 0)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: CUDA if available)")


def _add_score(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("score", help="score image pairs", description=_score_description(),
                            epilog=_score_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ref", nargs="?", help="reference image (single-pair mode)")
    parser.add_argument("dist", nargs="?", help="distorted image (single-pair mode)")
    parser.add_argument("--ref-dir", type=Path, help="folder of references: each file of --dist-dir is paired with the "
                                                     "reference of the same name, or else with the one whose stem "
                                                     "begins its name (the longest: refs/coffee.png for "
                                                     "dists/coffee_blur1.png and dists/coffee_jpeg10.png)")
    parser.add_argument("--dist-dir", type=Path, help="folder of distorted images")
    parser.add_argument("--pairs", type=Path, help="CSV with columns ref,dist (paths relative to the CSV)")
    add_output_option(parser, required=False,
                      help=f"where the results go: a {suffixes_text()} file (the suffix chooses the format; any "
                           f"other suffix is refused) or - for standard output (the default)")
    parser.add_argument("--json", action="store_true", help="print JSON on standard output instead of plain text")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--shard", type=parse_shard, metavar="I/N",
                        help="score only pairs whose index %% N == I and write OUTPUT's shard file "
                             "(STEM.shard-I-of-N.SUFFIX); join shards with `vtamiq merge-scores OUTPUT`")
    parser.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                        help="pairs decoded and scored together (default: automatic, vtamiq_metric.api."
                             "auto_batch_size: a few on CPU, as many as fit in about half the free memory on CUDA)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the scores already in OUTPUT (matched by ref and dist paths), score only the "
                             "missing or failed pairs and complete the file; refused when OUTPUT.meta.json shows "
                             "other options (model, patches, repeats, seed, precision, sampling); without it OUTPUT "
                             "is replaced")
    add_max_pixels_option(parser)
    add_model_options(parser, repeats=1)
    parser.add_argument("--precision", type=choice_type(PRECISIONS), default="auto",
                        metavar="{" + ",".join(PRECISIONS) + "}",
                        help="auto = bf16 autocast on GPUs of compute capability 8.0+ and on CPUs with native bf16 "
                             "(AVX512-BF16, AMX), fp16 on older GPUs, fp32 elsewhere")


def _add_merge_scores(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("merge-scores", help="join the shard files of `vtamiq score --shard I/N`")
    parser.add_argument("output", type=Path, help="the --output given to the sharded runs (shards are found beside "
                                                  "it); written in input order")


def _add_map(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("map", help="draw where VTAMIQ sees the damage (needs vtamiq-metric[plot])",
                            description="Write a figure: reference, distorted image, and the damage map "
                                        "(vtamiq_metric.damage_map: integrated gradients of the score, in score "
                                        "units per pixel) over the distorted image, with the score in the title.")
    parser.add_argument("ref", type=Path, help="reference image")
    parser.add_argument("dist", type=Path, help="distorted image (same size)")
    add_output_option(parser, required=True, help="figure file: .png, .pdf, .svg, ...")
    parser.add_argument("--show-sampling", action="store_true",
                        help="add a panel with the CAPS sampling density (where the metric draws its patches)")
    add_model_options(parser, repeats=4)
    parser.add_argument("--draws", dest="repeats", type=positive_int, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)  # the former name of --repeats
    parser.add_argument("--steps", type=positive_int, default=1, metavar="N",
                        help="path points per draw (default 1)")
    add_max_pixels_option(parser)


def _add_convert(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "convert", help="convert an authors' .pth checkpoint to a safetensors model directory",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"""\
Convert an authors' VTAMIQ checkpoint to a safetensors model directory, strictly: every key is checked and nothing is
skipped; the file is read with torch.load(weights_only=True), so nothing in it runs.

The paper's weights (KADIS-700k, vtamiq_kadis700k.pth, release2022 layout) are published by the authors on Google
Drive, linked from the README of {AUTHORS_REPOSITORY_URL}:
  {AUTHORS_WEIGHTS_URL}

Converting is optional: `vtamiq score --model vtamiq_kadis700k.pth` and load_model("vtamiq_kadis700k.pth") take the
checkpoint directly (converted once, then cached as safetensors).""")
    parser.add_argument("checkpoint", type=Path, help="the authors' .pth file, e.g. vtamiq_kadis700k.pth")
    parser.add_argument("--variant", default=None, choices=_VARIANTS,
                        help="code era of the checkpoint (default: detected from its keys; the published KADIS-700k "
                             "weights are release2022)")
    add_output_option(parser, required=True, help="output directory")


def build_parser() -> argparse.ArgumentParser:
    """The ``vtamiq`` parser; ``args.command`` names the subcommand."""
    parser = argparse.ArgumentParser(prog="vtamiq", description="VTAMIQ full-reference image quality "
                                     "(distortion score: 0 = identical, higher = worse).")
    parser.add_argument("--version", action="version", version=f"vtamiq-metric {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_score(sub)
    _add_merge_scores(sub)
    sub.add_parser("models", help="list registered weights")
    _add_map(sub)
    _add_convert(sub)
    return parser
