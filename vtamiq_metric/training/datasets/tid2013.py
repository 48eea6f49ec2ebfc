"""TID2013 (Ponomarenko et al., 2015).

Official layout (names matched case-insensitively: the archive mixes ``I01.BMP``, ``i25.bmp``, ``I01_11_1.BMP`` and
``i01_02_1.bmp`` while the label file mostly uses lower case)::

    <root>/reference_images/I01.BMP ... I24.BMP, i25.bmp          25 references, 512x384
    <root>/distorted_images/iXX_YY_Z.bmp                           3000 = 25 refs x 24 types x 5 levels
    <root>/mos_with_names.txt                                      "<mos> <name>" per line, no header (CRLF)

The score is a MOS on a 0-9 scale: **higher is better**. The reference of ``iXX_YY_Z.bmp`` is ``iXX.bmp``; ``ref_id``
is ``"IXX"``, ``dist_type`` the two-digit type ``"YY"`` (names in :data:`TID2013_TYPES`), ``level`` is ``Z``.
TID2008 (same layout, 17 types, 4 levels) opens with the same reader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from .base import IQADataset, LabelledPair, parse_float, require

__all__ = ["TID2013_TYPES", "TID2013Dataset"]

#: distortion type id ("01".."24") -> name, from the TID2013 readme
TID2013_TYPES: dict[str, str] = {
    f"{i:02d}": name
    for i, name in enumerate(
        (
            "additive gaussian noise",
            "additive noise in color components",
            "spatially correlated noise",
            "masked noise",
            "high frequency noise",
            "impulse noise",
            "quantization noise",
            "gaussian blur",
            "image denoising",
            "jpeg compression",
            "jpeg2000 compression",
            "jpeg transmission errors",
            "jpeg2000 transmission errors",
            "non eccentricity pattern noise",
            "local block-wise distortions",
            "mean shift",
            "contrast change",
            "change of color saturation",
            "multiplicative gaussian noise",
            "comfort noise",
            "lossy compression of noisy images",
            "color quantization with dither",
            "chromatic aberrations",
            "sparse sampling and reconstruction",
        ),
        start=1,
    )
}

_NAME = re.compile(r"^i(\d\d)_(\d\d)_(\d+)\.bmp$", re.IGNORECASE)


class TID2013Dataset(IQADataset):
    """TID2013 in its official layout (25 references, 3000 distorted images, MOS 0-9, higher = better).

    Args:
        root: folder holding ``reference_images/``, ``distorted_images/`` and ``mos_with_names.txt``.
        linearize: histogram-equalise the targets (paper: yes).
        validate_images: decode every image once at open time.
        skip_missing: drop pairs with missing images (warning) instead of raising FileNotFoundError.

    Raises:
        FileNotFoundError: the folder, the label file or an image is missing (named in the message).
        ValueError: a label line is malformed (file and line named).
    """

    name: ClassVar[str] = "tid2013"
    higher_is_better: ClassVar[bool] = True
    layout: ClassVar[str] = "TID2013: reference_images/, distorted_images/, mos_with_names.txt"

    def _read(self) -> list[LabelledPair]:
        label_path = require(self._resolver, "mos_with_names.txt", self.name, hint="TID2013 label file")
        ref_dir = require(self._resolver, "reference_images", self.name, directory=True)
        dist_dir = require(self._resolver, "distorted_images", self.name, directory=True)
        try:
            lines = label_path.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as err:
            raise ValueError(f"{label_path}: expected a text file, got undecodable bytes ({err})") from err
        ref_paths: dict[str, Path | None] = {}
        pairs: list[LabelledPair] = []
        for line_no, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(f"{label_path}: line {line_no}: expected '<mos> <file name>', got {line.strip()!r}")
            mos = parse_float(fields[0], source=label_path, line=line_no, column="mos")
            match = _NAME.match(fields[1])
            if match is None:
                raise ValueError(
                    f"{label_path}: line {line_no}: expected a file name like i01_02_3.bmp, got {fields[1]!r}"
                )
            ref_num, type_id, level = match.groups()
            ref_id = f"I{ref_num}"
            if ref_id not in ref_paths:
                ref_paths[ref_id] = self._find(f"i{ref_num}.bmp", label_path, base=ref_dir)
            dist = self._find(fields[1], label_path, base=dist_dir)
            pairs.append(LabelledPair(ref_paths[ref_id], dist, mos, ref_id, type_id, int(level)))
        return pairs
