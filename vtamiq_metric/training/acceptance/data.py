"""The held-out data of the acceptance checks, read by the dataset readers of :mod:`vtamiq_metric.training.datasets`.

:func:`read_kadis_pairs` reads a ``make-kadis`` folder with :class:`~vtamiq_metric.training.datasets.KADIS700kDataset`
(its VSI and teacher columns), :func:`read_mos_folder` a TID2013-layout folder, whole or a fragment, with
:class:`~vtamiq_metric.training.datasets.TID2013Dataset`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..datasets.base import iter_csv_rows
from ..datasets.kadis700k import KADIS_SCORES_FILE, KADIS700kDataset
from ..datasets.tid2013 import TID2013Dataset

__all__ = ["KADIS_LABELS", "read_kadis_pairs", "read_mos_folder"]


#: Similarity columns of a ``make-kadis`` CSV that :func:`read_kadis_pairs` reads when present (1 = identical).
KADIS_LABELS = ("vsi", "teacher")


def _kadis_csv(root: Path) -> Path:
    """The score file below ``root`` or ``root/kadis700k`` (the places :class:`KADIS700kDataset` looks)."""
    for folder in (Path(root), Path(root) / "kadis700k"):
        if (folder / KADIS_SCORES_FILE).is_file():
            return folder / KADIS_SCORES_FILE
    raise FileNotFoundError(f"expected {Path(root) / KADIS_SCORES_FILE} (made by vtamiq-train make-kadis), got no "
                            "file")


def read_kadis_pairs(root: Path, labels: Sequence[str] = KADIS_LABELS) -> list[dict[str, Any]]:
    """The pairs of a ``make-kadis`` folder, read by :class:`~.datasets.kadis700k.KADIS700kDataset`.

    Args:
        root: the folder holding :data:`~.datasets.kadis700k.KADIS_SCORES_FILE` (or its parent holding
            ``kadis700k/``).
        labels: similarity columns in [0, 1] to read where the CSV has them (``vsi``, ``teacher``: 1 = identical).

    Returns:
        One dict per pair, in the CSV's order: ``ref`` and ``dist`` (absolute paths), ``type`` (the type id as an
        int, or the cell as written when it is not a number), ``level``, and one float per label column present.

    Raises:
        FileNotFoundError: no CSV, or an image it lists is missing. ValueError: a malformed CSV (the dataset
        reader's messages name the file, line and column), a label outside [0, 1], or none of ``labels`` in it.
    """
    path = _kadis_csv(root)
    header = {cell.strip().lower() for cell in next(iter_csv_rows(path), [])}
    present = [label for label in labels if label in header]
    if not present:
        raise ValueError(f"{path}: expected one of the label columns {list(labels)}, got columns {sorted(header)}")
    # linearize=False: the targets (unused here) are 1 - label, which needs no spread of labels (one pair is fine).
    datasets = {label: KADIS700kDataset(path.parent, label=label, linearize=False) for label in present}
    first = datasets[present[0]]
    rows = []
    for i, record in enumerate(first.records):
        kind = record.dist_type
        row: dict[str, object] = {"ref": record.ref, "dist": record.dist,
               "type": int(kind) if kind is not None and kind.isdigit() else kind, "level": record.level}
        for label, dataset in datasets.items():
            row[label] = dataset.records[i].score
        rows.append(row)
    return rows


def read_mos_folder(root: Path) -> tuple[list[Path], list[Path], list[float]]:
    """Every distorted image present in a folder laid out like TID2013, its reference and its MOS.

    Read by :class:`~.datasets.tid2013.TID2013Dataset` with ``skip_missing=True``: distorted images listed in
    ``mos_with_names.txt`` but absent (with their reference) are left out, so a fragment of the data set works.

    Returns:
        (reference paths, distorted paths, MOS) in the order of the MOS file.

    Raises:
        FileNotFoundError: a missing MOS file or folder, or no listed pair present. ValueError: a malformed MOS file.
    """
    dataset = TID2013Dataset(root, skip_missing=True, linearize=False)
    return ([r.ref for r in dataset.records], [r.dist for r in dataset.records],
            [float(r.score) for r in dataset.records])
