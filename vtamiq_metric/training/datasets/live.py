"""LIVE Image Quality Assessment Database, Release 2 (Sheikh et al., 2006).

Official layout (``databaserelease2/`` after unzipping; names matched case-insensitively)::

    <root>/refimgs/<name>.bmp                      29 references
    <root>/jp2k/img1.bmp ... img227.bmp            <root>/jpeg/img1.bmp ... img233.bmp
    <root>/wn/img1.bmp ... img174.bmp              <root>/gblur/img1.bmp ... img174.bmp
    <root>/fastfading/img1.bmp ... img174.bmp
    <root>/dmos_realigned.mat   dmos_new (1x982), orgs (1x982)      [realigned scores, the default]
    <root>/dmos.mat             dmos (1x982), orgs (1x982)          [original scores]
    <root>/refnames_all.mat     refnames_all (1x982 cell of char)

The 982 label entries map to files *by position*: entries 0..226 are ``jp2k/img{k+1}.bmp``, the next 233 are
``jpeg/...``, then 174 each for ``wn``, ``gblur`` and ``fastfading``. Entries with ``orgs == 1`` are copies of the
reference and are skipped, leaving 779 distorted images. The score is a DMOS: **lower is better**. The paper followed
the reference code, which reads the realigned ``dmos_new`` (``scores="realigned"``); ``scores="original"`` reads
``dmos.mat``'s ``dmos``. ``ref_id`` is the reference file stem (e.g. ``"bikes"``); ``dist_type`` is the folder name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from .base import IQADataset, LabelledPair, require

__all__ = ["LIVE_BLOCKS", "LIVEDataset"]

#: (folder, number of label entries) in label order.
LIVE_BLOCKS: tuple[tuple[str, int], ...] = (
    ("jp2k", 227),
    ("jpeg", 233),
    ("wn", 174),
    ("gblur", 174),
    ("fastfading", 174),
)

_SCORE_FILES = {"realigned": ("dmos_realigned.mat", "dmos_new"), "original": ("dmos.mat", "dmos")}


def _load_mat(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Load the given variables from a MATLAB file, raising ValueError naming the file on any problem."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except Exception as err:  # scipy raises several types (ValueError, TypeError, MatReadError) for corrupt files
        raise ValueError(f"{path}: expected a readable MATLAB .mat file, got an error: {err}") from err
    missing = [k for k in keys if k not in mat]
    if missing:
        present = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: expected variable(s) {list(keys)}, missing {missing}; the file holds {present}")
    return {k: mat[k] for k in keys}


def _cell_str(value: object, path: Path, index: int) -> str:
    """One element of a MATLAB cell array of char as a Python string."""
    while isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, str):
        return value.strip()
    got = f"an array of shape {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
    raise ValueError(f"{path}: expected a file name string at entry {index}, got {got}")


class LIVEDataset(IQADataset):
    """LIVE Release 2 in its official layout (29 references, 779 distorted images, DMOS, lower = better).

    Args:
        root: the ``databaserelease2`` folder.
        scores: ``"realigned"`` (``dmos_realigned.mat``/``dmos_new``, as the paper's code) or ``"original"``
            (``dmos.mat``/``dmos``).
        blocks: (folder, count) pairs giving the positional label-to-file mapping; the default is the official one.
            Their counts must sum to the length of the label arrays.
        linearize: histogram-equalise the targets (paper: yes).
        validate_images: decode every image once at open time.
        skip_missing: drop pairs with missing images (warning) instead of raising FileNotFoundError.

    Raises:
        FileNotFoundError: the folder, a ``.mat`` file or an image is missing (named in the message).
        ValueError: a ``.mat`` file is unreadable or inconsistent (named in the message).
    """

    name: ClassVar[str] = "live"
    higher_is_better: ClassVar[bool] = False
    layout: ClassVar[str] = "LIVE Release 2: refimgs/, jp2k/, jpeg/, wn/, gblur/, fastfading/, *.mat"

    def __init__(
        self,
        root: str | Path,
        *,
        scores: Literal["realigned", "original"] = "realigned",
        blocks: Sequence[tuple[str, int]] = LIVE_BLOCKS,
        linearize: bool = True,
        validate_images: bool = False,
        skip_missing: bool = False,
    ) -> None:
        if scores not in _SCORE_FILES:
            raise ValueError(f"live: expected scores='realigned' or 'original', got {scores!r}")
        self.score_version = scores
        self.blocks = tuple((str(folder), int(count)) for folder, count in blocks)
        if any(count < 0 for _, count in self.blocks):
            raise ValueError(f"live: expected non-negative block counts, got {self.blocks}")
        super().__init__(root, linearize=linearize, validate_images=validate_images, skip_missing=skip_missing)

    def _read(self) -> list[LabelledPair]:
        score_file, score_key = _SCORE_FILES[self.score_version]
        score_path = require(self._resolver, score_file, self.name, hint="LIVE label file")
        names_path = require(self._resolver, "refnames_all.mat", self.name, hint="LIVE reference names")
        mat = _load_mat(score_path, (score_key, "orgs"))
        dmos = np.asarray(mat[score_key], dtype=np.float64).reshape(-1)
        orgs = np.asarray(mat["orgs"], dtype=np.float64).reshape(-1)
        names = np.asarray(_load_mat(names_path, ("refnames_all",))["refnames_all"], dtype=object).reshape(-1)
        total = sum(count for _, count in self.blocks)
        if not dmos.size == orgs.size == names.size == total:
            raise ValueError(
                f"{score_path}: expected {score_key}, orgs and refnames_all ({names_path.name}) to hold "
                f"{total} entries (blocks {self.blocks}), got {dmos.size}, {orgs.size} and {names.size}"
            )
        if not np.isin(orgs, (0.0, 1.0)).all():
            raise ValueError(f"{score_path}: expected orgs to contain only 0 and 1, got {np.unique(orgs)[:10]}")

        ref_dir = require(self._resolver, "refimgs", self.name, directory=True, hint="LIVE reference images")
        folders = [folder for folder, count in self.blocks for _ in range(count)]
        numbers = [k + 1 for _, count in self.blocks for k in range(count)]
        ref_paths: dict[str, Path | None] = {}
        pairs: list[LabelledPair] = []
        for i in range(total):
            if orgs[i] == 1.0:
                continue
            if not np.isfinite(dmos[i]):
                raise ValueError(f"{score_path}: expected a finite {score_key} at entry {i + 1}, got {dmos[i]}")
            ref_name = _cell_str(names[i], names_path, i + 1)
            if ref_name not in ref_paths:
                ref_paths[ref_name] = self._find(ref_name, names_path, base=ref_dir)
            dist = self._find(f"{folders[i]}/img{numbers[i]}.bmp", score_path)
            pairs.append(LabelledPair(ref_paths[ref_name], dist, float(dmos[i]), Path(ref_name).stem, folders[i], None))
        return pairs
