"""DiffNet: residual groups of residual channel-attention blocks that modulate the feature difference.

The input is one D-vector per image pair (the CLS difference), treated as D channels with spatial size 1, so every
1x1 convolution of the original RCAN-style design is a Linear and every global average pool is the identity.

Structure (``docs/background/authors-model.md`` §1, which also says where the authors' code differs from the
paper's Eq. 2-4):

- ``RCAB(x) = x + CA(U)`` with ``U = Linear(PReLU(x))`` and ``CA(U) = U * sigmoid(W2 act(W1 U))``;
- ``RG(x) = x + DropPath(Linear(RCAB_M(... RCAB_1(x))))``;
- ``DiffNet(x) = Linear(RG_N(... RG_1(x)))`` (the final Linear has no residual).

RCAN: Zhang et al. 2018, https://arxiv.org/abs/1807.02758 .
"""

from __future__ import annotations

import torch
from torch import nn

from .config import VTAMIQConfig

__all__ = ["ChannelAttention", "DiffNet", "ResidualChannelAttentionBlock", "ResidualGroup"]


def _activation(name: str) -> nn.Module:
    # PReLU with one shared slope initialised at 0.25 (torch's default), as in the paper and release eras.
    return nn.PReLU() if name == "prelu" else nn.ReLU()


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation gate: ``u * sigmoid(fc2(act(fc1(u))))`` on (B, D) features."""

    def __init__(self, dim: int, reduction: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim // reduction)
        self.act = _activation(act)
        self.fc2 = nn.Linear(dim // reduction, dim)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """(B, D) features -> the same, each channel scaled by its gate in (0, 1)."""
        return u * torch.sigmoid(self.fc2(self.act(self.fc1(u))))  # (B, D)


class ResidualChannelAttentionBlock(nn.Module):
    """``x + CA(Linear(PReLU(x)))`` on (B, D) features."""

    def __init__(self, dim: int, reduction: int, ca_act: str) -> None:
        super().__init__()
        self.act = nn.PReLU()
        self.conv = nn.Linear(dim, dim)
        self.ca = ChannelAttention(dim, reduction, ca_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) features -> (B, D)."""
        return x + self.ca(self.conv(self.act(x)))  # (B, D)


class ResidualGroup(nn.Module):
    """``x + DropPath(Linear(RCAB_M(... RCAB_1(x))))`` on (B, D) features."""

    def __init__(self, dim: int, num_blocks: int, reduction: int, ca_act: str, drop_path: float) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[ResidualChannelAttentionBlock(dim, reduction, ca_act) for _ in range(num_blocks)])
        self.conv = nn.Linear(dim, dim)
        if drop_path > 0:
            from timm.layers import DropPath  # lazily: importing timm costs about 2 s (see model/vit.py)

            self.drop_path: nn.Module = DropPath(drop_path)
        else:
            self.drop_path = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) features -> (B, D)."""
        return x + self.drop_path(self.conv(self.blocks(x)))  # (B, D)


class DiffNet(nn.Module):
    """Difference modulation network: N residual groups, then a final Linear."""

    def __init__(self, config: VTAMIQConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.groups = nn.Sequential(*[
            ResidualGroup(dim, config.blocks_per_group, config.ca_reduction, config.ca_act, config.drop_path)
            for _ in range(config.num_groups)
        ])
        self.out = nn.Linear(dim, dim)

    def forward(self, diff: torch.Tensor) -> torch.Tensor:
        """Map (B, D) feature differences to (B, D) modulated features."""
        return self.out(self.groups(diff))  # (B, D)
