"""What every part of the ``vtamiq`` command shares: the usage error, the argument types, the shard file names.

The argument types check their values with :mod:`vtamiq_metric._checks`, the checks behind the Python API, so a bad
``--patches 0`` reads like a bad ``num_patches=0``: ``argument --patches: must be an int >= 1, got 0``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Collection
from pathlib import Path

from .._checks import check_choice, check_int, check_positive_int, check_seed

__all__ = ["CLIError", "choice_type", "int_type", "non_negative_int", "out_of_memory", "parse_shard", "positive_int",
           "seed_int", "shard_path"]


class CLIError(Exception):
    """A user error reported as one line on stderr with exit status 2."""


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the machine ran out of memory: a ``MemoryError``, ``torch.OutOfMemoryError`` (CUDA), or
    the ``RuntimeError`` of torch's CPU allocator (``DefaultCPUAllocator: can't allocate memory``)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text.lower() or "can't allocate memory" in text)


def int_type(check: Callable[[str, object], int]) -> Callable[[str], int]:
    """An argparse ``type`` that reads an int and checks it with ``check`` (one of :mod:`vtamiq_metric._checks`)."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int, got {text!r}") from None
        try:
            return check("", value)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _check_non_negative(name: str, value: object) -> int:
    check_int(name, value)
    if value < 0:  # type: ignore[operator]
        raise ValueError(f"{name + ' ' if name else ''}must be an int >= 0, got {value!r}")
    return value  # type: ignore[return-value]


positive_int = int_type(check_positive_int)
non_negative_int = int_type(_check_non_negative)
seed_int = int_type(check_seed)


def choice_type(choices: Collection[str]) -> Callable[[str], str]:
    """An argparse ``type`` for one of ``choices``, worded as the Python API words it (``must be one of (...)``)."""

    def convert(text: str) -> str:
        try:
            return check_choice("", text, choices)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


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
