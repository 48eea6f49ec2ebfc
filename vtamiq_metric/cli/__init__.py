"""The ``vtamiq`` command: score image pairs, merge shard files, list models, draw damage maps, convert checkpoints.

Examples::

    vtamiq score ref.png dist.png
    vtamiq score --ref-dir refs/ --dist-dir dists/ --output scores.csv
    vtamiq score --pairs pairs.csv --output scores.json
    vtamiq score --pairs pairs.csv --output scores.json --resume       # after an interruption: only what is missing
    torchrun --standalone --nproc_per_node=4 -m vtamiq_metric.cli score --pairs pairs.csv --output scores.csv
    vtamiq score --pairs pairs.csv --output scores.csv --shard 3/8   # writes scores.shard-3-of-8.csv
    vtamiq merge-scores scores.csv                                   # joins scores.shard-*-of-8.csv
    vtamiq models
    vtamiq map ref.png dist.png --output map.png --show-sampling       # needs vtamiq-metric[plot]
    vtamiq convert vtamiq_kadis700k.pth --variant release2022 --output vtamiq-release2022/

Scores are distortions: 0 means identical and higher means worse.

The package: :mod:`.parser` (the arguments), :mod:`.pairs` (the input modes), :mod:`.scoring` (the batch-scoring loop
of ``vtamiq score``), :mod:`.formats` (the result formats, one registry), :mod:`.commands` (the other commands),
:mod:`.outfile` (the lock and the record of options of a results file), :mod:`.common` (the usage error, argument
types, shard file names).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from .._checks import CLI, speaking
from .common import CLIError, parse_shard, shard_path

__all__ = ["main", "parse_shard", "shard_path"]

# Exit status after Ctrl-C outside the scoring loop (which handles SIGINT itself): 128 + SIGINT, as a shell reports it.
EXIT_INTERRUPTED = 130


def _handlers() -> dict[str, Callable[[argparse.Namespace], int]]:
    """One handler per subcommand, given the parsed arguments; each returns the exit status. Imported when the
    command runs, inside :func:`main`'s Ctrl-C guard."""
    from .commands import convert, draw_map, merge_scores, models
    from .scoring import run_score

    return {"score": run_score, "merge-scores": merge_scores, "models": models, "map": draw_map, "convert": convert}


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: TextIO | None = None, line: str | None = None) -> None:
    """``warnings.showwarning`` of the command: ``vtamiq: warning: MESSAGE``, one line, no source line (e.g. a CMYK
    image converted to RGB with Pillow, which is not colour-managed)."""
    text = " ".join(str(message).split())
    print(f"vtamiq: warning: {text}", file=file if file is not None else sys.stderr)


@contextmanager
def _command_line_words() -> Iterator[None]:
    """While a command runs: messages name flags (``--device cpu``, not ``device='cpu'``) and warnings print as one
    line each. Restored afterwards (``main`` may be called in-process, e.g. by tests)."""
    previous = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        with speaking(CLI):
            yield
    finally:
        warnings.showwarning = previous


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vtamiq`` command; returns the exit status (0 ok, 1 error or all pairs failed, 2 usage error, 3 some
    pairs failed, 128 + N after signal N; Ctrl-C before scoring starts, e.g. while the model loads: 130 with a
    one-line message)."""
    try:
        with _command_line_words():
            from .parser import build_parser

            args = build_parser().parse_args(argv)
            logging.basicConfig(level=logging.WARNING, format="vtamiq: %(message)s")
            try:
                return _handlers()[args.command](args)
            except CLIError as exc:
                print(f"vtamiq: error: {exc}", file=sys.stderr)
                return 2
            except (OSError, ValueError, TypeError, KeyError, ImportError, MemoryError) as exc:
                print(f"vtamiq: error: {exc or type(exc).__name__}", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        print("vtamiq: interrupted (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED
