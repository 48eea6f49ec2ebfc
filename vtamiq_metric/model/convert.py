"""Converters from other weight layouts to ours.

- :func:`from_reference_state_dict`: the authors' VTAMIQ checkpoints of each code era (``paper2021``,
  ``release2022``, ``head2024``; key lists in ``tests/assets/reference/keys-*.tsv``, described in
  ``docs/background/authors-model.md`` §2; :func:`detect_reference_variant` tells the era from the keys). Sizes are
  read from the keys, q/k/v are fused,
  1x1 convolutions become Linears, and any unknown, missing or mis-shaped key raises: there is never a partial load
  (the authors' loader silently falls back to ``strict=False``).
- :func:`backbone_from_npz` / :func:`backbone_from_timm`: ImageNet ViT-B/16 weights for training, from Google's
  ``ViT-B_16.npz`` layout or a timm ``vit_base_patch16_384`` state_dict, with the positional table resampled when
  its grid differs from the config's.
"""

from __future__ import annotations

import logging
import math
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .config import VTAMIQConfig, get_preset
from .vtamiq import VTAMIQ
from .weights import model_from_state_dict

__all__ = [
    "REFERENCE_VARIANTS",
    "backbone_from_npz",
    "backbone_from_timm",
    "convert_reference_state_dict",
    "detect_reference_variant",
    "from_reference_state_dict",
    "load_backbone",
    "load_reference_checkpoint",
    "read_reference_checkpoint",
    "resample_pos_embed",
]

_logger = logging.getLogger(__name__)

REFERENCE_VARIANTS = ("paper2021", "release2022", "head2024")

# Container keys that hold the model weights in the authors' checkpoints (docs/background/authors-model.md §2).
_CONTAINER_MODEL_KEYS = ("model_state_dict", "state_dict", "model")
_CONTAINER_EXTRA_KEYS = {"epoch", "SROCC", "test_accuracy", "pref_module_state_dict", "optimizer", "scaler"}


def _unwrap_container(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"expected a state_dict or checkpoint dict, got {type(state_dict).__name__}")
    for key in _CONTAINER_MODEL_KEYS:
        if key in state_dict and isinstance(state_dict[key], Mapping):
            unknown = sorted(set(state_dict) - {key} - _CONTAINER_EXTRA_KEYS)
            if unknown:
                raise ValueError(f"unexpected keys {unknown} in checkpoint container next to {key!r}; expected only "
                                 f"{sorted(_CONTAINER_EXTRA_KEYS)}")
            state_dict = state_dict[key]
            break
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict entry {key!r} is a {type(value).__name__}, expected a tensor")
        # Weights saved from nn.DataParallel carry a "module." prefix.
        out[key.removeprefix("module.")] = value
    return out


# The largest counts any of the authors' models has (docs/background/authors-model.md §1: ViT-B has 12 encoder blocks,
# of which VTAMIQ keeps 6; DiffNet has 4 residual groups of 4 blocks), with room for variants. Indices in the keys
# beyond them are refused before anything is built: a 240 KB file must not make the converter map millions of keys.
_MAX_ENCODER_BLOCKS = 24
_MAX_DIFFNET_GROUPS = 16
_MAX_DIFFNET_BLOCKS = 16


def _max_index(keys: list[str], pattern: str) -> int:
    found = [int(m.group(1)) for k in keys if (m := re.match(pattern, k))]
    return max(found) + 1 if found else 0


