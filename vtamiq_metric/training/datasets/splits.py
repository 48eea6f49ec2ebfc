"""Train/validation/test splits by reference image, as in the paper.

The paper splits every dataset randomly ~60/20/20 *along the reference images* (all distorted versions of a
reference stay in one split): LIVE 17/6/6, CSIQ 18/6/6, TID2013 15/5/5, KADID-10k 49/16/16, repeated for 20 runs.
:func:`make_split` reproduces those counts with ``val = test = round_half_up(0.2 * n)`` and ``train = n - val - test``.
(The reference HEAD truncates ``int(0.6 n)`` etc. and gives LIVE 19/5/5; the paper's counts are followed here.)

Randomness: a permutation from ``numpy.random.default_rng(seed)`` (never the global RNG) of the reference ids sorted in
natural order, so the same ids and seed give the same split whatever order the ids arrive in. Use the run index as the
seed for the paper's 20 repetitions.

Files: :meth:`Split.save` writes JSON with a SHA-256 checksum of the id lists; :meth:`Split.load` validates the
structure, rejects ids that appear twice, and rejects a file whose lists no longer match its checksum (delete the
``"checksum"`` field to accept a deliberately hand-edited split).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .base import _RecordDataset, natural_key

__all__ = ["Split", "make_split", "split_dataset"]

_FORMAT = "vtamiq-metric split"
_VERSION = 1
_PARTS = ("train", "val", "test")


def _checksum(train: Sequence[str], val: Sequence[str], test: Sequence[str]) -> str:
    canonical = json.dumps({"train": list(train), "val": list(val), "test": list(test)}, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Split:
    """Reference ids of one train/validation/test split.

    Attributes:
        train: reference ids to train on.
        val: reference ids to select the checkpoint on.
        test: reference ids to report results on.
        seed: the seed that produced the split, if known (informational).

    Raises:
        TypeError: a part is not a sequence of strings.
        ValueError: an id appears twice (within a part or across parts).
    """

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    seed: int | None = None

    def __post_init__(self) -> None:
        for part in _PARTS:
            ids = getattr(self, part)
            if isinstance(ids, str) or not isinstance(ids, (tuple, list)):
                raise TypeError(f"Split.{part}: expected a tuple of reference id strings, got {type(ids).__name__}")
            bad = [i for i in ids if not isinstance(i, str) or not i]
            if bad:
                raise TypeError(f"Split.{part}: expected non-empty reference id strings, got {bad[:5]}")
            object.__setattr__(self, part, tuple(ids))
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise TypeError(f"Split.seed: expected an int or None, got {type(self.seed).__name__}")
        counts = Counter(i for part in _PARTS for i in getattr(self, part))
        repeated = sorted((i for i, c in counts.items() if c > 1), key=natural_key)
        if repeated:
            where = {i: [p for p in _PARTS if i in getattr(self, p)] for i in repeated[:5]}
            raise ValueError(
                f"expected each reference id in exactly one split part, got {len(repeated)} repeated: {where}"
            )

    def counts(self) -> tuple[int, int, int]:
        """Number of references in (train, val, test)."""
        return len(self.train), len(self.val), len(self.test)

    def check_ids(self, ref_ids: Iterable[str]) -> None:
        """Raise ValueError if the split names a reference id that is not in ``ref_ids`` (e.g. a dataset's ids)."""
        known = set(ref_ids)
        unknown = sorted((i for p in _PARTS for i in getattr(self, p) if i not in known), key=natural_key)
        if unknown:
            raise ValueError(
                f"expected the split's reference ids to belong to the dataset, got {len(unknown)} "
                f"unknown: {unknown[:10]}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict including the format tag and checksum (see :meth:`save`)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "seed": self.seed,
            "train": list(self.train),
            "val": list(self.val),
            "test": list(self.test),
            "checksum": _checksum(self.train, self.val, self.test),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the split as JSON (UTF-8) to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Split:
        """Read and validate a split written by :meth:`save`.

        Args:
            path: JSON file.

        Returns:
            The split.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: the file is not a split file, is malformed, repeats an id or fails its checksum (the message
                names the file).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"expected a split JSON file, got {str(path)!r}, which does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: expected a JSON split file, got unparsable content ({err})") from err
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{path}: expected a JSON object with format {_FORMAT!r}, got {got!r}")
        if data.get("version") != _VERSION:
            raise ValueError(f"{path}: expected split file version {_VERSION}, got {data.get('version')!r}")
        for part in _PARTS:
            ids = data.get(part)
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ValueError(f"{path}: expected {part!r} to be a list of reference id strings, got {ids!r:.80}")
        if "checksum" in data:
            expected = _checksum(data["train"], data["val"], data["test"])
            if data["checksum"] != expected:
                raise ValueError(
                    f"{path}: the id lists do not match the file's checksum (expected {expected}, got "
                    f"{data['checksum']!r}); the file was modified after it was written. Remove the "
                    "'checksum' field to accept a hand-edited split."
                )
        try:
            return cls(tuple(data["train"]), tuple(data["val"]), tuple(data["test"]), seed=data.get("seed"))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from err


def _round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def _fraction(value: float, what: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected {what} as a float, got {type(value).__name__}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"expected {what} in [0, 1), got {value}")
    return Fraction(str(value))  # decimal text -> exact, so 0.2 * 30 is exactly 6


def make_split(ref_ids: Sequence[str], *, seed: int, val_fraction: float = 0.2, test_fraction: float = 0.2) -> Split:
    """Random split of reference ids into train/val/test (paper counts by default).

    ``val = round_half_up(val_fraction * n)``, ``test = round_half_up(test_fraction * n)``, ``train = n - val - test``:
    LIVE (29) 17/6/6, CSIQ (30) 18/6/6, TID2013 (25) 15/5/5, KADID-10k (81) 49/16/16.

    Args:
        ref_ids: unique reference ids (e.g. ``dataset.ref_ids()``); their order does not matter.
        seed: seed of ``numpy.random.default_rng``; the same ids and seed always give the same split.
        val_fraction: share of references for validation, in ``[0, 1)``.
        test_fraction: share of references for testing, in ``[0, 1)``.

    Returns:
        A :class:`Split`; each part is sorted in natural order.

    Raises:
        TypeError: wrong argument types.
        ValueError: duplicate or empty ids, or fractions that leave no training reference.
    """
    if isinstance(ref_ids, str) or not isinstance(ref_ids, Sequence):
        raise TypeError(f"expected ref_ids as a sequence of strings, got {type(ref_ids).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"expected seed as a non-negative int, got {seed!r}")
    bad = [i for i in ref_ids if not isinstance(i, str) or not i]
    if bad:
        raise TypeError(f"expected non-empty reference id strings, got {bad[:5]}")
    ids = sorted(ref_ids, key=natural_key)
    repeated = sorted((i for i, c in Counter(ids).items() if c > 1), key=natural_key)
    if repeated:
        raise ValueError(f"expected unique reference ids, got {len(repeated)} repeated: {repeated[:10]}")
    n = len(ids)
    n_val = _round_half_up(_fraction(val_fraction, "val_fraction") * n)
    n_test = _round_half_up(_fraction(test_fraction, "test_fraction") * n)
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(
            f"expected at least one training reference, got n={n}, val={n_val}, test={n_test} "
            f"(val_fraction={val_fraction}, test_fraction={test_fraction})"
        )
    order = np.random.default_rng(int(seed)).permutation(n)
    picked = [ids[k] for k in order]
    parts = (picked[:n_train], picked[n_train : n_train + n_val], picked[n_train + n_val :])
    train, val, test = (tuple(sorted(p, key=natural_key)) for p in parts)
    return Split(train, val, test, seed=int(seed))


# Any dataset of records with reference ids: IQADataset, PairwiseDataset.
D = TypeVar("D", bound=_RecordDataset[Any])


def split_dataset(dataset: D, split: Split) -> tuple[D, D, D]:
    """Apply a split to a dataset.

    Args:
        dataset: any dataset of this package.
        split: a split whose ids all belong to ``dataset``.

    Returns:
        (train, val, test) subsets of the same class (a part may be empty).

    Raises:
        ValueError: the split names ids the dataset does not have.
    """
    split.check_ids(dataset.ref_ids())
    return dataset.subset(split.train), dataset.subset(split.val), dataset.subset(split.test)
