"""PieAPP (Prashnani et al., CVPR 2018): pairwise training triplets and the per-image test scores.

Official layout (``all_data_PieAPP_dataset_CVPR_2018.zip``; names matched case-insensitively)::

    <root>/reference_images/{train,val,test}/ref_<n>.png
    <root>/distorted_images/{train,val,test}/ref_<n>/distort_<n>_<...>.png
    <root>/labels/{train,val}/ref_<n>_pairwise_labels.csv     5 columns (header row; read by position):
        reference, distorted A, distorted B, raw P(A preferred) (blank when not shown to people),
        processed P(A preferred) (maximum-likelihood estimate, present for every pair)
    <root>/labels/test/ref_<n>_per_image_score.csv            3 columns: reference, distorted, error score
    <root>/test_reference_list.txt                             one "ref_<n>.png" per line

:class:`PieAPPPairwiseDataset` (``"pieapp"``) yields :class:`.base.PairwiseRecord` triplets from the train (and
optionally val) label files, listed in natural order, using the processed probability like the reference code
(``probability="raw"`` uses column 4 and skips its blank cells). ``prob_a`` is the probability that A is preferred,
i.e. that A has the **lower** error. A name equal to the reference's own file name resolves to the reference image.

:class:`PieAPPTestDataset` (``"pieapp_test"``) yields :class:`.base.IQARecord` pairs from the per-image scores: a
perceptual *error*, **lower is better** (the reference's own error is 0 by construction and is not listed as a pair).
As in the reference code its targets are not equalised by default (``linearize=False``); they are min-max normalised.
``ref_id`` is the reference stem (``"ref_161"``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

from .base import (
    IQADataset,
    LabelledPair,
    MissingFiles,
    PairwiseDataset,
    PairwiseRecord,
    PathResolver,
    check_images,
    parse_float,
    read_csv_rows,
    require,
    resolve_root,
)

__all__ = ["PieAPPPairwiseDataset", "PieAPPTestDataset"]

_logger = logging.getLogger(__name__)
_LAYOUT = "PieAPP: reference_images/, distorted_images/, labels/ with train/ val/ test/ subfolders"
_PAIRWISE_SUFFIX = "_pairwise_labels.csv"
_PER_IMAGE_SUFFIX = "_per_image_score.csv"


def _image(
    resolver: PathResolver,
    missing: MissingFiles,
    part: str,
    ref_name: str,
    name: str,
    source: Path,
) -> Path | None:
    """Resolve a distorted image (or the reference itself when ``name`` is the reference's file name)."""
    if name.lower() == ref_name.lower():
        rel = f"reference_images/{part}/{ref_name}"
    else:
        rel = f"distorted_images/{part}/{Path(ref_name).stem}/{name}"
    found = resolver.find(rel)
    if found is None:
        missing.add(rel, source)
    return found


class PieAPPPairwiseDataset(PairwiseDataset):
    """PieAPP pairwise preference triplets (reference, A, B, P(A preferred)).

    Args:
        root: the PieAPP folder.
        parts: which official parts to read, any of ``"train"``, ``"val"`` (the reference code reads train only).
        probability: ``"processed"`` (column 5, every pair; the reference code's choice) or ``"raw"`` (column 4,
            rows with a blank cell are skipped).
        validate_images: decode every image once at open time.
        skip_missing: drop triplets with missing images (warning) instead of raising FileNotFoundError.

    Attributes:
        records: one :class:`.base.PairwiseRecord` per labelled pair, in natural file order then row order.

    Raises:
        FileNotFoundError: the folder, a label folder or an image is missing (named in the message).
        ValueError: a label file is malformed (file and line named).
    """

    name: ClassVar[str] = "pieapp"
    higher_is_better: ClassVar[bool] = False  # the model's score for each image is an error

    def __init__(
        self,
        root: str | Path,
        *,
        parts: Sequence[str] = ("train",),
        probability: Literal["processed", "raw"] = "processed",
        validate_images: bool = False,
        skip_missing: bool = False,
    ) -> None:
        if isinstance(parts, str) or not parts or any(p not in ("train", "val") for p in parts):
            raise ValueError(f"pieapp: expected parts as a non-empty sequence of 'train'/'val', got {parts!r}")
        if probability not in ("processed", "raw"):
            raise ValueError(f"pieapp: expected probability='processed' or 'raw', got {probability!r}")
        self.root = resolve_root(root, self.name, _LAYOUT)
        self.parts = tuple(parts)
        self.probability = probability
        resolver = PathResolver(self.root)
        missing = MissingFiles(self.name, self.root)
        column = 4 if probability == "processed" else 3
        records: list[PairwiseRecord] = []
        blank = 0
        for part in self.parts:
            label_dir = require(resolver, f"labels/{part}", self.name, directory=True, hint=_LAYOUT)
            files = resolver.list_files(label_dir, _PAIRWISE_SUFFIX)
            if not files:
                raise FileNotFoundError(f"pieapp: expected *{_PAIRWISE_SUFFIX} files in {label_dir}, found none")
            for path in files:
                rows = read_csv_rows(path)
                for line, row in enumerate(rows[1:], start=2):  # the first row is a header
                    if not any(row):
                        continue
                    if len(row) < 5:
                        raise ValueError(
                            f"{path}: line {line}: expected 5 columns (ref, A, B, raw P(A), processed "
                            f"P(A)), got {len(row)}: {row}"
                        )
                    if not row[column]:
                        blank += 1
                        continue
                    prob = parse_float(row[column], source=path, line=line, column=f"column {column + 1}")
                    if not 0.0 <= prob <= 1.0:
                        raise ValueError(f"{path}: line {line}: expected a probability in [0, 1], got {row[column]!r}")
                    ref_name = row[0]
                    ref, a, b = (_image(resolver, missing, part, ref_name, name, path) for name in row[:3])
                    if ref is not None and a is not None and b is not None:
                        records.append(PairwiseRecord(ref, a, b, prob, Path(ref_name).stem))
        if blank:
            _logger.info("pieapp: skipped %d row(s) with a blank %s probability", blank, probability)
        if missing:
            if not skip_missing:
                missing.raise_if_any()
            _logger.warning("%s (skip_missing=True: those triplets were dropped)", missing.message())
        if not records:
            raise ValueError(
                f"pieapp: expected at least one labelled triplet in labels/{{{','.join(self.parts)}}} "
                f"below {self.root}, got none"
            )
        self.records = records
        if validate_images:
            check_images(sorted({p for r in records for p in (r.ref, r.dist_a, r.dist_b)}), self.name)


class PieAPPTestDataset(IQADataset):
    """PieAPP test set: 40 references x 15 distorted images with per-image error scores (lower = better).

    Args:
        root: the PieAPP folder.
        linearize: histogram-equalise the targets (default False, as the reference code's test set).
        validate_images: decode every image once at open time.
        skip_missing: drop pairs with missing images (warning) instead of raising FileNotFoundError.

    Raises:
        FileNotFoundError: the folder, a label file or an image is missing (named in the message).
        ValueError: a label file is malformed (file and line named).
    """

    name: ClassVar[str] = "pieapp_test"
    higher_is_better: ClassVar[bool] = False
    layout: ClassVar[str] = _LAYOUT

    def __init__(
        self,
        root: str | Path,
        *,
        linearize: bool = False,
        validate_images: bool = False,
        skip_missing: bool = False,
    ) -> None:
        super().__init__(root, linearize=linearize, validate_images=validate_images, skip_missing=skip_missing)

    def _reference_names(self, label_dir: Path) -> list[str]:
        """Test reference file names from ``test_reference_list.txt``, else from the per-image label files."""
        listing = self._resolver.find("test_reference_list.txt")
        if listing is not None:
            names = [line.strip() for line in listing.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
            if names:
                return names
        files = self._resolver.list_files(label_dir, _PER_IMAGE_SUFFIX)
        return [p.name[: -len(_PER_IMAGE_SUFFIX)] + ".png" for p in files]

    def _read(self) -> list[LabelledPair]:
        label_dir = require(self._resolver, "labels/test", self.name, directory=True, hint=_LAYOUT)
        pairs: list[LabelledPair] = []
        for ref_name in self._reference_names(label_dir):
            stem = Path(ref_name).stem
            label_path = require(self._resolver, f"labels/test/{stem}{_PER_IMAGE_SUFFIX}", self.name)
            ref = self._find(f"reference_images/test/{ref_name}", label_path)
            for line, row in enumerate(read_csv_rows(label_path)[1:], start=2):  # the first row is a header
                if not any(row):
                    continue
                if len(row) < 3:
                    raise ValueError(f"{label_path}: line {line}: expected 3 columns (ref, dist, score), got {row}")
                if row[1].lower() == ref_name.lower():
                    continue  # the reference's own score (0 by construction) is not a distorted pair
                score = parse_float(row[2], source=label_path, line=line, column="score")
                dist = self._find(f"distorted_images/test/{stem}/{row[1]}", label_path)
                pairs.append(LabelledPair(ref, dist, score, stem))
        return pairs
