"""The checks of scalar options, written once so that every face words a bad value the same way; renamed keywords.

``score()``, ``VTAMIQLoss``, ``VTAMIQMetric``, ``damage_map`` and the ``vtamiq`` command all check ``num_patches``,
``num_repeats``, ``seed``, ``batch_size``... through these functions (most of them through
:class:`vtamiq_metric._frontend.ScoringOptions`). The rules:

- a wrong type is a ``TypeError`` that names the expected and the received type: ``"steps must be an int, got
  float"``; a bool is not an int here (``num_repeats=True`` is refused, not read as 1);
- a value out of range is a ``ValueError`` that names the rule and the value: ``"num_patches must be an int >= 1,
  got 0"``.

With ``name=""`` the message starts at "must be", which the command line uses after argparse's ``argument --flag:``.

Messages that tell the user what to pass speak the caller's language: :class:`Vocabulary` spells an option as a
Python keyword (``device='cpu'``, :data:`API`, the default) or as a ``vtamiq`` flag (``--device cpu``, :data:`CLI`);
the command line sets :data:`CLI` for the duration of a command with :func:`speaking`, and message writers read it with
:func:`vocabulary`.

:func:`renamed_keywords` keeps an old keyword name working, with a ``DeprecationWarning``, after a rename.

This module imports nothing (not even torch), so every layer and the command line's parser may use it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import warnings
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

__all__ = ["API", "CLI", "DEFAULT_MAX_PIXELS", "Vocabulary", "check_bool", "check_choice", "check_int",
           "check_optional_positive_int", "check_positive_int", "check_seed", "renamed_keywords", "speaking",
           "vocabulary"]

#: The default pixel limit per image of every face: about 2.2 GiB of memory for a pair of 8-bit images (see api's
#: "Memory"). Here, in a torch-free module, so that the command line's help can quote it without importing torch.
DEFAULT_MAX_PIXELS = 150_000_000

P = ParamSpec("P")
R = TypeVar("R")


def _subject(name: str) -> str:
    return f"{name} must" if name else "must"


def check_int(name: str, value: object) -> int:
    """``value`` if it is an int (not a bool), else ``TypeError("NAME must be an int, got TYPE")``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{_subject(name)} be an int, got {type(value).__name__}")
    return value


def check_seed(name: str, value: object) -> int:
    """``value`` if it is an int in ``[0, 2**64)`` (a CPU generator's seed); ``TypeError``/``ValueError`` otherwise."""
    check_int(name, value)
    if not 0 <= value < 2**64:  # type: ignore[operator]
        raise ValueError(f"{_subject(name)} be an int in [0, 2**64), got {value!r}")
    return value  # type: ignore[return-value]


def check_positive_int(name: str, value: object) -> int:
    """``value`` if it is an int >= 1; ``TypeError`` for another type, ``ValueError`` below 1."""
    check_int(name, value)
    if value < 1:  # type: ignore[operator]
        raise ValueError(f"{_subject(name)} be an int >= 1, got {value!r}")
    return value  # type: ignore[return-value]


def check_optional_positive_int(name: str, value: object) -> int | None:
    """``value`` if it is None or an int >= 1; ``TypeError`` for another type, ``ValueError`` below 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{_subject(name)} be an int >= 1 or None, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{_subject(name)} be an int >= 1 or None, got {value!r}")
    return value


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a bool, else ``TypeError("NAME must be a bool, got TYPE")``."""
    if not isinstance(value, bool):
        raise TypeError(f"{_subject(name)} be a bool, got {type(value).__name__}")
    return value


def check_choice(name: str, value: object, choices: Collection[str]) -> str:
    """``value`` if it is one of ``choices``, else ``ValueError("NAME must be one of (...), got VALUE")``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{_subject(name)} be one of {tuple(choices)}, got {value!r}")
    return value


def renamed_keywords(**renames: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: accept each old keyword name (``old="new"``) as a deprecated alias of its new name.

    A call that passes an old name gets a ``DeprecationWarning`` and runs with the value under the new name; passing
    both names is a ``TypeError``. The decorated function keeps its signature (``functools.wraps``).

    Example:
        >>> @renamed_keywords(draws="num_repeats")
        ... def f(*, num_repeats: int = 4) -> int:
        ...     return num_repeats
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DeprecationWarning)
        ...     f(draws=2)
        2
    """

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(f"{function.__name__}() got both {new}= and its deprecated name {old}=; pass "
                                    f"{new}= only")
                warnings.warn(f"{function.__name__}(): {old}= is deprecated, use {new}=", DeprecationWarning,
                              stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper

    return decorate


# Python keyword -> `vtamiq` flag, where the flag is not the keyword with dashes.
_FLAGS = {"num_patches": "--patches", "num_repeats": "--repeats"}


@dataclass(frozen=True)
class Vocabulary:
    """How a message names an option the user should pass: a Python keyword or a ``vtamiq`` command-line flag.

    Attributes:
        cli: spell options as flags (``--device cpu``) rather than keywords (``device='cpu'``).
    """

    cli: bool = False

    def option(self, name: str, value: str | None = None) -> str:
        """``name`` (a Python keyword) as the user writes it, with ``value`` if given.

        Example:
            >>> API.option("device", "cpu"), CLI.option("device", "cpu"), CLI.option("num_patches")
            ("device='cpu'", '--device cpu', '--patches')
        """
        if self.cli:
            flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
            return flag if value is None else f"{flag} {value}"
        return f"{name}=" if value is None else f"{name}={value!r}"

    def name(self, name: str) -> str:
        """``name`` (a Python keyword) without a value: ``"device"`` / ``"--device"``."""
        return self.option(name) if self.cli else name

    def unset(self, name: str) -> str:
        """How to leave option ``name`` at its default: ``"leave device unset"`` / ``"leave out --device"``."""
        return f"leave out {self.option(name)}" if self.cli else f"leave {name} unset"


#: Python keywords (``score()``, the loss, the metric...): the default.
API = Vocabulary(cli=False)
#: The ``vtamiq`` command's flags.
CLI = Vocabulary(cli=True)

_VOCABULARY: contextvars.ContextVar[Vocabulary] = contextvars.ContextVar("vtamiq_vocabulary", default=API)


def vocabulary() -> Vocabulary:
    """The vocabulary of the running caller: :data:`CLI` inside :func:`speaking` (``vtamiq``), else :data:`API`."""
    return _VOCABULARY.get()


@contextlib.contextmanager
def speaking(words: Vocabulary) -> Iterator[Vocabulary]:
    """Within this block (and this thread or task), messages name options in ``words``."""
    token = _VOCABULARY.set(words)
    try:
        yield words
    finally:
        _VOCABULARY.reset(token)