def _check_indices(keys: list[str], variant: str, layer: str, decoder: str) -> None:
    """Refuse block and group indices beyond the known counts, and gaps, before any size is read from the keys."""
    checks = (
        (rf"transformer\.encoder\.{layer}\.(\d+)\.", _MAX_ENCODER_BLOCKS, f"transformer.encoder.{layer}.<i>",
         f"at most {_MAX_ENCODER_BLOCKS} encoder blocks"),
        # Group indices run to num_groups: the last one is DiffNet's output layer.
        (rf"{decoder}\.(\d+)\.", _MAX_DIFFNET_GROUPS + 1, f"{decoder}.<g>",
         f"at most {_MAX_DIFFNET_GROUPS} DiffNet groups, then the output layer"),
        (rf"{decoder}\.\d+\.body\.(\d+)\.", _MAX_DIFFNET_BLOCKS + 1, f"{decoder}.<g>.body.<r>",
         f"at most {_MAX_DIFFNET_BLOCKS} blocks per DiffNet group, then the group's last layer"),
    )
    for pattern, limit, name, what in checks:
        found = sorted({int(m.group(1)) for k in keys if (m := re.match(pattern, k))})
        if found and found[-1] >= limit:
            key = next(k for k in keys if (m := re.match(pattern, k)) and int(m.group(1)) == found[-1])
            raise ValueError(f"{variant} checkpoint: expected {name} indices below {limit} ({what}), got index "
                             f"{found[-1]} in key {key!r}")
        if found and found != list(range(len(found))):
            missing = sorted(set(range(found[-1] + 1)) - set(found))
            raise ValueError(f"{variant} checkpoint: expected {name} indices 0..{found[-1]} without gaps, got "
                             f"{len(found)} indices with {missing[:10]} missing")


