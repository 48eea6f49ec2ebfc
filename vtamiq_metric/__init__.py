"""vtamiq-metric: VTAMIQ, a transformer-based full-reference perceptual image-quality metric.

``score(ref, dist)`` returns one **distortion** score per image pair: 0 means identical and higher means worse
(``VTAMIQ.higher_is_better`` is False). ``VTAMIQLoss`` is the same computation as a differentiable ``nn.Module`` loss.

Paper: Chubarau & Clark, "VTAMIQ: Transformers for Attention Modulated Image Quality Assessment", 2021,
https://arxiv.org/abs/2110.01655 .
"""

from ._version import __version__
from .api import score
from .hub import list_pretrained, load_model
from .loss import VTAMIQLoss
from .model import VTAMIQ, VTAMIQConfig

__all__ = ["VTAMIQ", "VTAMIQConfig", "VTAMIQLoss", "__version__", "list_pretrained", "load_model", "score"]
