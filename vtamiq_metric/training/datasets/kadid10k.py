"""KADID-10k (Lin, Hosu & Saupe, 2019).

Official layout (names matched case-insensitively)::

    <root>/images/I01.png ... I81.png                 81 references, 512x384
    <root>/images/IXX_YY_ZZ.png                       10125 = 81 refs x 25 types x 5 levels
    <root>/dmos.csv        header: dist_img,ref_img,dmos,var

Some re-packs split the images into ``reference_images/`` and ``distorted_images/``; that variant is accepted when
there is no ``images/`` folder. The ``dmos`` column is in fact a **MOS** on 1-5: **higher is better**. ``ref_id`` is the
reference stem (``"I01"``), ``dist_type`` the two-digit type id ``"YY"`` (names in :data:`KADID_TYPES`, derived from
the distortion table, :data:`vtamiq_metric.training.distortions.DISTORTIONS`; the same ids as the KADIS-700k
generator), ``level`` is ``ZZ``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from ..distortions import DISTORTIONS
from .base import IQADataset, LabelledPair, header_index, parse_float, read_csv_rows, require

__all__ = ["KADID_TYPES", "KADID10kDataset"]

#: distortion type id ("01".."25") -> name (the KADID-10k names of the distortion table, lower case)
KADID_TYPES: dict[str, str] = {f"{t.id:02d}": t.description.lower() for t in DISTORTIONS.values()}

_NAME = re.compile(r"^i\d+_(\d\d)_(\d\d)\.", re.IGNORECASE)


class KADID10kDataset(IQADataset):
    """KADID-10k in its official layout (81 references, 10125 distorted images, MOS 1-5, higher = better).

    Args:
        root: folder holding ``images/`` (or ``reference_images/`` + ``distorted_images/``) and ``dmos.csv``.
        linearize: histogram-equalise the targets (paper: yes).
        validate_images: decode every image once at open time.
        skip_missing: drop pairs with missing images (warning) instead of raising FileNotFoundError.

    Raises:
        FileNotFoundError: the folder, ``dmos.csv`` or an image is missing (named in the message).
        ValueError: ``dmos.csv`` is malformed (file, line and column named).
    """

    name: ClassVar[str] = "kadid10k"
    higher_is_better: ClassVar[bool] = True
    layout: ClassVar[str] = "KADID-10k: images/, dmos.csv"

    def _read(self) -> list[LabelledPair]:
        label_path = require(self._resolver, "dmos.csv", self.name, hint="KADID-10k label file")
        images = self._resolver.find("images", directory=True)
        if images is not None:
            ref_dir = dist_dir = images
        else:
            hint = "expected images/ or reference_images/ + distorted_images/"
            ref_dir = require(self._resolver, "reference_images", self.name, directory=True, hint=hint)
            dist_dir = require(self._resolver, "distorted_images", self.name, directory=True, hint=hint)
        rows = read_csv_rows(label_path)
        if not rows:
            raise ValueError(f"{label_path}: expected a header 'dist_img,ref_img,dmos,var', got an empty file")
        col = header_index(rows[0], ("dist_img", "ref_img", "dmos"), label_path)
        width = max(col.values()) + 1
        ref_paths: dict[str, Path | None] = {}
        pairs: list[LabelledPair] = []
        for line, row in enumerate(rows[1:], start=2):
            if not any(row):
                continue
            if len(row) < width:
                raise ValueError(f"{label_path}: line {line}: expected at least {width} columns, got {row}")
            dist_name, ref_name = row[col["dist_img"]], row[col["ref_img"]]
            mos = parse_float(row[col["dmos"]], source=label_path, line=line, column="dmos")
            if ref_name not in ref_paths:
                ref_paths[ref_name] = self._find(ref_name, label_path, base=ref_dir)
            dist = self._find(dist_name, label_path, base=dist_dir)
            match = _NAME.match(dist_name)
            dist_type, level = (match.group(1), int(match.group(2))) if match else (None, None)
            pairs.append(LabelledPair(ref_paths[ref_name], dist, mos, Path(ref_name).stem, dist_type, level))
        return pairs