def _config_from_keys(sd: dict[str, torch.Tensor], variant: str, layer: str, decoder: str) -> VTAMIQConfig:
    keys = list(sd)
    _check_indices(keys, variant, layer, decoder)

    def need(key: str) -> torch.Tensor:
        if key not in sd:
            raise KeyError(f"missing key {key!r} in the {variant} checkpoint")
        return sd[key]

    def size(key: str, dim: int, *ndims: int) -> int:
        """The length of dimension ``dim`` of tensor ``key`` (of one of the ranks ``ndims``), which must be at least 1:
        a size read here becomes a config width (and a divisor), so an empty or mis-ranked tensor is refused by name."""
        value = need(key)
        if value.ndim not in ndims or value.shape[dim] < 1:
            ranks = " or ".join(f"{n}-D" for n in ndims)
            raise ValueError(f"{variant} checkpoint: expected {key!r} to be a {ranks} tensor with a non-empty "
                             f"dimension {dim}, got shape {tuple(value.shape)}")
        return int(value.shape[dim])

    embed_dim = size("transformer.embeddings.cls_token", -1, 3)  # (1, 1, D)
    patch_size = size("transformer.embeddings.patch_embeddings.weight", -1, 4)  # (D, 3, P, P)
    pos_rows = size("transformer.embeddings.positional_embeddings.positional_embeddings", 1, 3)  # (1, 1 + G*G, D)
    grid = math.isqrt(pos_rows - 1)
    if grid < 1 or grid * grid != pos_rows - 1:
        raise ValueError(f"positional table has {pos_rows} rows, expected 1 + G*G for a square grid with G >= 1")
    depth = _max_index(keys, rf"transformer\.encoder\.{layer}\.(\d+)\.")
    if depth == 0:
        raise KeyError(f"no encoder blocks 'transformer.encoder.{layer}.<i>.*' found; is this a {variant} checkpoint?")
    num_groups = _max_index(keys, rf"{decoder}\.(\d+)\.body\.")
    blocks_per_group = _max_index(keys, rf"{decoder}\.0\.body\.(\d+)\.body\.")
    scale_key = "transformer.embeddings.scale_embeddings.scale_embeddings"
    num_scales = size(scale_key, 1, 3) - 1 if scale_key in sd else 1  # (1, num_scales + 1, D)
    extra_key = "transformer.embeddings.extra_tokens"
    extra = size(extra_key, 1, 3) if extra_key in sd else 0  # (1, extra, D)
    ca_w1 = "conv_du.1" if variant == "head2024" else "conv_du.0"
    ca_hidden = size(f"{decoder}.0.body.0.body.4.{ca_w1}.weight", 0, 3, 4)  # (D // reduction, D, 1[, 1])
    if ca_hidden > embed_dim:
        raise ValueError(f"{variant} checkpoint: expected the channel attention of "
                         f"'{decoder}.0.body.0.body.4.{ca_w1}.weight' to be at most {embed_dim} channels wide (the "
                         f"embedding width), got {ca_hidden}")
    preset = get_preset(variant)
    sampling = preset.sampling
    if sampling.num_scales > num_scales:
        sampling = type(sampling)(**{**sampling.__dict__, "num_scales": num_scales})
    return preset.replace(
        embed_dim=embed_dim,
        depth=depth,
        # Head count is not stored in the weights; ViT convention is 64-dim heads.
        num_heads=max(1, embed_dim // 64),
        mlp_dim=size(f"transformer.encoder.{layer}.0.ffn.fc1.weight", 0, 2),
        patch_size=patch_size,
        pos_grid=grid,
        num_scales=num_scales,
        scale_embed_cls=variant == "release2022" and num_scales > 1,
        num_extra_tokens=extra,
        layer_scale=f"transformer.encoder.{layer}.0.ls1.gamma" in sd,
        diff_scale="diff_scale.gamma" in sd,
        num_groups=num_groups,
        blocks_per_group=blocks_per_group,
        ca_reduction=embed_dim // ca_hidden,
        head_hidden=size("q_predictor.1.weight", 0, 2),
        sampling=sampling,
    )


def _reference_key_map(config: VTAMIQConfig, variant: str) -> dict[str, str]:
    """Our key -> reference key, for every parameter except the fused qkv and the patch embedding."""
    layer = "layers" if variant == "head2024" else "layer"
    decoder = "quality_decoder" if variant == "head2024" else "diff_net"
    emb = "transformer.embeddings"
    mapping = {
        "backbone.cls_token": f"{emb}.cls_token",
        "backbone.pos_embed": f"{emb}.positional_embeddings.positional_embeddings",
        "backbone.patch_embed.bias": f"{emb}.patch_embeddings.bias",
        "backbone.norm.weight": "transformer.encoder.encoder_norm.weight",
        "backbone.norm.bias": "transformer.encoder.encoder_norm.bias",
        "head.fc1.weight": "q_predictor.1.weight",
        "head.fc1.bias": "q_predictor.1.bias",
        "head.act.weight": "q_predictor.2.weight",
        "head.fc2.weight": "q_predictor.4.weight",
        "head.fc2.bias": "q_predictor.4.bias",
        "diffnet.out.weight": f"{decoder}.{config.num_groups}.weight",
        "diffnet.out.bias": f"{decoder}.{config.num_groups}.bias",
    }
    if config.num_extra_tokens:
        mapping["backbone.reg_token"] = f"{emb}.extra_tokens"
    if config.num_scales > 1:
        mapping["backbone.scale_embed"] = f"{emb}.scale_embeddings.scale_embeddings"
    if config.diff_scale:
        mapping["diff_scale.gamma"] = "diff_scale.gamma"
    for i in range(config.depth):
        ours, ref = f"backbone.blocks.{i}", f"transformer.encoder.{layer}.{i}"
        for a, b in (("norm1", "attention_norm"), ("norm2", "ffn_norm"), ("mlp.fc1", "ffn.fc1"),
                     ("mlp.fc2", "ffn.fc2"), ("attn.proj", "attn.out")):
            mapping[f"{ours}.{a}.weight"] = f"{ref}.{b}.weight"
            mapping[f"{ours}.{a}.bias"] = f"{ref}.{b}.bias"
        if config.layer_scale:
            mapping[f"{ours}.ls1.gamma"] = f"{ref}.ls1.gamma"
            mapping[f"{ours}.ls2.gamma"] = f"{ref}.ls2.gamma"
    ca = {"fc1": "conv_du.1", "fc2": "conv_du.4"} if variant == "head2024" else {"fc1": "conv_du.0", "fc2": "conv_du.2"}
    for g in range(config.num_groups):
        for r in range(config.blocks_per_group):
            ours, ref = f"diffnet.groups.{g}.blocks.{r}", f"{decoder}.{g}.body.{r}.body"
            mapping[f"{ours}.act.weight"] = f"{ref}.1.weight"
            mapping[f"{ours}.conv.weight"] = f"{ref}.2.weight"
            mapping[f"{ours}.conv.bias"] = f"{ref}.2.bias"
            for part in ("fc1", "fc2"):
                mapping[f"{ours}.ca.{part}.weight"] = f"{ref}.4.{ca[part]}.weight"
                mapping[f"{ours}.ca.{part}.bias"] = f"{ref}.4.{ca[part]}.bias"
            if config.ca_act == "prelu":
                mapping[f"{ours}.ca.act.weight"] = f"{ref}.4.conv_du.1.weight"
        mapping[f"diffnet.groups.{g}.conv.weight"] = f"{decoder}.{g}.body.{config.blocks_per_group}.weight"
        mapping[f"diffnet.groups.{g}.conv.bias"] = f"{decoder}.{g}.body.{config.blocks_per_group}.bias"
    return mapping


def convert_reference_state_dict(state_dict: Mapping[str, Any], variant: str
                                 ) -> tuple[VTAMIQConfig, dict[str, torch.Tensor]]:
    """Convert an authors' state_dict to our config and key layout.

    Args:
        state_dict: the bare state_dict, or a checkpoint container holding it under ``model_state_dict`` (with
            ``epoch``, ``SROCC``/``test_accuracy``, ``optimizer``... beside it), optionally ``module.``-prefixed.
        variant: code era, one of ``"paper2021"``, ``"release2022"``, ``"head2024"``.

    Returns:
        ``(config, state_dict)`` ready for ``VTAMIQ(config).load_state_dict(state_dict, strict=True)``.

    Raises:
        ValueError: unknown variant, unexpected keys or shapes. KeyError: a missing key (named).
    """
    if variant not in REFERENCE_VARIANTS:
        raise ValueError(f"variant must be one of {REFERENCE_VARIANTS}, got {variant!r}")
    sd = _unwrap_container(state_dict)
    layer = "layers" if variant == "head2024" else "layer"
    decoder = "quality_decoder" if variant == "head2024" else "diff_net"
    config = _config_from_keys(sd, variant, layer, decoder)
    mapping = _reference_key_map(config, variant)
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise KeyError(f"missing key {key!r} in the {variant} checkpoint")
        used.add(key)
        return sd[key]

    out: dict[str, torch.Tensor] = {}
    for ours, ref in mapping.items():
        value = take(ref)
        # DiffNet's 1x1 convolutions (o, i, 1[, 1]) are Linears (o, i).
        out[ours] = value.flatten(1) if ours.startswith("diffnet.") and value.ndim > 2 else value
    patch = take("transformer.embeddings.patch_embeddings.weight")  # (D, 3, P, P)
    out["backbone.patch_embed.weight"] = patch.reshape(patch.shape[0], -1)  # (D, 3*P*P), (C, H, W) order
    for i in range(config.depth):
        ref = f"transformer.encoder.{layer}.{i}.attn"
        for part in ("weight", "bias"):
            out[f"backbone.blocks.{i}.attn.qkv.{part}"] = torch.cat(
                [take(f"{ref}.query.{part}"), take(f"{ref}.key.{part}"), take(f"{ref}.value.{part}")])
    unknown = sorted(set(sd) - used)
    if unknown:
        raise ValueError(f"unexpected keys in the {variant} checkpoint (refusing a partial load): {unknown[:10]}"
                         + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""))
    return config, out


