"""`TokenDistance`: an LPIPS-like distance between the aligned patch tokens of the two images.

VTAMIQ compares the two images only through their CLS tokens: one D-vector per image. The pixel gradient of any
function of that difference lies in a space of at most D directions for the whole image, and for a model trained
from scratch those directions are nearly orthogonal to ``dist - ref`` (a cosine of about 0.01 was measured for the
first bundled model), so the score is a poor loss. A distance between the tokens of the *same* patch position in
the reference and the distorted image, summed over layers, has a pixel gradient that is, to first order,
``J^T W J (dist - ref)`` with ``W`` a non-negative diagonal weighting and ``J`` the Jacobian of the tokens: a positive
semi-definite map of the error, of rank up to D per patch. This is the form of LPIPS (Zhang et al. 2018,
https://arxiv.org/abs/1801.03924), applied to ViT tokens.

For layer l (the embedded tokens, then the output of each block) and patch i, with tokens unit-normalised over the
channels, ``d_l = mean_i sum_c w_lc (t_ref[l, i, c] - t_dist[l, i, c])^2`` with ``w = softplus(weight) >= 0``. The
distance is ``sqrt(sum_l d_l + eps^2) - eps``: 0 for identical tokens, never negative, and (unlike the squared sum)
not flat near 0, so as a loss it keeps pulling until the images match. It is computed in float32 even under
autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import VTAMIQConfig

__all__ = ["TokenDistance"]

# Initial channel weight softplus(-2) ~ 0.127; the distance starts small next to targets in [0, 1].
_INIT_WEIGHT = -2.0
_EPS = 1e-6


class TokenDistance(nn.Module):
    """Weighted distance between aligned patch tokens over ``depth + 1`` layers; see the module docstring.

    State dict: ``weight`` (depth + 1, D), the pre-softplus channel weights.
    """

    def __init__(self, config: VTAMIQConfig) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((config.depth + 1, config.embed_dim), _INIT_WEIGHT))

    def forward(self, ref_layers: list[torch.Tensor], dist_layers: list[torch.Tensor]) -> torch.Tensor:
        """Distance per pair.

        Args:
            ref_layers: ``depth + 1`` tensors of (B, N, D) patch tokens of the reference images.
            dist_layers: the same for the distorted images, at the same positions.

        Returns:
            (B,) float32 distances, >= 0 and exactly 0 where the tokens are identical.
        """
        if len(ref_layers) != self.weight.shape[0] or len(dist_layers) != self.weight.shape[0]:
            raise ValueError(f"expected {self.weight.shape[0]} token layers per image, got {len(ref_layers)} and "
                             f"{len(dist_layers)}")
        weights = F.softplus(self.weight.float())  # (L, D)
        with torch.autocast(device_type=weights.device.type, enabled=False):
            total = weights.new_zeros(ref_layers[0].shape[0])
            for layer, (ref, dist) in enumerate(zip(ref_layers, dist_layers, strict=True)):
                ref_n = F.normalize(ref.float(), dim=-1, eps=_EPS)  # (B, N, D)
                dist_n = F.normalize(dist.float(), dim=-1, eps=_EPS)
                total = total + ((ref_n - dist_n).square() * weights[layer]).sum(-1).mean(-1)  # (B,)
            return torch.sqrt(total + _EPS**2) - _EPS
