"""The one strict loader: every set of weights reaches a :class:`VTAMIQ` through :func:`model_from_state_dict`.

Before anything is built, :func:`check_config_sizes` checks the config's sizes against the tensors present (a config
cannot make the loader build a module far larger than the file), every tensor must be float16, bfloat16, float32 or
float64 (float8 and integer tensors are refused by name) and finite, and the config's floats must be usable in the
tensors' dtype.
The module is then built on the meta device, :func:`check_state_dict` names every missing or unexpected key and the
first mis-shaped one, and the tensors are assigned with ``load_state_dict(strict=True)``: there is never a partial
load.
:func:`load_file` and :func:`load_directory` read our files (:mod:`.serialization`), the converters of foreign
checkpoints (:mod:`.convert`) remap keys first, and the registry and Hub resolution (:mod:`vtamiq_metric.hub`) find
the file; all of them end here. :func:`save_pretrained` is the matching writer.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .config import VTAMIQConfig, check_float_fields
from .serialization import (
    CONFIG_META,
    CONFIG_NAME,
    PROVENANCE_META,
    WEIGHTS_NAME,
    WeightsError,
    read_weights,
    sha256sum,
)
from .vtamiq import VTAMIQ

__all__ = [
    "SUPPORTED_DTYPES",
    "check_config_sizes",
    "check_state_dict",
    "load_directory",
    "load_file",
    "model_from_state_dict",
    "save_pretrained",
]

_logger = logging.getLogger(__name__)


# Counts of repeated modules, read from the indices in the keys: (config field, key pattern, what is counted).
_COUNTS = (
    ("depth", re.compile(r"backbone\.blocks\.(\d+)\."), "encoder blocks backbone.blocks.<i>"),
    ("num_groups", re.compile(r"diffnet\.groups\.(\d+)\."), "DiffNet groups diffnet.groups.<g>"),
    ("blocks_per_group", re.compile(r"diffnet\.groups\.\d+\.blocks\.(\d+)\."),
     "DiffNet blocks diffnet.groups.<g>.blocks.<r>"),
)
# The dtypes a model may be stored in. Others are refused by name: float8 has no isfinite, no LayerNorm and no
# matmul on most devices, and an integer or complex tensor is not a weight of this model.
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_SUPPORTED_NAMES = "float16, bfloat16, float32 or float64"
# Widths that are each the length of some tensor dimension (or smaller), whatever the architecture switches.
_WIDTHS = ("embed_dim", "num_heads", "mlp_dim", "patch_size", "pos_grid", "num_scales", "num_extra_tokens",
           "head_hidden")


def check_config_sizes(config: VTAMIQConfig, state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    """Check, before anything is built, that the config describes tensors of this size.

    The block and group counts must equal those in the keys, and no width (``embed_dim``, ``mlp_dim``, ``pos_grid``...)
    may exceed the largest tensor dimension present: a config in a file's metadata then cannot make the loader build
    (even on the meta device) a module out of proportion to the file. Every tensor must be of a dtype in
    :data:`SUPPORTED_DTYPES` (float16, bfloat16, float32, float64; float8 and integer tensors are refused), and the
    config's floats must be usable in each of those dtypes (:func:`.config.check_float_fields`).

    Raises:
        WeightsError: naming the config field, its value and what the tensors hold, or the first tensor of an
            unsupported dtype.
    """
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor) or value.dtype not in SUPPORTED_DTYPES:
            kind = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
            raise WeightsError(f"{what}: expected floating-point tensors of dtype {_SUPPORTED_NAMES}, got {kind} for "
                               f"{key!r}")
    for dtype in sorted({value.dtype for value in state_dict.values()}, key=str):
        try:
            check_float_fields(config, dtype)
        except ValueError as exc:
            raise WeightsError(f"{what}: {exc}") from None
    for name, pattern, label in _COUNTS:
        found = {int(m.group(1)) for key in state_dict if (m := pattern.match(key))}
        expected = getattr(config, name)
        if len(found) != expected or (found and max(found) != expected - 1):  # found == {0, ..., expected - 1}
            held = f"indices {min(found)}..{max(found)} ({len(found)} distinct)" if found else "none"
            raise WeightsError(f"{what}: the config says {name}={expected}, expected {label} with indices 0.."
                               f"{expected - 1}, but the file holds {held}")
    largest = max((max(value.shape, default=1) for value in state_dict.values()), default=0)
    for name in _WIDTHS:
        value = getattr(config, name)
        if value > largest:
            raise WeightsError(f"{what}: the config says {name}={value}, larger than every tensor dimension in the "
                               f"file (largest {largest}); the config does not describe these weights")


def check_state_dict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise ValueError naming every missing or unexpected key, or the first key whose shape differs."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{what} does not match the model: missing keys {missing[:10]}, unexpected keys "
                         f"{unexpected[:10]}")
    for key, value in state_dict.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(f"{what}: key {key!r} has shape {tuple(value.shape)}, the model expects "
                             f"{tuple(expected[key].shape)}")


def model_from_state_dict(config: VTAMIQConfig, state_dict: Mapping[str, torch.Tensor], what: str) -> VTAMIQ:
    """A :class:`VTAMIQ` holding exactly ``state_dict`` (strict: names and shapes must match), in eval mode.

    No time is spent on a random initialisation that would be overwritten: the module is built on the meta device
    and the tensors are assigned.

    Args:
        config: the architecture to build.
        state_dict: tensors in our key layout (:func:`.convert.convert_reference_state_dict` maps the authors').
        what: names the source in error messages, e.g. ``"weights file m.safetensors"``.

    Returns:
        The model in eval mode, in the dtype of the tensors.

    Raises:
        WeightsError: sizes of the config that the tensors do not have (:func:`check_config_sizes`), a tensor whose
            dtype is not in :data:`SUPPORTED_DTYPES`, config floats that overflow in the tensors' dtype, or a tensor
            holding NaN or infinity.
        ValueError: a missing, unexpected or mis-shaped key (missing and unexpected keys are named, up to 10 each).
    """
    check_config_sizes(config, state_dict, what)
    with torch.device("meta"):
        model = VTAMIQ(config)
    check_state_dict(model, state_dict, what)
    for key, value in state_dict.items():
        if not bool(torch.isfinite(value).all()):
            raise WeightsError(f"{what}: expected finite weights, got NaN or infinity in {key!r}")
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval()


def save_pretrained(model: VTAMIQ, directory: str | Path, *, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` for ``model`` (see :meth:`VTAMIQ.save_pretrained`).

    Raises:
        TypeError: ``model`` is not a :class:`VTAMIQ`.
    """
    if not isinstance(model, VTAMIQ):
        raise TypeError(f"expected a VTAMIQ model, got {type(model).__name__}")
    return model.save_pretrained(directory, provenance=provenance)


def load_file(path: str | Path, *, config: VTAMIQConfig | None = None, sha256: str | None = None) -> VTAMIQ:
    """Load one safetensors file strictly.

    Args:
        path: the ``.safetensors`` file.
        config: the config to build; if None it is read from the file's metadata.
        sha256: expected checksum; checked before anything is parsed.

    Returns:
        The model in eval mode, with ``provenance`` read from the file's metadata.

    Raises:
        FileNotFoundError: no such file. WeightsError: checksum mismatch, corrupt file, no or an invalid config in the
            metadata, sizes of the config the tensors do not have, tensors of an unsupported dtype (float8, integers)
            or holding NaN or infinity.
        ValueError: keys or shapes that do not match the config.
    """
    path = Path(path)
    if sha256 is not None:
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        actual = sha256sum(path)
        if actual != sha256:
            raise WeightsError(f"checksum mismatch for {path}: expected sha256 {sha256}, got {actual}; the file is "
                               f"corrupt or not the registered weights (delete it to download again)")
    tensors, metadata = read_weights(path)
    if config is None:
        if CONFIG_META not in metadata:
            raise WeightsError(f"{path} has no {CONFIG_META!r} entry in its metadata; pass a config or load the "
                               f"directory that holds its {CONFIG_NAME}")
        config = _parse_config(metadata[CONFIG_META], f"the {CONFIG_META!r} metadata of {path}")
    model = model_from_state_dict(config, tensors, f"weights file {path}")
    if PROVENANCE_META in metadata:
        try:
            model.provenance = json.loads(metadata[PROVENANCE_META])
        except (ValueError, RecursionError):
            _logger.warning("ignoring unreadable provenance metadata in %s", path)
    return model


def load_directory(directory: str | Path) -> VTAMIQ:
    """Load a :func:`save_pretrained` directory: ``model.safetensors``, built with ``config.json`` when present.

    Raises:
        FileNotFoundError: the directory has no ``model.safetensors``.
        WeightsError: a ``config.json`` that is not UTF-8 JSON or not a valid config (the message names the file).
            See :func:`load_file` for the rest.
    """
    directory = Path(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{directory} has no {WEIGHTS_NAME}")
    config_file = directory / CONFIG_NAME
    config = _parse_config(_read_config_text(config_file), str(config_file)) if config_file.is_file() else None
    return load_file(weights, config=config)


def _read_config_text(path: Path) -> str:
    """The text of a ``config.json``; bytes that are not UTF-8 (JSON's encoding) are a WeightsError naming the file."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise WeightsError(f"invalid model config in {path}: expected UTF-8 JSON text, got a byte that is not UTF-8 "
                           f"at offset {exc.start} ({exc.reason})") from None


def _parse_config(text: str, where: str) -> VTAMIQConfig:
    """A config from JSON text; anything unusable (bad JSON, nesting too deep, bad values) is a WeightsError."""
    try:
        return VTAMIQConfig.from_json(text)
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"invalid model config in {where}: {exc}") from exc
