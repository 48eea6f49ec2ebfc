"""The one strict loader: every set of weights reaches a :class:`VTAMIQ` through :func:`model_from_state_dict`.

The module is built on the meta device, :func:`check_state_dict` names every missing or unexpected key and the first
mis-shaped one, and the tensors are assigned with ``load_state_dict(strict=True)``: there is never a partial load.
:func:`load_file` and :func:`load_directory` read our files (:mod:`.serialization`), the converters of foreign
checkpoints (:mod:`.convert`) remap keys first, and the registry and Hub resolution (:mod:`vtamiq_metric.hub`) find
the file; all of them end here. :func:`save_pretrained` is the matching writer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .config import VTAMIQConfig
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
    "check_state_dict",
    "load_directory",
    "load_file",
    "model_from_state_dict",
    "save_pretrained",
]

_logger = logging.getLogger(__name__)


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
        ValueError: a missing, unexpected or mis-shaped key (missing and unexpected keys are named, up to 10 each).
    """
    with torch.device("meta"):
        model = VTAMIQ(config)
    check_state_dict(model, state_dict, what)
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
        FileNotFoundError: no such file. WeightsError: checksum mismatch, corrupt file, or no config in the metadata.
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
        config = VTAMIQConfig.from_json(metadata[CONFIG_META])
    model = model_from_state_dict(config, tensors, f"weights file {path}")
    if PROVENANCE_META in metadata:
        try:
            model.provenance = json.loads(metadata[PROVENANCE_META])
        except json.JSONDecodeError:
            _logger.warning("ignoring unreadable provenance metadata in %s", path)
    return model


def load_directory(directory: str | Path) -> VTAMIQ:
    """Load a :func:`save_pretrained` directory: ``model.safetensors``, built with ``config.json`` when present.

    Raises:
        FileNotFoundError: the directory has no ``model.safetensors``. See :func:`load_file` for the rest.
    """
    directory = Path(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{directory} has no {WEIGHTS_NAME}")
    config_file = directory / CONFIG_NAME
    config = VTAMIQConfig.from_json(config_file.read_text()) if config_file.is_file() else None
    return load_file(weights, config=config)