def from_reference_state_dict(state_dict: Mapping[str, Any], variant: str) -> VTAMIQ:
    """Build a :class:`VTAMIQ` from an authors' checkpoint, loading every weight strictly.

    Args:
        state_dict: see :func:`convert_reference_state_dict`.
        variant: ``"paper2021"``, ``"release2022"`` or ``"head2024"``.

    Returns:
        The model in eval mode, in the checkpoint's dtype.
    """
    config, sd = convert_reference_state_dict(state_dict, variant)
    model = model_from_state_dict(config, sd, f"{variant} checkpoint")
    model.provenance = {"converted_from": variant}
    return model


def detect_reference_variant(state_dict: Mapping[str, Any]) -> str:
    """The code era of an authors' checkpoint, from its keys (``docs/background/authors-model.md`` §1-2).

    ``transformer.encoder.layers.*`` and ``quality_decoder.*`` are the 2024 layout (``head2024``); the older
    ``transformer.encoder.layer.*`` with ``diff_net.*`` and a scale embedding is the release layout
    (``release2022``, that of the published KADIS-700k weights). Without the scale embedding the paper-era and
    release-era keys are the same, while the two eras compute differently (positional table, position index), so that
    case is refused rather than guessed.

    Args:
        state_dict: the bare state_dict or a checkpoint container (as :func:`convert_reference_state_dict` takes).

    Returns:
        ``"paper2021"``, ``"release2022"`` or ``"head2024"``.

    Raises:
        ValueError: keys of no era, or keys that two eras share (convert with an explicit ``variant``).
        TypeError: not a mapping of tensors.
    """
    keys = list(_unwrap_container(state_dict))
    if any(k.startswith(("transformer.encoder.layers.", "quality_decoder.")) for k in keys):
        return "head2024"
    if any(k.startswith("transformer.encoder.layer.") for k in keys) and any(k.startswith("diff_net.") for k in keys):
        if "transformer.embeddings.scale_embeddings.scale_embeddings" in keys:
            return "release2022"
        raise ValueError("the checkpoint's keys fit both the paper2021 and the release2022 layout (no scale "
                         "embedding), which compute differently; convert it with an explicit variant: `vtamiq "
                         "convert CHECKPOINT --variant paper2021|release2022 --output DIR` or "
                         "from_reference_state_dict(state_dict, variant)")
    sample = ", ".join(repr(k) for k in keys[:3])
    raise ValueError(f"expected an authors' VTAMIQ checkpoint (keys 'transformer.encoder.layer.<i>.*' with "
                     f"'diff_net.*', or 'transformer.encoder.layers.<i>.*' with 'quality_decoder.*'), got "
                     f"{len(keys)} keys such as {sample}")


