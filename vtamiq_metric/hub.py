"""Where weights come from: the registry of pretrained weights, Hugging Face Hub download, and ``load_model``.

Weights are ``model.safetensors`` files whose header metadata holds the model config (JSON) and provenance, next to a
``config.json`` with the same config (:mod:`vtamiq_metric.model.serialization`). This module only finds the file;
:mod:`vtamiq_metric.model.weights` loads it, strictly: a missing, unexpected or mis-shaped tensor raises. The file
helpers are re-exported here for convenience (``hub.save_pretrained``, ``hub.load_file``, ``hub.sha256sum``...).

``load_model`` accepts:

- a registered name (:func:`list_pretrained`): the file ships inside the package, or comes from the Hub at a pinned
  revision, and its sha256 is verified;
- ``hf-hub:org/repo`` or ``hf-hub:org/repo@revision``: any Hub repository in our layout;
- a local directory holding ``model.safetensors`` (and ``config.json``);
- a ``.safetensors`` file whose metadata holds the config;
- an authors' PyTorch checkpoint (``.pth``, ``.pt``, ``.ckpt``; the published one is ``vtamiq_kadis700k.pth``, see
  :data:`AUTHORS_WEIGHTS_URL`): read with ``torch.load(weights_only=True)``, its code era detected from its keys,
  converted strictly (:mod:`vtamiq_metric.model.convert`), and cached as safetensors under
  :func:`converted_cache_dir`, keyed by the checkpoint's sha256, so that later loads read the safetensors copy.

Hub files come through ``huggingface_hub``, so its cache, ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` apply.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ._checks import vocabulary
from ._device import check_device
from ._io import atomic_write_text
from ._links import AUTHORS_REPOSITORY_URL, AUTHORS_WEIGHTS_URL
from ._version import __version__
from .model.serialization import CONFIG_NAME, WEIGHTS_NAME, WeightsError, read_weights, sha256sum
from .model.vtamiq import VTAMIQ
from .model.weights import load_directory, load_file, save_pretrained

__all__ = [
    "AUTHORS_REPOSITORY_URL",
    "AUTHORS_WEIGHTS_URL",
    "CHECKPOINT_SUFFIXES",
    "DEFAULT_MODEL",
    "PRETRAINED",
    "RETIRED",
    "PretrainedCfg",
    "WeightsError",
    "converted_cache_dir",
    "list_pretrained",
    "load_file",
    "load_model",
    "read_weights",
    "save_pretrained",
    "sha256sum",
]

_logger = logging.getLogger(__name__)

_PACKAGE_DIR = Path(__file__).resolve().parent

#: File suffixes that ``load_model`` reads as an authors' PyTorch checkpoint, converted on the fly.
CHECKPOINT_SUFFIXES = frozenset({".pth", ".pt", ".ckpt"})


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


#: Registered weights.
PRETRAINED: dict[str, PretrainedCfg] = {
    cfg.name: cfg
    for cfg in (
        PretrainedCfg(
            name="vtamiq_tiny_patch16.kadis_photos_robust",
            sha256="b23577ea9db417228a0f672817763ea4e18b4ad21577af8cdfb8bf7c281e8915",
            license="Apache-2.0",
            bundled_path="weights/vtamiq_tiny_patch16_kadis_photos_robust.safetensors",
            notes="small VTAMIQ (3.8M parameters, token distance, patch fidelity, zero at identity) trained from "
                  "scratch on KADIS-style and colour distortions of permissively licensed photographs and on images "
                  "optimised against it, labelled by a teacher (VSI + S-CIELAB + MS-SSIM); not the paper's model and "
                  "not calibrated to human scores; see weights/MODEL_CARD.md",
        ),
    )
}

#: Names that were registered once and no longer ship, with what became of them (``load_model`` says it).
RETIRED: dict[str, str] = {
    "vtamiq_tiny_patch16.kadis_photos": (
        "it was the bundled default model of vtamiq-metric 0.1.0 (sha256 b0c9f3de...), a student of VSI alone that "
        "optimisation as a loss could game (colour casts, lower PSNR); vtamiq_tiny_patch16.kadis_photos_robust "
        "replaced it. Its file is in the project repository's history: git show 08e91bc:vtamiq_metric/weights/"
        "vtamiq_tiny_patch16_kadis_photos.safetensors > old.safetensors, then load_model('old.safetensors')"),
}

#: The model ``score()`` and ``VTAMIQLoss`` use when none is named: the small bundled model (works offline).
DEFAULT_MODEL: str | None = "vtamiq_tiny_patch16.kadis_photos_robust"


def list_pretrained() -> list[str]:
    """Names of the registered weights, sorted."""
    return sorted(PRETRAINED)


# Seconds the reachability probe of the Hub waits before a download is judged impossible (huggingface_hub itself
# retries a failed connection with back-off for about 30 s when the file is not cached).
_HUB_PROBE_TIMEOUT = 5.0


def _offline_advice(repo_id: str, filename: str, revision: str | None) -> str:
    """How to get the file without a network, in the caller's words (``load_model`` or ``--model``)."""
    words = vocabulary()
    local = (f"pass {words.option('model')} PATH" if words.cli else "pass a local path to load_model")
    return (f"To work offline: {local} (a directory with {WEIGHTS_NAME} and {CONFIG_NAME}, or a .safetensors "
            f"file), or pre-fill the cache on a machine with network access with `hf download {repo_id} {filename}"
            + (f" --revision {revision}" if revision else "")
            + "` and copy it to HF_HUB_CACHE here (then set HF_HUB_OFFLINE=1 to skip the network)")


