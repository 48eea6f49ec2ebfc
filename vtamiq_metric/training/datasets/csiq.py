"""CSIQ (Larson & Chandler, 2010).

Official layout (``src_imgs.zip``, ``dst_imgs.zip``, ``csiq.DMOS.xlsx``; names matched case-insensitively)::

    <root>/src_imgs/<name>.png                                      30 references, 512x512
    <root>/dst_imgs/<folder>/<name>.<TOKEN>.<level>.png             866 distorted images
    <root>/csiq.DMOS.xlsx     sheet "all_by_image", header row (row 4, columns D-I):
                              image, dst_idx, dst_type, dst_lev, dmos_std, dmos

Distortion index -> (folder, token): 1 awgn/AWGN, 2 jpeg/JPEG, 3 jpeg2000/jpeg2000, 4 fnoise/fnoise, 5 blur/BLUR,
6 contrast/contrast. ``image`` is a number for ``1600`` in the workbook and becomes ``"1600"``. The score is a DMOS in
``[0, 1]``: **lower is better**.

The label file may also be a CSV export of that sheet with the same six column names (the reference code reads such a
``DMOS.csv``). Without ``label_file`` the reader looks for, in order: ``csiq.DMOS.xlsx``, ``csiq.DMOS.csv``,
``DMOS.csv``. Reading ``.xlsx`` needs ``openpyxl`` (``pip install "vtamiq-metric[train]"``). The header row is found by
its names (the first row among the first 20 holding ``image`` and ``dmos``), so extra title rows are tolerated.
``ref_id`` is the image name; ``dist_type`` is the folder name (``"awgn"`` ...); ``level`` is ``dst_lev``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from .base import IQADataset, LabelledPair, header_index, parse_float, parse_int, read_csv_rows, require

__all__ = ["CSIQ_TYPES", "CSIQDataset"]

#: dst_idx -> (folder, file-name token)
CSIQ_TYPES: dict[int, tuple[str, str]] = {
    1: ("awgn", "AWGN"),
    2: ("jpeg", "JPEG"),
    3: ("jpeg2000", "jpeg2000"),
    4: ("fnoise", "fnoise"),
    5: ("blur", "BLUR"),
    6: ("contrast", "contrast"),
}
# dst_type strings of the workbook (lower-cased, spaces removed) -> dst_idx
_TYPE_NAMES = {"noise": 1, "awgn": 1, "jpeg": 2, "jpeg2000": 3, "fnoise": 4, "blur": 5, "contrast": 6}
_COLUMNS = ("image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos")
_LABEL_CANDIDATES = ("csiq.DMOS.xlsx", "csiq.DMOS.csv", "DMOS.csv")
_SHEET = "all_by_image"


def _cell_text(value: object) -> str:
    """Workbook cell -> text; whole floats lose their ``.0`` (the image ``1600`` is stored as a number)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _read_xlsx(path: Path) -> list[list[str]]:
    """Rows of the ``all_by_image`` sheet as text cells (all rows, header search is done by the caller)."""
    try:
        import openpyxl
    except ImportError as err:
        raise ImportError(
            f'csiq: reading {path.name} needs openpyxl; install it with: pip install "vtamiq-metric[train]"'
        ) from err
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises zipfile/KeyError/ValueError variants for corrupt files
        raise ValueError(f"{path}: expected a readable .xlsx workbook, got an error: {err}") from err
    try:
        sheets = {name.lower(): name for name in book.sheetnames}
        if _SHEET not in sheets:
            raise ValueError(f"{path}: expected a sheet named {_SHEET!r}, got sheets {book.sheetnames}")
        return [[_cell_text(v) for v in row] for row in book[sheets[_SHEET]].iter_rows(values_only=True)]
    finally:
        book.close()