def read_reference_checkpoint(path: str | Path) -> Mapping[str, Any]:
    """The contents of an authors' ``.pth`` file, read with ``torch.load(weights_only=True)`` (nothing in it runs).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable PyTorch checkpoint of tensors (the reason in words).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and EOF errors all mean "not a readable checkpoint"
        raise ValueError(f"cannot read checkpoint {path}: {_describe_unreadable(path, exc)}") from exc


def load_reference_checkpoint(path: str | Path, variant: str | None = None) -> VTAMIQ:
    """Read an authors' ``.pth`` file (with ``torch.load(weights_only=True)``) and convert it strictly.

    Args:
        path: the checkpoint, e.g. ``vtamiq_kadis700k.pth``.
        variant: the code era; None detects it from the keys (:func:`detect_reference_variant`).

    Returns:
        The model in eval mode; its ``provenance`` names the era and the file.
    """
    path = Path(path)
    checkpoint = read_reference_checkpoint(path)
    if variant is None:
        variant = detect_reference_variant(checkpoint)
    model = from_reference_state_dict(checkpoint, variant)
    model.provenance = {"converted_from": variant, "source_file": path.name}
    return model


def _describe_unreadable(path: Path, exc: Exception) -> str:
    """Why ``torch.load`` could not read ``path``, in words (torch's own message can be a bare number)."""
    size = path.stat().st_size
    if size == 0:
        return "expected a PyTorch checkpoint, got an empty file"
    if isinstance(exc, pickle.UnpicklingError):
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next((line for line in lines if "GLOBAL" in line), None)
        if detail is not None:
            return (f"expected a state_dict of tensors, got a pickle holding other Python objects ({detail}); "
                    f"torch.load(weights_only=True) refused it and nothing in it ran")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if zipfile.is_zipfile(path):
        return (f"expected a PyTorch checkpoint (a zip archive from torch.save), got a zip archive that is not one "
                f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})")
    if head[:1] == b"\x80":  # a pickle, but not torch.save's legacy format
        return "expected a PyTorch checkpoint (torch.save), got a pickle of something else; nothing in it ran"
    return (f"expected a PyTorch checkpoint (a zip archive from torch.save, or its legacy pickle format), got "
            f"{size} bytes that are neither, starting with {head!r}")


