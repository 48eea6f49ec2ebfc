"""Pretrained weights: the registry, safetensors save/load, and Hugging Face Hub download.

Weights are ``model.safetensors`` files whose header metadata holds the model config (JSON) and provenance, next to a
``config.json`` with the same config. Every load is strict: a missing, unexpected or mis-shaped tensor raises.

``load_model`` accepts:

- a registered name (:func:`list_pretrained`): the file ships inside the package, or comes from the Hub at a pinned
  revision, and its sha256 is verified;
- ``hf-hub:org/repo`` or ``hf-hub:org/repo@revision``: any Hub repository in our layout;
- a local directory holding ``model.safetensors`` (and ``config.json``);
- a ``.safetensors`` file whose metadata holds the config.

Hub files come through ``huggingface_hub``, so its cache, ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` apply.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._version import __version__
from .model.config import VTAMIQConfig
from .model.convert import build_model
from .model.vtamiq import VTAMIQ

__all__ = [
    "DEFAULT_MODEL",
    "PRETRAINED",
    "PretrainedCfg",
    "WeightsError",
    "list_pretrained",
    "load_model",
    "save_pretrained",
    "sha256sum",
]

_logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_CONFIG_META = "vtamiq_config"
_PROVENANCE_META = "vtamiq_provenance"
_PACKAGE_DIR = Path(__file__).resolve().parent


class WeightsError(ValueError):
    """A weights file that cannot be used: corrupt, wrong checksum, or not matching its config."""


@dataclass(frozen=True)
class PretrainedCfg:
    """A registered set of weights, declared as data.

    Attributes:
        name: registry name, ``architecture.tag`` (the tag names the training data).
        sha256: checksum of the safetensors file, verified on every load.
        license: licence of the weights.
        hf_hub_id: Hub repository, for weights that are downloaded.
        revision: pinned Hub revision (a commit hash) for downloaded weights.
        filename: file name in the repository.
        bundled_path: path relative to the package directory, for weights that ship inside the package.
        notes: what the weights are, and how they were made.
    """

    name: str
    sha256: str
    license: str
    hf_hub_id: str | None = None
    revision: str | None = None
    filename: str = WEIGHTS_NAME
    bundled_path: str | None = None
    notes: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


#: Registered weights.
PRETRAINED: dict[str, PretrainedCfg] = {
    cfg.name: cfg
    for cfg in (
        PretrainedCfg(
            name="vtamiq_tiny_patch16.kadis_synthetic",
            sha256="42d79a4d58bdbf759692b355cb9ddbba3adb9d54c4757a005eb0b0525fc67449",
            license="Apache-2.0",
            bundled_path="weights/vtamiq_tiny_patch16.safetensors",
            notes="small VTAMIQ (3.8M parameters) trained from scratch on KADIS-style synthetic distortions (VSI "
                  "labels) of public-domain/CC0/CC-BY photographs from scikit-image and scikit-learn; not the paper's "
                  "model and not calibrated to human scores (held-out SROCC vs 1-VSI 0.72); see "
                  "weights/MODEL_CARD.md",
            tags=("bundled", "default"),
        ),
    )
}

#: The model ``score()`` and ``VTAMIQLoss`` use when none is named: the small bundled model (works offline).
DEFAULT_MODEL: str | None = "vtamiq_tiny_patch16.kadis_synthetic"


def list_pretrained() -> list[str]:
    """Names of the registered weights, sorted."""
    return sorted(PRETRAINED)


def sha256sum(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Save


def save_pretrained(model: VTAMIQ, directory: str | Path, *, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` for ``model`` into ``directory``.

    The safetensors metadata holds the config JSON, the package version and ``provenance`` (merged over
    ``model.provenance``). Tensors are saved contiguous and on the CPU, in the model's dtype.

    Returns:
        ``directory`` as a Path.
    """
    from safetensors.torch import save_file

    if not isinstance(model, VTAMIQ):
        raise TypeError(f"expected a VTAMIQ model, got {type(model).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    info = {**model.provenance, **(provenance or {}), "vtamiq_metric_version": __version__}
    metadata = {
        "format": "pt",
        _CONFIG_META: model.config.to_json(),
        _PROVENANCE_META: json.dumps(info, sort_keys=True, default=str),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    _atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    config_text = json.dumps(model.config.to_dict(), indent=2, sort_keys=True) + "\n"
    _atomic_write(directory / CONFIG_NAME, lambda tmp: tmp.write_text(config_text))
    return directory


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------------
# Load


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


def load_file(path: str | Path, *, config: VTAMIQConfig | None = None, sha256: str | None = None) -> VTAMIQ:
    """Load one safetensors file strictly.

    Args:
        path: the ``.safetensors`` file.
        config: the config to build; if None it is read from the file's metadata.
        sha256: expected checksum; checked before anything is parsed.
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
        if _CONFIG_META not in metadata:
            raise WeightsError(f"{path} has no {_CONFIG_META!r} entry in its metadata; pass a config or load the "
                               f"directory that holds its {CONFIG_NAME}")
        config = VTAMIQConfig.from_json(metadata[_CONFIG_META])
    model = build_model(config, tensors, f"weights file {path}")
    if _PROVENANCE_META in metadata:
        try:
            model.provenance = json.loads(metadata[_PROVENANCE_META])
        except json.JSONDecodeError:
            _logger.warning("ignoring unreadable provenance metadata in %s", path)
    return model


def _load_directory(directory: Path) -> VTAMIQ:
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{directory} has no {WEIGHTS_NAME}")
    config_file = directory / CONFIG_NAME
    config = VTAMIQConfig.from_json(config_file.read_text()) if config_file.is_file() else None
    return load_file(weights, config=config)


def _hub_download(repo_id: str, filename: str, revision: str | None, cache_dir: str | Path | None) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir,
                                    library_name="vtamiq-metric", library_version=__version__))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError) as exc:
        where = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
        raise OSError(
            f"could not get {where} from the Hugging Face Hub or its local cache ({type(exc).__name__}: {exc}). "
            f"To work offline: pass a local path to load_model (a directory with {WEIGHTS_NAME} and {CONFIG_NAME}, "
            f"or a .safetensors file), or pre-fill the cache on a machine with network access with "
            f"`hf download {repo_id} {filename}" + (f" --revision {revision}" if revision else "")
            + "` and copy it to HF_HOME / HF_HUB_CACHE here."
        ) from exc


def _parse_hub_name(spec: str) -> tuple[str, str | None]:
    target = spec[len("hf-hub:"):]
    repo_id, _, revision = target.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"expected 'hf-hub:org/repo' or 'hf-hub:org/repo@revision', got {spec!r}")
    return repo_id, revision or None


def load_model(name_or_path: str | Path, device: str | torch.device | None = None, *,
               cache_dir: str | Path | None = None) -> VTAMIQ:
    """Load VTAMIQ weights, strictly, into a model in eval mode.

    Args:
        name_or_path: a registered name (see :func:`list_pretrained`), ``hf-hub:org/repo[@revision]``, a local
            directory with ``model.safetensors`` (+ ``config.json``), or a ``.safetensors`` file.
        device: where to put the model (default: CPU).
        cache_dir: Hugging Face cache folder for Hub downloads (default: huggingface_hub's, honouring ``HF_HOME``).

    Returns:
        The model, in eval mode. Its scores are distortions: 0 = identical, higher = worse.

    Raises:
        ValueError: unknown name or malformed hub spec. FileNotFoundError: missing local path. OSError: the Hub and
        the cache could not provide the file. WeightsError: checksum mismatch, corrupt file, wrong keys or shapes.
    """
    if isinstance(name_or_path, VTAMIQ):
        raise TypeError("load_model expects a name or a path; you passed a VTAMIQ model, use it directly")
    spec = str(name_or_path)
    if spec in PRETRAINED:
        entry = PRETRAINED[spec]
        if entry.bundled_path is not None:
            path = _PACKAGE_DIR / entry.bundled_path
        elif entry.hf_hub_id is not None:
            path = _hub_download(entry.hf_hub_id, entry.filename, entry.revision, cache_dir)
        else:
            raise ValueError(f"registry entry {spec!r} names neither a bundled file nor a Hub repository")
        model = load_file(path, sha256=entry.sha256)
    elif spec.startswith("hf-hub:"):
        repo_id, revision = _parse_hub_name(spec)
        model = load_file(_hub_download(repo_id, WEIGHTS_NAME, revision, cache_dir))
    else:
        path = Path(spec).expanduser()
        if path.is_dir():
            model = _load_directory(path)
        elif path.is_file():
            model = load_file(path)
        elif path.suffix or "/" in spec or "\\" in spec:
            raise FileNotFoundError(f"no weights at {path}: expected a directory with {WEIGHTS_NAME} or a "
                                    f".safetensors file")
        else:
            raise ValueError(f"unknown model {spec!r}: not a registered name (registered: {list_pretrained()}), not "
                             f"'hf-hub:org/repo[@revision]', and no such file or directory")
    return model.to(device) if device is not None else model
