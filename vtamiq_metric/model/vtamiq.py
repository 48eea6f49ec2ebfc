"""VTAMIQ: Vision Transformer for Attention Modulated Image Quality.

Both images' patch sets go through one shared sparse ViT; the final-normed CLS outputs are subtracted
(reference minus distorted), optionally scaled per channel, modulated by DiffNet and regressed to one number by an
MLP head. The output is a **distortion score**: 0 means no visible difference and higher means worse
(``VTAMIQ.higher_is_better = False``). There is no output sigmoid or clamp. Two options of this package, off in the
authors' eras, change the output: ``zero_identity`` (score ``|head(diff) - head(0)|``, and identical patch sets
score exactly 0 with a zero gradient), ``token_distance`` (add :class:`.distance.TokenDistance`, a distance between
aligned patch tokens) and ``patch_fidelity`` (add :class:`.fidelity.PatchFidelity`, a comparison of the patches'
pixels in opponent colours).

Paper: Chubarau & Clark, 2021, https://arxiv.org/abs/2110.01655 .
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import VTAMIQConfig, get_preset
from .diffnet import DiffNet
from .distance import TokenDistance
from .fidelity import PatchFidelity
from .serialization import write_pretrained
from .vit import SparseViT

__all__ = ["VTAMIQ", "QualityHead"]


class QualityHead(nn.Module):
    """Dropout -> Linear(D, hidden) -> PReLU -> Dropout -> Linear(hidden, 1), flattened to (B,)."""

    def __init__(self, config: VTAMIQConfig) -> None:
        super().__init__()
        self.drop1 = nn.Dropout(config.head_dropout)
        self.fc1 = nn.Linear(config.embed_dim, config.head_hidden)
        self.act = nn.PReLU()
        self.drop2 = nn.Dropout(config.head_dropout)
        self.fc2 = nn.Linear(config.head_hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) features -> (B,) scores."""
        return self.fc2(self.drop2(self.act(self.fc1(self.drop1(x))))).flatten()  # (B,)


