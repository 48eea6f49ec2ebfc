"""The VTAMIQ architecture: config, sparse-patch ViT, DiffNet, head, and weight converters."""

from .config import PRESETS, VTAMIQConfig, get_preset
from .vtamiq import VTAMIQ

__all__ = ["PRESETS", "VTAMIQ", "VTAMIQConfig", "get_preset"]
