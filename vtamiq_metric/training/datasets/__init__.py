"""Readers for the IQA datasets VTAMIQ trains and evaluates on, in their official on-disk layouts.

Registry names, classes and raw-score directions (targets are always in ``[0, 1]`` with 0 = best quality):

=============== ============================== ================================= =================================
name            class                          raw label                         target
=============== ============================== ================================= =================================
``live``        :class:`LIVEDataset`           DMOS (realigned), lower = better  normalise, equalise
``csiq``        :class:`CSIQDataset`           DMOS in [0, 1], lower = better    normalise, equalise
``tid2013``     :class:`TID2013Dataset`        MOS 0-9, higher = better          normalise, reverse, equalise
``kadid10k``    :class:`KADID10kDataset`       MOS 1-5, higher = better          normalise, reverse, equalise
``kadis700k``   :class:`KADIS700kDataset`      VSI similarity, higher = better   1 - label, equalise
``pieapp``      :class:`PieAPPPairwiseDataset` P(A preferred), pairwise          ``prob_a`` as published
``pieapp_test`` :class:`PieAPPTestDataset`     error score, lower = better       normalise (no equalisation)
``pipal``       :class:`PIPALDataset`          ELO, higher = better              normalise, reverse, equalise
``csv``         :class:`CSVDataset`            set by ``higher_is_better``       normalise, [reverse], equalise
=============== ============================== ================================= =================================

Example:
    >>> from vtamiq_metric.training.datasets import get_dataset, make_split
    >>> ds = get_dataset("tid2013", "/data/tid2013")                      # doctest: +SKIP
    >>> split = make_split(ds.ref_ids(), seed=0)                          # doctest: +SKIP
    >>> train, val, test = (ds.subset(s) for s in (split.train, split.val, split.test))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .base import IQADataset, IQARecord, PairwiseDataset, PairwiseRecord, natural_key
from .csiq import CSIQDataset
from .csv import CSVDataset
from .kadid10k import KADID10kDataset
from .kadis700k import KADIS700kDataset
from .live import LIVEDataset
from .pieapp import PieAPPPairwiseDataset, PieAPPTestDataset
from .pipal import PIPALDataset
from .splits import Split, make_split, split_dataset
from .targets import histogram_equalize, logistic5, process_scores
from .tid2013 import TID2013Dataset

__all__ = [
    "DATASETS",
    "CSIQDataset",
    "CSVDataset",
    "IQADataset",
    "IQARecord",
    "KADID10kDataset",
    "KADIS700kDataset",
    "LIVEDataset",
    "PIPALDataset",
    "PairwiseDataset",
    "PairwiseRecord",
    "PieAPPPairwiseDataset",
    "PieAPPTestDataset",
    "Split",
    "TID2013Dataset",
    "get_dataset",
    "histogram_equalize",
    "logistic5",
    "make_split",
    "natural_key",
    "process_scores",
    "split_dataset",
]

#: registry name -> reader class
DATASETS: dict[str, type[IQADataset | PairwiseDataset]] = {
    cls.name: cls
    for cls in (
        LIVEDataset,
        CSIQDataset,
        TID2013Dataset,
        KADID10kDataset,
        KADIS700kDataset,
        PieAPPPairwiseDataset,
        PieAPPTestDataset,
        PIPALDataset,
        CSVDataset,
    )
}


def get_dataset(name: str, root: str | Path, **kwargs: Any) -> IQADataset | PairwiseDataset:
    """Open a registered dataset.

    Args:
        name: a key of :data:`DATASETS` (case-insensitive; ``-`` is ignored, so ``"kadid-10k"`` works).
        root: the dataset folder in its official layout (for ``"csv"``: the CSV file).
        **kwargs: reader options, e.g. ``linearize=False``, ``validate_images=True``, ``higher_is_better=`` for
            ``"csv"``.

    Returns:
        The opened dataset (:class:`IQADataset`, or :class:`PairwiseDataset` for ``"pieapp"``).

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: ``name`` is not registered.
    """
    if not isinstance(name, str):
        raise TypeError(f"expected a dataset name string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: expected one of {sorted(DATASETS)}")
    reader: Callable[..., IQADataset | PairwiseDataset] = DATASETS[key]  # each reader checks its own options
    return reader(root, **kwargs)