class VTAMIQ(nn.Module):
    """The VTAMIQ full-reference quality model.

    Args:
        config: a :class:`VTAMIQConfig` or the name of a preset (``"paper2021"``, ``"release2022"``, ``"head2024"``,
            ``"tiny"``, ...).

    The model is an ordinary trainable module. For scoring images use :func:`vtamiq_metric.score`, and as a loss
    :class:`vtamiq_metric.VTAMIQLoss`; both sample patches and normalise them for you.

    Example:
        >>> import torch
        >>> from vtamiq_metric import VTAMIQ
        >>> model = VTAMIQ("tiny").eval()
        >>> patches = torch.randn(2, 8, 3, 16, 16)
        >>> pos = torch.rand(2, 8, 2) * 0.99
        >>> model(patches, patches, pos).shape
        torch.Size([2])
    """

    higher_is_better = False

    def __init__(self, config: VTAMIQConfig | str) -> None:
        super().__init__()
        if isinstance(config, str):
            config = get_preset(config)
        if not isinstance(config, VTAMIQConfig):
            raise TypeError(f"expected a VTAMIQConfig or preset name, got {type(config).__name__}")
        self.config = config
        self.backbone = SparseViT(config)
        if config.diff_scale:
            from timm.layers import LayerScale  # lazily: importing timm costs about 2 s (see model/vit.py)

            self.diff_scale: nn.Module = LayerScale(config.embed_dim, init_values=1.0)
        else:
            self.diff_scale = nn.Identity()
        self.diffnet = DiffNet(config)
        self.head = QualityHead(config)
        self.token_distance = TokenDistance(config) if config.token_distance else None
        self.patch_fidelity = PatchFidelity(config) if config.patch_fidelity else None
        #: Free-form provenance (training data, commit, metrics...) written into saved weights' metadata.
        self.provenance: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------------------------
    def _check_inputs(self, ref: torch.Tensor, dist: torch.Tensor, pos: torch.Tensor,
                      scale: torch.Tensor | None) -> None:
        cfg = self.config
        expected = f"(B, N, 3, {cfg.patch_size}, {cfg.patch_size})"
        for name, patches in (("ref_patches", ref), ("dist_patches", dist)):
            if not isinstance(patches, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor of shape {expected}, got {type(patches).__name__}")
            if patches.ndim != 5 or tuple(patches.shape[2:]) != (3, cfg.patch_size, cfg.patch_size):
                raise ValueError(f"{name} must have shape {expected}, got {tuple(patches.shape)}")
        if ref.shape != dist.shape:
            raise ValueError(f"ref_patches and dist_patches must have the same shape, got {tuple(ref.shape)} "
                             f"and {tuple(dist.shape)}")
        batch, num = ref.shape[:2]
        if not isinstance(pos, torch.Tensor) or tuple(pos.shape) != (batch, num, 2) or not pos.is_floating_point():
            got = tuple(pos.shape) if isinstance(pos, torch.Tensor) else type(pos).__name__
            raise ValueError(f"pos must be a float tensor of shape ({batch}, {num}, 2), got {got}")
        if scale is not None and (not isinstance(scale, torch.Tensor) or tuple(scale.shape) != (batch, num)
                                  or scale.is_floating_point()):
            got = tuple(scale.shape) if isinstance(scale, torch.Tensor) else type(scale).__name__
            raise ValueError(f"scale must be an integer tensor of shape ({batch}, {num}) or None, got {got}")
        if torch.compiler.is_compiling():
            return
        # One host sync for all range checks: out-of-range values would index the wrong embedding rows.
        bad_pos = ~((pos >= 0) & (pos < 1)).all()  # NaN fails too
        checks = [bad_pos]
        if scale is not None:
            checks.append(((scale < 0) | (scale >= cfg.num_scales)).any())
        flags = torch.stack(checks).tolist()
        if flags[0]:
            raise ValueError(f"pos must hold patch centres (row, col) in [0, 1), got values in "
                             f"[{pos.min().item():.6g}, {pos.max().item():.6g}]")
        if scale is not None and flags[1]:
            raise ValueError(f"scale must be in [0, {cfg.num_scales - 1}] for a model with num_scales="
                             f"{cfg.num_scales}, got values in [{int(scale.min())}, {int(scale.max())}]")

    def forward_features(self, ref_patches: torch.Tensor, dist_patches: torch.Tensor, pos: torch.Tensor,
                         scale: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Intermediate features and the score, for inspection and golden tests.

        Returns:
            A dict with ``cls_ref`` and ``cls_dist`` (B, D) final-normed CLS tokens, ``diff`` (B, D) the (scaled)
            difference ref - dist, ``diffnet`` (B, D) the DiffNet output that the head regresses, ``head`` (B,) the
            head's score (``|head(diff) - head(0)|`` with ``zero_identity``), ``distance`` (B,) the token distance
            (only with ``token_distance``), ``fidelity`` (B,) the patch fidelity (only with ``patch_fidelity``) and
            ``score`` (B,) their sum, which :meth:`forward` returns.
        """
        self._check_inputs(ref_patches, dist_patches, pos, scale)
        batch = ref_patches.shape[0]
        # One backbone pass over both images: the weights are shared and the positions are aligned.
        both = torch.cat([ref_patches, dist_patches])
        both_pos = torch.cat([pos, pos])
        both_scale = None if scale is None else torch.cat([scale, scale])
        out: dict[str, torch.Tensor] = {}
        if self.token_distance is not None:
            cls, layers = self.backbone.forward_with_tokens(both, both_pos, both_scale)  # (2B, D), L x (2B, N, D)
            out["distance"] = self.token_distance([t[:batch] for t in layers], [t[batch:] for t in layers])
        else:
            cls = self.backbone(both, both_pos, both_scale)  # (2B, D)
        cls_ref, cls_dist = cls[:batch], cls[batch:]
        diff = self.diff_scale(cls_ref - cls_dist)  # (B, D)
        if self.config.zero_identity:
            # The head's value at diff = 0 rides along in the same pass, so identical inputs score exactly 0.
            modulated = self.diffnet(torch.cat([diff, diff.new_zeros(1, diff.shape[1])]))  # (B + 1, D)
            raw = self.head(modulated)  # (B + 1,)
            head, modulated = (raw[:batch] - raw[batch:]).abs(), modulated[:batch]
        else:
            modulated = self.diffnet(diff)
            head = self.head(modulated)  # (B,)
        if self.patch_fidelity is not None:
            out["fidelity"] = self.patch_fidelity(ref_patches, dist_patches)
        score = head
        for extra in ("distance", "fidelity"):
            if extra in out:
                score = score.float() + out[extra]
        if self.config.zero_identity:
            # Identical patch sets score exactly 0, with a zero gradient, at every batch position. Without this the
            # head's value at diff = 0 (computed in another row of the batch) and the backbone's output for the two
            # halves of the batch can differ by a rounding step, which leaves ~1e-9 and a +-1 slope of abs() there.
            same = (ref_patches == dist_patches).flatten(1).all(1)  # (B,)
            score = torch.where(same, torch.zeros_like(score), score)
            head = torch.where(same, torch.zeros_like(head), head)
        return {"cls_ref": cls_ref, "cls_dist": cls_dist, "diff": diff, "diffnet": modulated, "head": head,
                **out, "score": score}

    def forward(self, ref_patches: torch.Tensor, dist_patches: torch.Tensor, pos: torch.Tensor,
                scale: torch.Tensor | None = None) -> torch.Tensor:
        """Distortion scores for aligned patch sets.

        Args:
            ref_patches: (B, N, 3, P, P) reference patches, normalised with ``config.mean``/``config.std``.
            dist_patches: (B, N, 3, P, P) distorted patches at the same positions.
            pos: (B, N, 2) float patch centres (row, col) in [0, 1), whatever the code era.
            scale: (B, N) long pyramid level of each patch (0 = full resolution), or None for single-scale input.

        Returns:
            (B,) distortion scores: 0 means identical, higher means worse.
        """
        return self.forward_features(ref_patches, dist_patches, pos, scale)["score"]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise [0, 1] RGB images or patches whose channel axis is dim -3 with the model's mean/std."""
        mean = torch.tensor(self.config.mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
        std = torch.tensor(self.config.std, dtype=images.dtype, device=images.device).view(3, 1, 1)
        return (images - mean) / std

    def save_pretrained(self, directory: str | Path, *, provenance: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (config and provenance also in its metadata), atomically.

        Args:
            directory: the model directory (created if needed); :func:`vtamiq_metric.load_model` reads it back.
            provenance: merged over :attr:`provenance` in the file's metadata (training data, metrics...).

        Returns:
            The directory written.
        """
        return write_pretrained(directory, self.state_dict(), self.config, {**self.provenance, **(provenance or {})})
