"""PIPAL training set (Jinjin et al., ECCV 2020; NTIRE 2021/2022 challenges).

Official layout (names matched case-insensitively)::

    <root>/Train_Ref/A0001.bmp ... A0200.bmp                       200 references, 288x288
    <root>/Train_Dist/A0001_TT_II.bmp ...                          23 200 distorted images (116 per reference)
    <root>/Train_Label/A0001.txt ...                               lines "A0001_00_00.bmp,1520.0648", no header

The distorted images may instead sit in the official zip's ``Distortion_1/`` ... ``Distortion_4/`` folders or in a
single ``Dist_Imgs/`` folder; all of these are searched. The score is an ELO rating: **higher is better**. The reference
of a distorted image is ``Train_Ref/<first 5 characters>.bmp``; ``ref_id`` is that stem (``"A0001"``); ``dist_type`` is
``"TT"``. Validation/test labels were not published with the images and are not read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from .base import IQADataset, LabelledPair, parse_float, read_csv_rows, require

__all__ = ["PIPALDataset"]

_DIST_DIRS = re.compile(r"^(train_dist|dist_imgs|distortion_\d+)$", re.IGNORECASE)
_NAME = re.compile(r"^(A\d{4})_(\d+)_(\d+)\.", re.IGNORECASE)


class PIPALDataset(IQADataset):
    """PIPAL training set (200 references, 23 200 distorted images, ELO, higher = better).

    Args:
        root: folder holding ``Train_Ref/``, ``Train_Label/`` and the distorted-image folder(s).
        linearize: histogram-equalise the targets (the reference code does).
        validate_images: decode every image once at open time.
        skip_missing: drop pairs with missing images (warning) instead of raising FileNotFoundError.

    Raises:
        FileNotFoundError: the folder, a label folder or an image is missing (named in the message).
        ValueError: a label line is malformed (file and line named).
    """

    name: ClassVar[str] = "pipal"
    higher_is_better: ClassVar[bool] = True
    layout: ClassVar[str] = "PIPAL: Train_Ref/, Train_Dist/ (or Distortion_1..4/), Train_Label/"

    def _read(self) -> list[LabelledPair]:
        ref_dir = require(self._resolver, "Train_Ref", self.name, directory=True, hint=self.layout)
        label_dir = require(self._resolver, "Train_Label", self.name, directory=True, hint=self.layout)
        dist_dirs = sorted(
            (p for p in self.root.iterdir() if p.is_dir() and _DIST_DIRS.match(p.name)), key=lambda p: p.name.lower()
        )
        if not dist_dirs:
            raise FileNotFoundError(
                f"pipal: expected a distorted-image folder (Train_Dist/, Dist_Imgs/ or "
                f"Distortion_<k>/) in {self.root}, found none"
            )
        label_files = self._resolver.list_files(label_dir, ".txt")
        if not label_files:
            raise FileNotFoundError(f"pipal: expected label files Train_Label/A0001.txt ... in {self.root}, found none")
        ref_paths: dict[str, Path | None] = {}
        pairs: list[LabelledPair] = []
        for label_path in label_files:
            for line, row in enumerate(read_csv_rows(label_path), start=1):
                if not any(row):
                    continue
                if len(row) < 2:
                    raise ValueError(f"{label_path}: line {line}: expected '<image name>,<ELO>', got {row}")
                name = row[0]
                match = _NAME.match(name)
                if match is None:
                    raise ValueError(f"{label_path}: line {line}: expected a name like A0001_00_00.bmp, got {name!r}")
                elo = parse_float(row[1], source=label_path, line=line, column="ELO")
                ref_id = match.group(1).upper()
                if ref_id not in ref_paths:
                    ref_paths[ref_id] = self._find(f"{ref_id}.bmp", label_path, base=ref_dir)
                dist = next((p for d in dist_dirs if (p := self._resolver.find(name, base=d)) is not None), None)
                if dist is None:
                    self._missing.add(f"{dist_dirs[0].name}/{name}", label_path)
                pairs.append(LabelledPair(ref_paths[ref_id], dist, elo, ref_id, match.group(2)))
        return pairs
