"""vtamiq-metric: VTAMIQ, a transformer-based full-reference perceptual image-quality metric.

``score(ref, dist)`` returns one **distortion** score per image pair: 0 means identical and higher means worse
(``VTAMIQ.higher_is_better`` is False). ``VTAMIQLoss`` is the same computation as a differentiable ``nn.Module`` loss,
and ``damage_map(ref, dist)`` shows where in the image the score comes from. The torchmetrics ``Metric`` lives in
:mod:`vtamiq_metric.metrics` (optional extra ``[metrics]``; importing this package never imports torchmetrics).

Paper: Chubarau & Clark, "VTAMIQ: Transformers for Attention Modulated Image Quality Assessment", 2021,
https://arxiv.org/abs/2110.01655 .
"""

from ._version import __version__
from .api import score
from .hub import list_pretrained, load_model
from .loss import VTAMIQLoss
from .maps import damage_map
from .model import VTAMIQ, VTAMIQConfig

__all__ = ["VTAMIQ", "VTAMIQConfig", "VTAMIQLoss", "__version__", "damage_map", "list_pretrained", "load_model",
           "score"]