# ---------------------------------------------------------------------------------------------------------------
# ImageNet ViT backbones


def resample_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Resample a (1, 1 + g*g, D) positional table to (1, 1 + grid*grid, D), keeping the CLS row.

    Bilinear with aligned corners, which equals ``scipy.ndimage.zoom(order=1)`` over the (g, g, D) grid as the
    authors did.
    """
    old = math.isqrt(pos_embed.shape[1] - 1)
    if old * old != pos_embed.shape[1] - 1:
        raise ValueError(f"positional table has {pos_embed.shape[1]} rows, expected 1 + g*g")
    if old == grid:
        return pos_embed
    _logger.info("resampling positional embeddings from a %dx%d to a %dx%d grid", old, old, grid, grid)
    cls, table = pos_embed[:, :1], pos_embed[:, 1:]
    work = torch.float64 if pos_embed.dtype == torch.float64 else torch.float32
    table = table.reshape(1, old, old, -1).permute(0, 3, 1, 2).to(work)  # (1, D, g, g)
    table = F.interpolate(table, size=(grid, grid), mode="bilinear", align_corners=True)
    table = table.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos_embed.dtype)  # (1, G*G, D)
    return torch.cat([cls, table], dim=1)


def backbone_from_npz(npz: str | Path | Mapping[str, np.ndarray], config: VTAMIQConfig) -> dict[str, torch.Tensor]:
    """Backbone weights (our ``backbone.*`` keys) from Google's ViT ``.npz`` (docs/background/authors-model.md §4).

    Only blocks ``0 .. config.depth - 1`` are read; ``head/*`` and deeper blocks are ignored. The register tokens
    and scale embedding (if any) are not in the file and are left out of the returned dict.
    """
    if isinstance(npz, (str, Path)):
        path = Path(npz).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"ViT weights not found: {path}")
        with np.load(path) as data:
            w = {k: data[k] for k in data.files}
    else:
        w = dict(npz)

    def get(key: str) -> torch.Tensor:
        if key not in w:
            raise KeyError(f"missing key {key!r} in the ViT .npz")
        return torch.from_numpy(np.asarray(w[key], dtype=np.float32))

    dim = config.embed_dim
    kernel = get("embedding/kernel")  # (P, P, 3, D) HWIO
    out = {
        "backbone.patch_embed.weight": kernel.permute(3, 2, 0, 1).reshape(dim, -1),  # (D, 3*P*P)
        "backbone.patch_embed.bias": get("embedding/bias"),
        "backbone.cls_token": get("cls").reshape(1, 1, dim),
        "backbone.pos_embed": resample_pos_embed(get("Transformer/posembed_input/pos_embedding"), config.pos_grid),
        "backbone.norm.weight": get("Transformer/encoder_norm/scale"),
        "backbone.norm.bias": get("Transformer/encoder_norm/bias"),
    }
    for i in range(config.depth):
        src, dst = f"Transformer/encoderblock_{i}", f"backbone.blocks.{i}"
        att = f"{src}/MultiHeadDotProductAttention_1"
        out[f"{dst}.norm1.weight"] = get(f"{src}/LayerNorm_0/scale")
        out[f"{dst}.norm1.bias"] = get(f"{src}/LayerNorm_0/bias")
        out[f"{dst}.norm2.weight"] = get(f"{src}/LayerNorm_2/scale")
        out[f"{dst}.norm2.bias"] = get(f"{src}/LayerNorm_2/bias")
        out[f"{dst}.attn.qkv.weight"] = torch.cat(
            [get(f"{att}/{n}/kernel").reshape(dim, dim).T for n in ("query", "key", "value")])  # (3D, D)
        out[f"{dst}.attn.qkv.bias"] = torch.cat(
            [get(f"{att}/{n}/bias").reshape(dim) for n in ("query", "key", "value")])  # (3D,)
        out[f"{dst}.attn.proj.weight"] = get(f"{att}/out/kernel").reshape(dim, dim).T
        out[f"{dst}.attn.proj.bias"] = get(f"{att}/out/bias")
        out[f"{dst}.mlp.fc1.weight"] = get(f"{src}/MlpBlock_3/Dense_0/kernel").T
        out[f"{dst}.mlp.fc1.bias"] = get(f"{src}/MlpBlock_3/Dense_0/bias")
        out[f"{dst}.mlp.fc2.weight"] = get(f"{src}/MlpBlock_3/Dense_1/kernel").T
        out[f"{dst}.mlp.fc2.bias"] = get(f"{src}/MlpBlock_3/Dense_1/bias")
    return out


def backbone_from_timm(state_dict: Mapping[str, torch.Tensor], config: VTAMIQConfig) -> dict[str, torch.Tensor]:
    """Backbone weights (our ``backbone.*`` keys) from a timm ``vit_base_patch16_384`` state_dict.

    timm's ``vit_base_patch16_384.orig_in21k_ft_in1k`` is a conversion of Google's ``ViT-B_16.npz``; blocks use the
    same names as ours, so only the patch embedding, tokens and final norm are renamed.
    """
    sd = _unwrap_container(state_dict)
    if "patch_embed.proj.weight" not in sd:
        raise KeyError("missing key 'patch_embed.proj.weight': not a timm ViT state_dict")
    proj = sd["patch_embed.proj.weight"]  # (D, 3, P, P)
    out = {
        "backbone.patch_embed.weight": proj.reshape(proj.shape[0], -1),
        "backbone.patch_embed.bias": sd["patch_embed.proj.bias"],
        "backbone.cls_token": sd["cls_token"],
        "backbone.pos_embed": resample_pos_embed(sd["pos_embed"], config.pos_grid),
        "backbone.norm.weight": sd["norm.weight"],
        "backbone.norm.bias": sd["norm.bias"],
    }
    for key, value in sd.items():
        match = re.match(r"blocks\.(\d+)\.(.+)", key)
        if match and int(match.group(1)) < config.depth:
            out[f"backbone.{key}"] = value
    return out


def load_backbone(model: VTAMIQ, weights: dict[str, torch.Tensor]) -> VTAMIQ:
    """Copy converted backbone weights into ``model``; every backbone parameter must be covered except the
    register tokens and scale embedding, which the ImageNet weights do not have (they keep their random init)."""
    own = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    optional = {"backbone.reg_token", "backbone.scale_embed"}
    missing = sorted(set(own) - set(weights) - optional)
    unexpected = sorted(set(weights) - set(own))
    if missing or unexpected:
        raise ValueError(f"backbone weights do not match the model: missing {missing[:10]}, unexpected "
                         f"{unexpected[:10]}")
    with torch.no_grad():
        for key, value in weights.items():
            if tuple(value.shape) != tuple(own[key].shape):
                raise ValueError(f"backbone weight {key!r} has shape {tuple(value.shape)}, the model expects "
                                 f"{tuple(own[key].shape)}")
            own[key].copy_(value)
    return model
