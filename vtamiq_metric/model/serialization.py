"""How a VTAMIQ model is stored: a directory with ``model.safetensors`` and ``config.json``; reading and writing.

This module knows the files, not the model class: :func:`write_pretrained` writes a state_dict, a config and its
provenance, :func:`read_weights` reads tensors and header metadata back, and :mod:`.weights` turns them into a model
(strictly). The safetensors header metadata holds the config JSON (``vtamiq_config``) and the provenance
(``vtamiq_provenance``: training data, commit, metrics, package version), so a lone ``.safetensors`` file is
loadable too. Both files are written atomically (:func:`vtamiq_metric._io.atomic_path`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_path, atomic_write_text
from .._version import __version__
from .config import VTAMIQConfig

__all__ = [
    "CONFIG_META",
    "CONFIG_NAME",
    "PROVENANCE_META",
    "WEIGHTS_NAME",
    "WeightsError",
    "read_weights",
    "sha256sum",
    "write_pretrained",
]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CONFIG_META = "vtamiq_config"
PROVENANCE_META = "vtamiq_provenance"


class WeightsError(ValueError):
    """A weights file that cannot be used: corrupt, wrong checksum, or not matching its config."""


def sha256sum(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_pretrained(directory: str | Path, state_dict: Mapping[str, torch.Tensor], config: VTAMIQConfig,
                     provenance: Mapping[str, Any]) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created if needed), each atomically.

    Args:
        directory: the model directory.
        state_dict: the tensors; saved detached, contiguous and on the CPU, in their dtype.
        config: the architecture, written to ``config.json`` and to the header metadata.
        provenance: free-form JSON-able information (training data, commit, metrics); the package version is added.

    Returns:
        ``directory`` as a Path.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    info = {**provenance, "vtamiq_metric_version": __version__}
    metadata = {
        "format": "pt",
        CONFIG_META: config.to_json(),
        PROVENANCE_META: json.dumps(info, sort_keys=True, default=str),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    atomic_write_text(directory / CONFIG_NAME, json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
    return directory


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a safetensors file; corrupt files raise :class:`WeightsError`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types for truncated or garbled headers and data
        raise WeightsError(f"cannot read weights file {path}: it is not a valid safetensors file ({exc})") from exc
    return tensors, metadata
