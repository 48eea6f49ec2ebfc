"""`PatchFidelity`: a learned-weight, SSIM-like comparison of the aligned patches' pixels, in opponent colours.

The transformer compares the two images through features it learned; a small network's features have blind spots
(directions in pixel space it does not see) that gradient descent on the score finds: optimised as a loss on its
own, a model that compares only features drifts into colour casts and lower fidelity. DISTS (Ding et al. 2020,
https://arxiv.org/abs/2004.07728) guards against this by comparing the input image itself as its first "stage".
This module does the same for VTAMIQ's patches: for the reference and the distorted patch at each sampled position,
in three opponent colour channels (luminance ``(R + G + B) / 3``, red-green ``R - G`` and yellow-blue
``(R + G) / 2 - B``), at two window sizes (the ``P/2 x P/2`` quarters of the patch and the whole patch), it compares

- the window means: ``(mu_ref - mu_dist)^2``, which sees brightness shifts and colour casts, and
- the structure and contrast: SSIM's ``1 - (2 sigma_rd + C) / (sigma_r^2 + sigma_d^2 + C)`` with ``C = 0.03^2``,
  which sees noise, blur, ringing and contrast changes, relative to the local contrast (masking).

Each (term, window size, channel) gets a learned non-negative weight (``softplus`` of a ``(2, 2, 3)`` parameter);
the fidelity is ``sqrt(mean over windows and patches of the weighted sum + eps^2) - eps``. It is exactly 0 for
identical patches (both terms are computed by the same operations on equal inputs), never negative, and its pixel
gradient pulls every pixel of the distorted patches towards the reference in a smooth, bounded way; it is computed
in float32 even under autocast. Patches arrive normalised with the model's mean and std and are mapped back to
[0, 1] first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import VTAMIQConfig

__all__ = ["PatchFidelity"]

# Rows: luminance, red-green, yellow-blue; columns: R, G, B.
_OPPONENT = ((1 / 3, 1 / 3, 1 / 3), (1.0, -1.0, 0.0), (0.5, 0.5, -1.0))
_C = 0.03**2  # SSIM's C2 for data in [0, 1]
_EPS = 1e-6
_INIT_WEIGHT = -3.0  # softplus(-3) ~ 0.049: a small contribution before training


class PatchFidelity(nn.Module):
    """Learned-weight comparison of the patches' pixels; see the module docstring.

    State dict: ``weight`` (2, 2, 3): pre-softplus weights of (mean, structure) x (quarter windows, whole patch) x
    (luminance, red-green, yellow-blue).
    """

    def __init__(self, config: VTAMIQConfig) -> None:
        super().__init__()
        if config.patch_size % 2:
            raise ValueError(f"PatchFidelity needs an even patch_size (it compares the patch's quarters), got "
                             f"{config.patch_size}")
        self.weight = nn.Parameter(torch.full((2, 2, 3), _INIT_WEIGHT))
        # Plain constants, not buffers: models are built on the meta device and filled from their state dict, which
        # holds only the learned weight.
        self._mean, self._std = config.mean, config.std

    def _opponent(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, P, P) normalised patches -> (B * N, 3, P, P) float32 opponent channels of the [0, 1] pixels."""
        opponent = torch.tensor(_OPPONENT, dtype=torch.float32, device=patches.device)
        std = torch.tensor(self._std, dtype=torch.float32, device=patches.device)
        mean = torch.tensor(self._mean, dtype=torch.float32, device=patches.device)
        # opponent @ (std * x + mean), as one affine map of the normalised channels
        scale, shift = opponent * std, opponent @ mean
        out = torch.einsum("oc,bcij->boij", scale, patches.flatten(0, 1).float())
        return out + shift.view(3, 1, 1)

    @staticmethod
    def _terms(ref: torch.Tensor, dist: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Mean and structure terms, each (M, 3) averaged over the windows of each patch, for the quarter windows and
        for the whole patch.

        One pooling pass: the five window statistics (means of ref, dist, ref^2, dist^2, ref * dist) of the quarters;
        the whole patch's are the averages of its four quarters'.
        """
        size = ref.shape[-1]
        stats = F.avg_pool2d(torch.cat([ref, dist, ref * ref, dist * dist, ref * dist], dim=1), size // 2)
        out = []
        for level in (stats, stats.mean((-2, -1), keepdim=True)):  # (M, 15, 2, 2), then (M, 15, 1, 1)
            mu_r, mu_d, sq_r, sq_d, prod = level.split(3, dim=1)
            # Not clamped: for identical inputs the three are computed by the same operations, hence equal, and the
            # structure term is exactly 0 (rounding makes them at most ~1e-7 negative, far below C).
            var_r, var_d, cov = sq_r - mu_r * mu_r, sq_d - mu_d * mu_d, prod - mu_r * mu_d
            mean_term = (mu_r - mu_d).square()
            # >= 0 in exact arithmetic (|2 cov| <= var_r + var_d); rounding can leave -1e-7 for near-identical
            # windows, which would make the square root below NaN.
            structure_term = (1.0 - (2.0 * cov + _C) / (var_r + var_d + _C)).clamp_min(0.0)
            out.append((mean_term.mean((-2, -1)), structure_term.mean((-2, -1))))
        return out

    def forward(self, ref_patches: torch.Tensor, dist_patches: torch.Tensor) -> torch.Tensor:
        """Fidelity per pair.

        Args:
            ref_patches: (B, N, 3, P, P) reference patches, normalised with the config's mean and std.
            dist_patches: (B, N, 3, P, P) distorted patches at the same positions.

        Returns:
            (B,) float32 values, >= 0 and exactly 0 where the patches are identical.
        """
        batch, num = ref_patches.shape[:2]
        weights = F.softplus(self.weight.float())  # (2 terms, 2 windows, 3 channels)
        with torch.autocast(device_type=weights.device.type, enabled=False):
            ref, dist = self._opponent(ref_patches), self._opponent(dist_patches)  # (B * N, 3, P, P)
            total = weights.new_zeros(batch * num)
            for index, (mean_term, structure_term) in enumerate(self._terms(ref, dist)):  # (B * N, 3) each
                total = total + (mean_term * weights[0, index]).sum(-1) + (structure_term * weights[1, index]).sum(-1)
            per_pair = total.view(batch, num).mean(-1).clamp_min(0.0)  # (B,), >= 0 (see _terms)
            # sqrt(a + eps^2) - eps, written so that a = 0 gives exactly 0.
            return per_pair / (torch.sqrt(per_pair + _EPS**2) + _EPS)
