"""Generic full-reference dataset described by one CSV file (a vtamiq-metric format for custom data).

Format: a header row with (case-insensitive) columns ``ref,dist,score`` and optionally ``ref_id``, ``dist_type`` and
``level``; one row per pair. ``ref`` and ``dist`` are paths relative to the CSV file's folder (matched
case-insensitively) or absolute. The score direction is a constructor argument (``higher_is_better``), since the
format cannot know it. Without a ``ref_id`` column the reference path as written (``/``-separated) groups the pairs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from .base import IQADataset, LabelledPair, header_index, parse_float, parse_int, read_csv_rows

__all__ = ["CSVDataset"]


class CSVDataset(IQADataset):
    """Pairs listed in a CSV file with columns ``ref,dist,score`` (+ optional ``ref_id,dist_type,level``).

    Args:
        root: path of the CSV file.
        higher_is_better: True if a larger score means better quality (MOS-like), False for DMOS/error-like scores.
        linearize: histogram-equalise the targets.
        validate_images: decode every image once at open time.
        skip_missing: drop pairs with missing images (warning) instead of raising FileNotFoundError.

    Attributes:
        higher_is_better: the direction given at construction (an instance attribute for this class).

    Raises:
        FileNotFoundError: the CSV file or an image is missing (named in the message).
        TypeError: ``higher_is_better`` is not a bool.
        ValueError: the CSV is malformed (file, line and column named).
    """

    name: ClassVar[str] = "csv"
    higher_is_better: ClassVar[bool] = False
    layout: ClassVar[str] = "a CSV file with columns ref,dist,score"

    def __init__(
        self,
        root: str | Path,
        *,
        higher_is_better: bool,
        linearize: bool = True,
        validate_images: bool = False,
        skip_missing: bool = False,
    ) -> None:
        if not isinstance(higher_is_better, bool):
            raise TypeError(f"csv: expected higher_is_better as a bool, got {type(higher_is_better).__name__}")
        # The root of this format is a file, not a folder, so base.resolve_root's checks are made here for a file.
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"csv: expected the CSV file path as str or Path, got {type(root).__name__}")
        csv_path = Path(root).expanduser()
        if not csv_path.is_file():
            raise FileNotFoundError(
                f"csv: expected an existing CSV file with columns ref,dist,score, got {str(csv_path)!r}"
            )
        self.csv_path = csv_path.resolve()
        self.higher_is_better = higher_is_better  # type: ignore[misc]  # per-instance direction for this format
        super().__init__(
            self.csv_path.parent, linearize=linearize, validate_images=validate_images, skip_missing=skip_missing
        )

    def _read(self) -> list[LabelledPair]:
        rows = read_csv_rows(self.csv_path)
        if not rows:
            raise ValueError(f"{self.csv_path}: expected a header with columns ref,dist,score, got an empty file")
        col = header_index(rows[0], ("ref", "dist", "score"), self.csv_path)
        ref_paths: dict[str, Path | None] = {}
        pairs: list[LabelledPair] = []
        for line, row in enumerate(rows[1:], start=2):
            if not any(row):
                continue

            def cell(name: str, row: list[str] = row) -> str:
                i = col.get(name)
                return row[i] if i is not None and i < len(row) else ""

            ref_name, dist_name = cell("ref"), cell("dist")
            if not ref_name or not dist_name:
                raise ValueError(f"{self.csv_path}: line {line}: expected non-empty 'ref' and 'dist' cells, got {row}")
            score = parse_float(cell("score"), source=self.csv_path, line=line, column="score")
            level_text = cell("level")
            level = parse_int(level_text, source=self.csv_path, line=line, column="level") if level_text else None
            if ref_name not in ref_paths:
                ref_paths[ref_name] = self._find(ref_name, self.csv_path)
            dist = self._find(dist_name, self.csv_path)
            ref_id = cell("ref_id") or ref_name.replace("\\", "/")
            pairs.append(LabelledPair(ref_paths[ref_name], dist, score, ref_id, cell("dist_type") or None, level))
        return pairs