def _hub_reachable(repo_id: str, filename: str, revision: str | None) -> bool:
    """Whether the Hub answers a metadata request for the file within :data:`_HUB_PROBE_TIMEOUT` seconds (any HTTP
    answer counts, an error status too: the download then reports it); False on a connection error or a timeout."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision), timeout=_HUB_PROBE_TIMEOUT)
    except HfHubHTTPError:
        return True
    except Exception:  # noqa: BLE001 - connection refused, DNS failure, timeout, proxy error...: no answer
        return False
    return True


def _hub_download(repo_id: str, filename: str, revision: str | None, cache_dir: str | Path | None) -> Path:
    """The file from the Hub cache or the Hub; fails at once, naming ``HF_HUB_OFFLINE`` and the cache, when neither
    has it (no waiting for huggingface_hub's retries)."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    where = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    cache = Path(cache_dir) if cache_dir is not None else Path(constants.HF_HUB_CACHE)
    options: dict[str, Any] = {"revision": revision, "cache_dir": cache_dir, "library_name": "vtamiq-metric",
                               "library_version": __version__}
    offline = constants.HF_HUB_OFFLINE
    if not offline and not _hub_reachable(repo_id, filename, revision):
        try:  # no network: what the cache holds, as huggingface_hub would fall back to it
            return Path(hf_hub_download(repo_id, filename, local_files_only=True, **options))
        except (LocalEntryNotFoundError, OSError):
            raise OSError(
                f"could not get {where}: the Hugging Face Hub did not answer within {_HUB_PROBE_TIMEOUT:g} s (no "
                f"network?) and the cache {cache} does not hold it. "
                + _offline_advice(repo_id, filename, revision)) from None
    try:
        return Path(hf_hub_download(repo_id, filename, **options))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError) as exc:
        state = "HF_HUB_OFFLINE is set and " if offline else ""
        raise OSError(
            f"could not get {where} from the Hugging Face Hub or its cache {cache} ({state}{type(exc).__name__}: "
            f"{exc}). " + _offline_advice(repo_id, filename, revision)
        ) from exc


def _parse_hub_name(spec: str) -> tuple[str, str | None]:
    target = spec[len("hf-hub:"):]
    repo_id, _, revision = target.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"expected 'hf-hub:org/repo' or 'hf-hub:org/repo@revision', got {spec!r}")
    return repo_id, revision or None


def converted_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The folder of converted authors' checkpoints: ``CACHE_DIR/vtamiq_converted`` when ``load_model`` gets a
    ``cache_dir``, else the folder ``converted`` in ``$TORCH_HOME``'s ``vtamiq_metric`` folder (``$TORCH_HOME`` is
    torch's hub cache, by default ``~/.cache/torch``). One sub-folder per checkpoint, named by the checkpoint's
    sha256."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser() / "vtamiq_converted"
    return Path(torch.hub.get_dir()).parent / "vtamiq_metric" / "converted"


