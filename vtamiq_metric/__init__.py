"""vtamiq-metric: VTAMIQ, a transformer-based full-reference perceptual image-quality metric.

``score(ref, dist)`` returns one **distortion** score per image pair: 0 means identical and higher means worse
(``VTAMIQ.higher_is_better`` is False). ``VTAMIQLoss`` is the same computation as a differentiable ``nn.Module`` loss,
and ``damage_map(ref, dist)`` shows where in the image the score comes from. The torchmetrics ``Metric`` lives in
:mod:`vtamiq_metric.metrics` (optional extra ``[metrics]``; importing this package never imports torchmetrics).

Paper: Chubarau & Clark, "VTAMIQ: Transformers for Attention Modulated Image Quality Assessment", 2021,
https://arxiv.org/abs/2110.01655 .
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# The public names are imported on first use (PEP 562), so that `import vtamiq_metric` and the `vtamiq` command's
# parser (`vtamiq --help`) do not import torch: `vtamiq_metric.score`, `from vtamiq_metric import score` and
# `vtamiq_metric.score(...)` work as if they were imported here. benchmarks/bench_import.py measures it.
_LAZY = {
    "VTAMIQ": ".model",
    "VTAMIQConfig": ".model",
    "VTAMIQLoss": ".loss",
    "damage_map": ".maps",
    "list_pretrained": ".hub",
    "load_model": ".hub",
    "score": ".api",
}

if TYPE_CHECKING:  # what type checkers and IDEs see
    from .api import score
    from .hub import list_pretrained, load_model
    from .loss import VTAMIQLoss
    from .maps import damage_map
    from .model import VTAMIQ, VTAMIQConfig

__all__ = ["VTAMIQ", "VTAMIQConfig", "VTAMIQLoss", "__version__", "damage_map", "list_pretrained", "load_model",
           "score"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
