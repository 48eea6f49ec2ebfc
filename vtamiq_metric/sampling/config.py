"""``SamplingConfig``: the weights and scales of a CAPS draw."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from ._common import check_real

__all__ = ["DIFF_TYPES", "SamplingConfig"]

# The perceptual differences CAPS can weight (see vtamiq_metric.sampling.difference).
DIFF_TYPES = ("mse", "ssim")


@dataclass(frozen=True)
class SamplingConfig:
    """How CAPS draws patch positions.

    The probability of a location is ``centre_weight * centre_bias + diff_weight * difference +
    uniform_weight * uniform`` (each term normalised to sum 1 before weighting). Presets: release era
    ``SamplingConfig(2, 2, 0.5, num_scales=5, scale_ratio=1.5)``, paper era ``SamplingConfig(2, 5, 0.25)``.

    Attributes:
        centre_weight: weight of the analytic anisotropic Gaussian centre bias.
        diff_weight: weight of the perceptual difference between ref and dist.
        uniform_weight: weight of the uniform component.
        diff_type: ``"mse"`` (per-pixel squared error, mean over channels) or ``"ssim"`` (1 - local SSIM).
        centre_sigma: (row, col) standard deviations of the centre bias, as fractions of the image height and width.
        num_scales: number of pyramid levels (1 = single scale). Level s is the image average-pooled by 2**s.
        scale_ratio: level s receives a share of the patches proportional to ``2 ** (-scale_ratio * s)``.

    Raises:
        TypeError: a field has the wrong type.
        ValueError: a weight is negative or not finite, all weights are 0, ``diff_type`` is unknown, a sigma is not
            positive, ``num_scales < 1`` or ``scale_ratio`` is negative or not finite.

    Example:
        >>> SamplingConfig(centre_weight=2, diff_weight=2, uniform_weight=0.5, num_scales=5, scale_ratio=1.5).num_scales
        5
    """

    centre_weight: float = 1.0
    diff_weight: float = 1.0
    uniform_weight: float = 0.5
    diff_type: str = "mse"
    centre_sigma: tuple[float, float] = (0.25, 0.25)
    num_scales: int = 1
    scale_ratio: float = 1.5

    def __post_init__(self) -> None:
        """Validate the fields and normalise ``centre_sigma`` to a tuple of floats."""
        for name in ("centre_weight", "diff_weight", "uniform_weight"):
            check_real(f"SamplingConfig.{name}", getattr(self, name), minimum=0.0)
        if self.centre_weight + self.diff_weight + self.uniform_weight <= 0:
            raise ValueError(
                "SamplingConfig: expected at least one of centre_weight, diff_weight, uniform_weight > 0, got "
                f"({self.centre_weight}, {self.diff_weight}, {self.uniform_weight})"
            )
        if not isinstance(self.diff_type, str):
            raise TypeError(f"SamplingConfig.diff_type: expected a str, got {type(self.diff_type).__name__}")
        if self.diff_type not in DIFF_TYPES:
            raise ValueError(f"SamplingConfig.diff_type: expected one of {DIFF_TYPES}, got {self.diff_type!r}")
        sigma = self.centre_sigma
        if isinstance(sigma, (str, bytes)) or not hasattr(sigma, "__len__") or len(sigma) != 2:
            raise TypeError(f"SamplingConfig.centre_sigma: expected a (row, col) pair of numbers, got {sigma!r}")
        for value in sigma:
            check_real("SamplingConfig.centre_sigma", value, minimum=0.0, strict=True)
        # Frozen dataclass: normalise lists (e.g. from JSON) to a tuple of floats.
        object.__setattr__(self, "centre_sigma", (float(sigma[0]), float(sigma[1])))
        if isinstance(self.num_scales, bool) or not isinstance(self.num_scales, numbers.Integral):
            raise TypeError(f"SamplingConfig.num_scales: expected an int, got {type(self.num_scales).__name__}")
        if self.num_scales < 1:
            raise ValueError(f"SamplingConfig.num_scales: expected an int >= 1, got {self.num_scales}")
        check_real("SamplingConfig.scale_ratio", self.scale_ratio, minimum=0.0)