def _stat_key(path: Path) -> str:
    """A name for this file as it is now (path, size, mtime, inode): finds the checksum of an unchanged checkpoint
    without reading it again."""
    info = path.stat()
    text = f"{path.resolve()}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_ino}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _load_checkpoint(path: Path, cache_dir: str | Path | None) -> VTAMIQ:
    """An authors' checkpoint as a model: from the converted cache when it holds this file's conversion, else
    converted (era from the keys) and cached. A cache that cannot be written only costs the next load a conversion."""
    root = converted_cache_dir(cache_dir)
    pointer = root / "by-stat" / _stat_key(path)
    try:
        digest = pointer.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        digest = ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        digest = sha256sum(path)
    target = root / digest
    if (target / WEIGHTS_NAME).is_file():
        try:
            model = load_directory(target)
        except (WeightsError, ValueError, OSError) as exc:
            _logger.warning("the cached conversion in %s is unreadable (%s); converting %s again", target, exc, path)
        else:
            _write_pointer(pointer, digest)
            return model
    from .model.convert import load_reference_checkpoint

    model = load_reference_checkpoint(path)
    model.provenance = {**model.provenance, "source_sha256": digest}
    try:
        model.save_pretrained(target)
        _write_pointer(pointer, digest)
    except OSError as exc:
        _logger.warning("could not cache the conversion of %s in %s (%s); the next load converts it again", path,
                        target, exc)
    else:
        _logger.info("converted %s (%s) and cached it in %s", path, model.provenance["converted_from"], target)
    return model


def _write_pointer(pointer: Path, digest: str) -> None:
    if pointer.is_file():
        return
    try:
        pointer.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(pointer, digest + "\n")
    except OSError as exc:
        _logger.debug("could not write %s: %s", pointer, exc)


def load_model(name_or_path: str | Path, device: str | torch.device | None = None, *,
               cache_dir: str | Path | None = None) -> VTAMIQ:
    """Load VTAMIQ weights, strictly, into a model in eval mode.

    Args:
        name_or_path: a registered name (see :func:`list_pretrained`), ``hf-hub:org/repo[@revision]``, a local
            directory with ``model.safetensors`` (+ ``config.json``), a ``.safetensors`` file, or an authors'
            checkpoint (``.pth``, ``.pt``, ``.ckpt``, e.g. ``vtamiq_kadis700k.pth`` from :data:`AUTHORS_WEIGHTS_URL`):
            converted strictly the first time (its era detected from its keys) and cached as safetensors.
        device: where to put the model (default: CPU); checked first, as ``score(device=...)`` checks it: a device
            this machine does not have is a ``ValueError`` that says so, before anything is read.
        cache_dir: Hugging Face cache folder for Hub downloads (default: huggingface_hub's, honouring ``HF_HOME``);
            converted checkpoints go to its ``vtamiq_converted`` folder (default: :func:`converted_cache_dir`).

    Returns:
        The model, in eval mode. Its scores are distortions: 0 = identical, higher = worse.

    Raises:
        ValueError: unknown name or malformed hub spec, a ``device`` this machine does not have, or an authors'
            checkpoint that cannot be read or whose keys fit no era (or two).
        TypeError: a :class:`VTAMIQ` instance instead of a name or a path.
        FileNotFoundError: missing local path.
        OSError: the Hub and the cache could not provide the file (at once when the Hub does not answer: no retries
            for half a minute).
        WeightsError: checksum mismatch, corrupt file, wrong keys or shapes.
    """
    if isinstance(name_or_path, VTAMIQ):
        raise TypeError("load_model expects a name or a path; you passed a VTAMIQ model, use it directly")
    target = check_device(device) if device is not None else None
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
            model = load_directory(path)
        elif path.is_file() and path.suffix.lower() in CHECKPOINT_SUFFIXES:
            model = _load_checkpoint(path, cache_dir)
        elif path.is_file():
            model = load_file(path)
        elif spec in RETIRED:  # before the path test: registry names have a dot, like a file name's suffix
            raise ValueError(f"model {spec!r} is no longer registered: {RETIRED[spec]}")
        elif path.suffix or "/" in spec or "\\" in spec:
            hint = (f" (the authors' weights are downloaded from {AUTHORS_WEIGHTS_URL})"
                    if path.suffix.lower() in CHECKPOINT_SUFFIXES else "")
            raise FileNotFoundError(f"no weights at {path}: expected a directory with {WEIGHTS_NAME}, a .safetensors "
                                    f"file or an authors' checkpoint (.pth){hint}")
        else:
            raise ValueError(f"unknown model {spec!r}: not a registered name (registered: {list_pretrained()}), not "
                             f"'hf-hub:org/repo[@revision]', and no such file or directory")
    return model.to(target) if target is not None else model