class CSIQDataset(IQADataset):
    """CSIQ in its official layout (30 references, 866 distorted images, DMOS in [0, 1], lower = better).

    Args:
        root: folder holding ``src_imgs/``, ``dst_imgs/`` and the label file.
        label_file: the workbook or CSV export, relative to ``root`` or absolute; None searches the usual names.
        linearize: histogram-equalise the targets (paper: yes).
        validate_images: decode every image once at open time.
        skip_missing: drop pairs with missing images (warning) instead of raising FileNotFoundError.

    Raises:
        FileNotFoundError: the folder, label file or an image is missing (named in the message).
        ValueError: the label file is unreadable or malformed (file, line and column named).
    """

    name: ClassVar[str] = "csiq"
    higher_is_better: ClassVar[bool] = False
    layout: ClassVar[str] = "CSIQ: src_imgs/, dst_imgs/<type>/, csiq.DMOS.xlsx"

    def __init__(
        self,
        root: str | Path,
        *,
        label_file: str | Path | None = None,
        linearize: bool = True,
        validate_images: bool = False,
        skip_missing: bool = False,
    ) -> None:
        self.label_file = label_file
        super().__init__(root, linearize=linearize, validate_images=validate_images, skip_missing=skip_missing)

    def _label_path(self) -> Path:
        if self.label_file is not None:
            return require(self._resolver, str(self.label_file), self.name, hint="CSIQ label file")
        for candidate in _LABEL_CANDIDATES:
            found = self._resolver.find(candidate)
            if found is not None:
                return found
        raise FileNotFoundError(
            f"csiq: expected a label file below {self.root}: one of {list(_LABEL_CANDIDATES)}, none found"
        )

    def _read(self) -> list[LabelledPair]:
        label_path = self._label_path()
        rows = _read_xlsx(label_path) if label_path.suffix.lower() == ".xlsx" else read_csv_rows(label_path)
        header_row = next(
            (i for i, row in enumerate(rows[:20]) if {"image", "dmos"} <= {c.strip().lower() for c in row}), None
        )
        if header_row is None:
            raise ValueError(
                f"{label_path}: expected a header row with columns {list(_COLUMNS)} within the first 20 rows, got none"
            )
        col = header_index(rows[header_row], ("image", "dmos", "dst_lev"), label_path)
        if "dst_idx" not in col and "dst_type" not in col:
            raise ValueError(f"{label_path}: expected a 'dst_idx' or 'dst_type' column, got {rows[header_row]}")

        src_dir = require(self._resolver, "src_imgs", self.name, directory=True, hint="CSIQ reference images")
        dst_dir = require(self._resolver, "dst_imgs", self.name, directory=True, hint="CSIQ distorted images")
        ref_paths: dict[str, Path | None] = {}
        pairs: list[LabelledPair] = []
        for line, row in enumerate(rows[header_row + 1 :], start=header_row + 2):

            def cell(name: str, row: list[str] = row) -> str:
                i = col.get(name)
                return row[i].strip() if i is not None and i < len(row) else ""

            image = cell("image")
            if not image:
                continue  # blank or trailing rows of the sheet
            type_id = self._type_id(cell("dst_idx"), cell("dst_type"), label_path, line)
            level = parse_int(cell("dst_lev"), source=label_path, line=line, column="dst_lev")
            dmos = parse_float(cell("dmos"), source=label_path, line=line, column="dmos")
            folder, token = CSIQ_TYPES[type_id]
            if image not in ref_paths:
                ref_paths[image] = self._find(f"{image}.png", label_path, base=src_dir)
            dist = self._find(f"{folder}/{image}.{token}.{level}.png", label_path, base=dst_dir)
            pairs.append(LabelledPair(ref_paths[image], dist, dmos, image, folder, level))
        return pairs

    @staticmethod
    def _type_id(idx_text: str, type_text: str, source: Path, line: int) -> int:
        """Distortion index from ``dst_idx`` (checked against ``dst_type`` when both are present)."""
        by_name = _TYPE_NAMES.get(type_text.lower().replace(" ", "")) if type_text else None
        if type_text and by_name is None:
            raise ValueError(f"{source}: line {line}: expected dst_type in {sorted(_TYPE_NAMES)}, got {type_text!r}")
        if not idx_text:
            if by_name is None:
                raise ValueError(f"{source}: line {line}: expected a dst_idx or dst_type value, got neither")
            return by_name
        idx = parse_int(idx_text, source=source, line=line, column="dst_idx")
        if idx not in CSIQ_TYPES:
            raise ValueError(f"{source}: line {line}: expected dst_idx in 1..6, got {idx_text!r}")
        if by_name is not None and by_name != idx:
            raise ValueError(
                f"{source}: line {line}: dst_idx {idx_text} does not match dst_type {type_text!r} "
                f"(expected dst_idx {by_name})"
            )
        return idx
