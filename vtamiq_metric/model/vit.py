"""Sparse-patch Vision Transformer: a ViT that embeds pre-sampled patches at given positions.

Built from timm's transformer :class:`~timm.models.vision_transformer.Block` (fused qkv, attention through
``torch.nn.functional.scaled_dot_product_attention``). Unlike a standard ViT, the input is a *set* of N patches drawn
anywhere in the image; each patch gets the positional embedding of the grid cell its centre falls in (and, for
multi-scale models, a scale embedding).

Paper: Chubarau & Clark, "VTAMIQ: Transformers for Attention Modulated Image Quality Assessment", 2021,
https://arxiv.org/abs/2110.01655 . ViT: Dosovitskiy et al. 2020, https://arxiv.org/abs/2010.11929 .
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from .config import VTAMIQConfig

__all__ = ["SparseViT", "position_index"]

# Sentinel added by the paper-era code to its [-1, 1) -> [0, 1) mapping; kept for bit-exact table lookups.
_PAPER2021_EPS = 1e-6


def position_index(pos: torch.Tensor, grid: int, rule: str) -> torch.Tensor:
    """Map patch centres to rows of the positional-embedding table.

    Args:
        pos: (B, N, 2) float (row, col) patch centres in [0, 1).
        grid: side G of the square positional grid.
        rule: ``"centre"`` or ``"paper2021"`` (see :class:`VTAMIQConfig`).

    Returns:
        (B, N) long row indices into a table of ``1 + G*G`` rows.
    """
    if rule == "centre":
        cell = torch.floor(pos * grid)  # (B, N, 2)
        return (cell[..., 0] * grid + cell[..., 1] + 1).long()
    # Paper era: positions lived in [-1, 1); the model mapped them back with (p + 1) / (2 + 1e-6) and indexed without
    # the CLS offset, so cell (r, c) reads the embedding of the previous raster cell.
    centred = pos * 2 - 1
    unit = (centred + 1) / (2 + _PAPER2021_EPS)
    cell = torch.floor(unit * grid)  # (B, N, 2)
    return (cell[..., 0] * grid + cell[..., 1]).long()


class SparseViT(nn.Module):
    """ViT encoder over a sparse set of patches; returns the final-normed CLS token.

    State-dict layout (timm-like): ``cls_token`` (1, 1, D), ``reg_token`` (1, T, D) if T > 0, ``pos_embed``
    (1, 1 + G*G, D), ``scale_embed`` (1, S + 1, D) if S > 1, ``patch_embed`` (a Linear on the flattened (C, P, P)
    patch, equivalent to the usual P x P stride-P convolution), ``blocks.{i}`` (timm Blocks), ``norm``.
    """

    def __init__(self, config: VTAMIQConfig) -> None:
        # timm is imported here, not at module level: importing it pulls in torchvision and torch._dynamo (about
        # 2 s), which `import vtamiq_metric` and `vtamiq --help` must not pay (benchmarks/bench_import.py).
        from timm.models.vision_transformer import Block

        super().__init__()
        self.config = config
        dim, patch = config.embed_dim, config.patch_size
        self.patch_embed = nn.Linear(3 * patch * patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.reg_token = nn.Parameter(torch.zeros(1, config.num_extra_tokens, dim)) if config.num_extra_tokens else None
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.pos_grid**2, dim))
        self.scale_embed = nn.Parameter(torch.zeros(1, config.num_scales + 1, dim)) if config.num_scales > 1 else None
        self.pos_drop = nn.Dropout(config.embed_dropout)
        norm_layer = partial(nn.LayerNorm, eps=config.norm_eps)
        blocks = [
            Block(
                dim=dim, num_heads=config.num_heads, mlp_ratio=config.mlp_dim / dim, qkv_bias=True,
                proj_drop=config.mlp_dropout, init_values=1.0 if config.layer_scale else None,
                norm_layer=norm_layer,  # type: ignore[arg-type]  # timm annotates a class; it calls any factory
            )
            for _ in range(config.depth)
        ]
        for block in blocks:
            # The authors' blocks drop after the MLP only; attention output dropout is 0 in every era.
            block.attn.proj_drop = nn.Identity()
        self.blocks = nn.Sequential(*blocks)
        self.norm = norm_layer(dim)
        self.init_weights()

    def set_fused_attention(self, enabled: bool) -> None:
        """Run attention through ``scaled_dot_product_attention`` (True, the default) or as a materialised softmax
        (False: the authors' computation, the baseline of ``benchmarks/bench_score.py``). The weights do not change."""
        for block in self.blocks:
            block.attn.fused_attn = enabled  # type: ignore[union-attr]  # nn.Sequential yields Modules: timm Blocks

    def init_weights(self) -> None:
        """Random initialisation for training from scratch (ViT conventions: truncated normal 0.02)."""
        for tensor in (self.cls_token, self.pos_embed, self.reg_token, self.scale_embed):
            if tensor is not None:
                nn.init.trunc_normal_(tensor, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        # The patch embedding sees whole patches: scale like a fan-in init so tokens start at unit-ish magnitude.
        nn.init.trunc_normal_(self.patch_embed.weight, std=1.0 / math.sqrt(self.patch_embed.in_features))

    def embed(self, patches: torch.Tensor, pos: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        """Token sequence ``[CLS, extra tokens, patches]`` with positional and scale embeddings added.

        Args:
            patches: (B, N, 3, P, P) normalised patches.
            pos: (B, N, 2) patch centres in [0, 1).
            scale: (B, N) long pyramid levels, or None.

        Returns:
            (B, 1 + T + N, D) tokens.
        """
        cfg = self.config
        batch, num = patches.shape[:2]
        tokens = self.patch_embed(patches.reshape(batch, num, -1))  # (B, N, D)
        rows = position_index(pos, cfg.pos_grid, cfg.pos_index)  # (B, N)
        tokens = tokens + self.pos_embed[0, rows]  # (B, N, D)
        cls: torch.Tensor = self.cls_token
        if cfg.cls_pos_embed:
            cls = cls + self.pos_embed[:, :1]
        if self.scale_embed is not None:
            if scale is None:
                # Single-scale input to a multi-scale model: every patch is at full resolution (level 0).
                scale = torch.zeros(batch, num, dtype=torch.long, device=patches.device)
            tokens = tokens + self.scale_embed[0, scale + 1]  # (B, N, D)
            if cfg.scale_embed_cls:
                cls = cls + self.scale_embed[:, :1]
        parts = [cls.expand(batch, -1, -1)]
        if self.reg_token is not None:
            parts.append(self.reg_token.expand(batch, -1, -1))
        parts.append(tokens)
        return self.pos_drop(torch.cat(parts, dim=1))  # (B, 1 + T + N, D)

    def forward(self, patches: torch.Tensor, pos: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """Encode a patch set.

        Args:
            patches: (B, N, 3, P, P) normalised patches.
            pos: (B, N, 2) patch centres in [0, 1).
            scale: (B, N) long pyramid levels, or None.

        Returns:
            (B, D) final-normed CLS token.
        """
        tokens = self.blocks(self.embed(patches, pos, scale))  # (B, 1 + T + N, D)
        return self.norm(tokens[:, 0])  # (B, D)

    def forward_with_tokens(self, patches: torch.Tensor, pos: torch.Tensor,
                            scale: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encode a patch set and also return the patch tokens after the embedding and after every block.

        Args:
            patches: (B, N, 3, P, P) normalised patches.
            pos: (B, N, 2) patch centres in [0, 1).
            scale: (B, N) long pyramid levels, or None.

        Returns:
            The (B, D) final-normed CLS token, and ``depth + 1`` tensors of (B, N, D) patch tokens (CLS and extra
            tokens removed): the embedded input, then the output of each block.
        """
        first = 1 + self.config.num_extra_tokens
        tokens = self.embed(patches, pos, scale)  # (B, 1 + T + N, D)
        layers = [tokens[:, first:]]
        for block in self.blocks:
            tokens = block(tokens)
            layers.append(tokens[:, first:])  # (B, N, D)
        return self.norm(tokens[:, 0]), layers
