"""`VTAMIQConfig`: every architecture switch of VTAMIQ, with presets for the authors' three code eras.

The eras (see ``docs/background/authors-model.md`` §1) differ in small wiring details that matter for loading their
weights exactly:

============  ===================  ===================  ===================
switch        ``paper2021`` (P21)  ``release2022`` (R22)  ``head2024`` (H24)
============  ===================  ===================  ===================
CLS pos-emb   no                   yes                  yes
pos index     ``paper2021`` quirk  ``centre``           ``centre``
scales        1                    5 (+CLS row)         1
extra tokens  0                    0                    8
LayerScale    no                   no                   yes (+ diff scale)
CA activation PReLU                PReLU                ReLU
normalisation ImageNet             ImageNet             mean 0.5, std 0.5
============  ===================  ===================  ===================

Four switches exist only for this package's own models (all off in the eras' presets): ``zero_identity`` makes
identical inputs score exactly 0 and nothing score below them, ``token_distance`` adds a distance between the
aligned patch tokens of every layer, which gives the score pixel gradients that point from the distorted image
towards the reference (what a loss needs), ``patch_fidelity`` adds a learned-weight SSIM-like comparison of the
patches' pixels in opponent colours, so that no direction in pixel space (a colour cast, say) is invisible to the
score, and ``downsample_side`` scores large images at the viewing-distance scale of the label the model learned
(SSIM's and VSI's rule).
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from dataclasses import dataclass, field
from typing import Any

import torch

from ..sampling import SamplingConfig

__all__ = ["PRESETS", "VTAMIQConfig", "check_float_fields", "get_preset"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

_POS_INDEX_RULES = ("centre", "paper2021")
_MIN_STD = 1e-3  # a smaller std blows the normalised pixels up (1e-300 is 0 in float32: a division by zero)
_ACTIVATIONS = ("prelu", "relu")


@dataclass(frozen=True)
class VTAMIQConfig:
    """Architecture, preprocessing and test-time sampling defaults of a VTAMIQ model.

    The model predicts a *distortion* score: 0 means no visible difference and larger means worse.

    Attributes:
        embed_dim: ViT width D.
        depth: number of transformer blocks kept (the paper keeps the bottom 6 of ViT-B/16's 12).
        num_heads: attention heads.
        mlp_dim: hidden width of each block's MLP.
        patch_size: side P of the square patches.
        pos_grid: side G of the positional-embedding grid (24 for ViT-B/16 at 384 px); the table has 1 + G*G rows.
        cls_pos_embed: whether the CLS token gets row 0 of the positional table (False in the paper era).
        pos_index: how a patch centre (row, col) in [0, 1) selects a table row. ``"centre"``: row
            ``1 + G*floor(G*row) + floor(G*col)``. ``"paper2021"``: the paper era's rule, which maps the position back
            to its [-1, 1) convention and indexes without the CLS offset (cell (r, c) gets row ``G*r + c``).
        num_scales: pyramid levels the model knows; > 1 adds a scale-embedding table of ``num_scales + 1`` rows
            (patch at level s gets row s + 1).
        scale_embed_cls: add scale row 0 to the CLS token (release era).
        num_extra_tokens: register tokens after CLS (head era: 8); their outputs are discarded.
        layer_scale: LayerScale (init 1) on both residual branches of every block.
        diff_scale: learned per-channel scale of the feature difference (head era).
        norm_eps: epsilon of every LayerNorm.
        zero_identity: score ``|head(DiffNet(diff)) - head(DiffNet(0))|`` instead of ``head(DiffNet(diff))``: identical
            inputs (diff = 0) score exactly 0 and no input scores below them. Off in the authors' eras.
        token_distance: add :class:`~vtamiq_metric.model.distance.TokenDistance` to the score: an LPIPS-like
            distance between the unit-normalised patch tokens of the reference and the distorted image at the same
            positions, after the embedding and after every block, with learned non-negative channel weights (a
            ``(depth + 1, embed_dim)`` table). It is 0 for identical inputs, never negative, and its pixel gradient
            at the distorted image is, to first order, a positive semi-definite map of ``dist - ref``. Off in the
            authors' eras.
        patch_fidelity: add :class:`~vtamiq_metric.model.fidelity.PatchFidelity` to the score: per sampled patch
            pair, SSIM-like mean and structure terms of the pixels in three opponent colour channels at two window
            sizes, with learned non-negative weights (a ``(2, 2, 3)`` table). It is 0 for identical inputs, never
            negative, sees colour casts and brightness shifts, and keeps the score from being lowered by moving the
            pixels away from the reference in directions the transformer does not see. Off in the authors' eras.
        downsample_side: viewing distance: before patches are drawn, both images are averaged over ``F x F`` pixel
            blocks with ``F = max(1, round(min(H, W) / downsample_side))``
            (:func:`vtamiq_metric.sampling.viewing_downsample`), the rule SSIM's reference code and VSI apply with
            256. A model trained on VSI labels of crops shorter than ``1.5 * 256`` pixels learned the scale at which
            VSI sees them; ``downsample_side=256`` shows it larger images at that scale too. None (the eras'
            presets: the paper scores every image at its native resolution) leaves images as they are. At least
            ``2 * patch_size``.
        num_groups: DiffNet residual groups.
        blocks_per_group: residual channel-attention blocks per group.
        ca_reduction: channel-attention reduction ratio (hidden width ``embed_dim // ca_reduction``).
        ca_act: activation inside channel attention, ``"prelu"`` or ``"relu"``.
        head_hidden: hidden width of the MLP head.
        head_dropout: dropout before each head layer (training only).
        mlp_dropout: dropout after the GELU and after fc2 in every block (training only).
        embed_dropout: dropout on the token sequence after embedding (training only).
        drop_path: stochastic depth on DiffNet residual groups (training only).
        mean: per-channel normalisation mean applied to [0, 1] RGB patches.
        std: per-channel normalisation std (finite, at least 1e-3).
        num_patches: default number of patches per image at test time.
        sampling: default CAPS settings at test time.
    """

    embed_dim: int = 768
    depth: int = 6
    num_heads: int = 12
    mlp_dim: int = 3072
    patch_size: int = 16
    pos_grid: int = 24
    cls_pos_embed: bool = True
    pos_index: str = "centre"
    num_scales: int = 1
    scale_embed_cls: bool = False
    num_extra_tokens: int = 0
    layer_scale: bool = False
    diff_scale: bool = False
    norm_eps: float = 1e-6
    zero_identity: bool = False
    token_distance: bool = False
    patch_fidelity: bool = False
    downsample_side: int | None = None
    num_groups: int = 4
    blocks_per_group: int = 4
    ca_reduction: int = 16
    ca_act: str = "prelu"
    head_hidden: int = 192
    head_dropout: float = 0.2
    mlp_dropout: float = 0.1
    embed_dropout: float = 0.2
    drop_path: float = 0.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_patches: int = 1024
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def __post_init__(self) -> None:
        positive = ("embed_dim", "depth", "num_heads", "mlp_dim", "patch_size", "pos_grid", "num_scales",
                    "num_groups", "blocks_per_group", "ca_reduction", "head_hidden", "num_patches")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"VTAMIQConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.num_extra_tokens, int) or self.num_extra_tokens < 0:
            raise ValueError(f"VTAMIQConfig.num_extra_tokens must be an int >= 0, got {self.num_extra_tokens!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"VTAMIQConfig.embed_dim ({self.embed_dim}) must be divisible by num_heads "
                             f"({self.num_heads})")
        if self.embed_dim // self.ca_reduction < 1:
            raise ValueError(f"VTAMIQConfig.ca_reduction ({self.ca_reduction}) leaves no channel-attention width "
                             f"for embed_dim {self.embed_dim}")
        if self.pos_index not in _POS_INDEX_RULES:
            raise ValueError(f"VTAMIQConfig.pos_index must be one of {_POS_INDEX_RULES}, got {self.pos_index!r}")
        if self.ca_act not in _ACTIVATIONS:
            raise ValueError(f"VTAMIQConfig.ca_act must be one of {_ACTIVATIONS}, got {self.ca_act!r}")
        for name in ("cls_pos_embed", "scale_embed_cls", "layer_scale", "diff_scale", "zero_identity",
                     "token_distance", "patch_fidelity"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"VTAMIQConfig.{name} must be a bool, got {getattr(self, name)!r}")
        side = self.downsample_side
        if side is not None and (isinstance(side, bool) or not isinstance(side, int) or side < 2 * self.patch_size):
            raise ValueError(f"VTAMIQConfig.downsample_side must be None or an int >= 2 * patch_size "
                             f"({2 * self.patch_size}), got {side!r}")
        if self.scale_embed_cls and self.num_scales < 2:
            raise ValueError("VTAMIQConfig.scale_embed_cls needs num_scales > 1")
        for name in ("head_dropout", "mlp_dropout", "embed_dropout", "drop_path", "norm_eps"):
            if not _is_real(getattr(self, name)):
                raise TypeError(f"VTAMIQConfig.{name} must be a number (a float), got "
                                f"{_describe(getattr(self, name))}")
        for name in ("head_dropout", "mlp_dropout", "embed_dropout", "drop_path"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"VTAMIQConfig.{name} must be in [0, 1), got {value!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or len(value) != 3:
                raise ValueError(f"VTAMIQConfig.{name} must have 3 values (RGB), got {value!r}")
            if not all(_is_real(v) for v in value):
                raise TypeError(f"VTAMIQConfig.{name} must hold 3 numbers, got {value!r}")
        if min(self.std) < _MIN_STD:  # NaN fails every comparison: it is caught by check_float_fields below
            raise ValueError(f"VTAMIQConfig.std must be at least {_MIN_STD} (pixel values are divided by it), got "
                             f"{self.std!r}")
        # Normalise JSON lists back to tuples so equality and hashing hold after a round trip.
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        check_float_fields(self, torch.float32)
        if self.sampling.num_scales > self.num_scales and self.num_scales > 1:
            raise ValueError(f"sampling.num_scales ({self.sampling.num_scales}) exceeds the model's num_scales "
                             f"({self.num_scales})")

    def replace(self, **changes: Any) -> VTAMIQConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`, keys sorted so equal configs give equal text."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VTAMIQConfig:
        """Inverse of :meth:`to_dict`. Unknown keys raise, so a newer file is never half-read."""
        if not isinstance(data, dict):
            raise TypeError(f"expected a dict for VTAMIQConfig, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown VTAMIQConfig keys {unknown}; known keys are {sorted(known)}")
        values = dict(data)
        if isinstance(values.get("sampling"), dict):
            sampling_fields = {f.name for f in dataclasses.fields(SamplingConfig)}
            bad = sorted(set(values["sampling"]) - sampling_fields)
            if bad:
                raise ValueError(f"unknown SamplingConfig keys {bad}; known keys are {sorted(sampling_fields)}")
            sampling = dict(values["sampling"])
            for key, value in sampling.items():
                if isinstance(value, list):
                    sampling[key] = tuple(value)
            values["sampling"] = SamplingConfig(**sampling)
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> VTAMIQConfig:
        """Inverse of :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"VTAMIQConfig JSON is not valid JSON: {exc}") from exc
        except RecursionError:
            raise ValueError("VTAMIQConfig JSON is nested too deeply; expected a flat object of settings") from None
        return cls.from_dict(data)


def _is_real(value: object) -> bool:
    """A real number that is not a bool (JSON ``true`` is not a number) and that a Python float can hold (an int
    such as ``10**400`` cannot)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _describe(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_float_fields(config: VTAMIQConfig, dtype: torch.dtype = torch.float32) -> None:
    """Check that the config's floats are usable in ``dtype``, the precision the model computes in.

    A value can be finite in Python (float64) and yet infinite in float32: ``"mean": [1e300, 0, 0]`` passed a float64
    check and every score came out NaN. Checked, in ``dtype`` itself: ``mean`` and ``std`` are finite, the
    normalised values of the pixel values 0 and 1, ``(v - mean) / std``, are finite (exactly what
    :meth:`~vtamiq_metric.model.vtamiq.VTAMIQ.normalize` computes), and ``norm_eps`` is finite and above 0 in float32
    (LayerNorm adds it in float32 or wider for every input dtype). :class:`VTAMIQConfig` checks float32 on
    construction; the loader (:func:`vtamiq_metric.model.weights.model_from_state_dict`) checks again in the
    weights' dtype when that is narrower (float16).

    Args:
        config: the config.
        dtype: a floating-point torch dtype.

    Raises:
        ValueError: naming the field, its value and the dtype.
    """
    mean = torch.tensor(config.mean, dtype=torch.float64).to(dtype)
    std = torch.tensor(config.std, dtype=torch.float64).to(dtype)
    name = str(dtype).removeprefix("torch.")
    for field_name, values in (("mean", mean), ("std", std)):
        if not bool(torch.isfinite(values).all()):
            raise ValueError(f"VTAMIQConfig.{field_name} must be finite in {name}, the precision the model computes "
                             f"in, got {getattr(config, field_name)!r}")
    pixels = torch.tensor([[0.0], [1.0]], dtype=dtype)  # (2, 1): the extreme pixel values
    normalised = (pixels - mean) / std  # (2, 3)
    if not bool(torch.isfinite(normalised).all()):
        raise ValueError(f"VTAMIQConfig.mean and std must map pixel values in [0, 1] to finite {name} values, got "
                         f"mean {config.mean!r} and std {config.std!r} (normalised extremes "
                         f"{normalised.double().flatten().tolist()})")
    eps = torch.tensor(float(config.norm_eps), dtype=torch.float64).to(torch.float32)
    if not (bool(torch.isfinite(eps)) and float(eps) > 0):
        raise ValueError(f"VTAMIQConfig.norm_eps must be a finite number > 0 in float32 (LayerNorm adds it in "
                         f"float32), got {config.norm_eps!r}")


PRESETS: dict[str, VTAMIQConfig] = {
    # The paper's VTAMIQ-16-6-4-4 as the paper-era code built it: 57,306,274 parameters.
    "paper2021": VTAMIQConfig(
        cls_pos_embed=False, pos_index="paper2021", ca_act="prelu",
        sampling=SamplingConfig(centre_weight=2.0, diff_weight=5.0, uniform_weight=0.25),
    ),
    # Layout of the authors' only published checkpoint (KADIS-700k): scale embedding for 5 scales.
    "release2022": VTAMIQConfig(
        num_scales=5, scale_embed_cls=True, ca_act="prelu",
        sampling=SamplingConfig(centre_weight=2.0, diff_weight=2.0, uniform_weight=0.5, num_scales=5,
                                scale_ratio=1.5),
    ),
    # The authors' current code: register tokens, LayerScale, diff scale, ReLU channel attention, 0.5/0.5 inputs.
    # Its training config samples a uniform jittered grid (CAPS off), which the uniform-only default mirrors.
    "head2024": VTAMIQConfig(
        num_extra_tokens=8, layer_scale=True, diff_scale=True, ca_act="relu", head_dropout=0.1, mlp_dropout=0.0,
        embed_dropout=0.0, drop_path=0.1, mean=HALF, std=HALF, num_patches=512,
        sampling=SamplingConfig(centre_weight=0.0, diff_weight=0.0, uniform_weight=1.0),
    ),
    # The small model the package bundles (about 3.8M parameters): ViT-Ti-like width, 6 blocks, DiffNet at the same
    # width; trained from scratch, so it uses the simpler 0.5/0.5 normalisation and CAPS with the release-era weights.
    # zero_identity and token_distance make it a metric that is 0 for identical images and a loss whose gradient
    # points towards the reference (see model/distance.py); downsample_side=256 scores large images at the viewing
    # distance of its VSI labels.
    "vtamiq_tiny_patch16": VTAMIQConfig(
        embed_dim=192, depth=6, num_heads=3, mlp_dim=768, head_hidden=48, ca_reduction=16, head_dropout=0.1,
        mlp_dropout=0.0, embed_dropout=0.0, drop_path=0.0, mean=HALF, std=HALF, num_patches=1024,
        zero_identity=True, token_distance=True, downsample_side=256,
        sampling=SamplingConfig(centre_weight=1.0, diff_weight=2.0, uniform_weight=0.5),
    ),
    # A few-thousand-parameter model for fast tests.
    "tiny": VTAMIQConfig(
        embed_dim=32, depth=2, num_heads=2, mlp_dim=64, num_groups=1, blocks_per_group=2, ca_reduction=4,
        head_hidden=16, num_patches=64,
    ),
}


def get_preset(name: str) -> VTAMIQConfig:
    """The preset config called ``name`` (see :data:`PRESETS`)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown VTAMIQ preset {name!r}; available: {sorted(PRESETS)}") from None
