"""The scoring front-end, once: options, device and model resolution, the eval-mode lock, the reductions.

Every face of the metric (``score()``, ``VTAMIQLoss``, ``VTAMIQMetric``, ``damage_map``, ``plot_damage_map`` and the
``vtamiq`` command) turns its arguments into one :class:`ScoringOptions` (checked on construction, so the same bad
value gives the same ``TypeError``/``ValueError`` everywhere) and hands it with the model and device arguments to
:func:`resolve`, which returns a :class:`Scorer`: the model, the compute device and the options completed from the
model's config. What the faces then do differs (average seeded draws, reduce a loss, accumulate a state, attribute
the score to pixels); what they accept does not.

Also here: :func:`resolve_device` and :func:`resolve_model` (the model cache keyed by (name, device) and, for a local
path, the identity of its files, so that weights saved again under the same path are loaded again),
:func:`default_model_name` (the bundled default and its one-time notice), the eval-mode lock of the ``nn.Module``
faces (:class:`FrozenFace`, :func:`eval_mode`, :func:`freeze`) and the reductions (:data:`REDUCTIONS`,
:func:`check_reduction`, :func:`reduce`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import hub
from ._checks import (
    DEFAULT_MAX_PIXELS,
    check_bool,
    check_choice,
    check_optional_positive_int,
    check_positive_int,
    check_seed,
    vocabulary,
)
from ._device import check_device
from ._precision import Precision, check_precision, uses_half
from .model.config import VTAMIQConfig
from .model.vtamiq import VTAMIQ
from .sampling import SamplingConfig

__all__ = ["DEFAULT_MAX_PIXELS", "REDUCTIONS", "FrozenFace", "Scorer", "ScoringOptions", "check_reduction",
           "default_model_name", "eval_mode", "file_identity", "freeze", "reduce", "resolve", "resolve_device",
           "resolve_model"]

_logger = logging.getLogger(__name__)

# (name or path, device) -> (the identity of the path's files, or None for a name, and the model loaded from them).
_MODEL_CACHE: dict[tuple[str, str], tuple[tuple | None, VTAMIQ]] = {}
_CACHE_LOCK = threading.Lock()
_DEFAULT_NOTICE_SHOWN = False


@dataclass(frozen=True)
class ScoringOptions:
    """What every scoring face accepts besides the images, the model and the device; checked on construction.

    Attributes:
        num_patches: patches per image and draw, >= 1; None takes the model config's ``num_patches``.
        num_repeats: independent seeded CAPS draws (seeds ``seed .. seed + num_repeats - 1``), >= 1.
        seed: the first sampling seed, an int in ``[0, 2**64)``.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see :mod:`vtamiq_metric._precision`).
        batch_size: pairs decoded and scored at once, >= 1; None picks it from the memory
            (:func:`vtamiq_metric.api.auto_batch_size`).
        sampling: CAPS settings; None takes the model config's ``sampling``.
        compile: run the model through its cached ``torch.compile`` wrapper.
        max_pixels: refuse images of more pixels than this, before decoding them, >= 1; None lifts the limit.

    Raises:
        TypeError: a value of the wrong type (a bool is not an int here).
        ValueError: a value out of range, or an unknown precision.
    """

    num_patches: int | None = None
    num_repeats: int = 1
    seed: int = 0
    precision: Precision = "auto"
    batch_size: int | None = None
    sampling: SamplingConfig | None = None
    compile: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.num_patches is not None:  # None: the model's
            check_positive_int("num_patches", self.num_patches)
        check_positive_int("num_repeats", self.num_repeats)
        check_seed("seed", self.seed)
        check_precision(self.precision)
        check_optional_positive_int("batch_size", self.batch_size)
        if self.sampling is not None and not isinstance(self.sampling, SamplingConfig):
            raise TypeError(f"sampling must be a SamplingConfig or None, got {type(self.sampling).__name__}")
        check_bool("compile", self.compile)
        check_optional_positive_int("max_pixels", self.max_pixels)

    def complete(self, config: VTAMIQConfig) -> ScoringOptions:
        """These options with ``num_patches`` and ``sampling`` taken from ``config`` where they are None."""
        return dataclasses.replace(
            self, num_patches=config.num_patches if self.num_patches is None else self.num_patches,
            sampling=config.sampling if self.sampling is None else self.sampling)


@dataclass(frozen=True)
class Scorer:
    """A resolved front-end: the model, the compute device, and complete options (no None ``num_patches`` or
    ``sampling``). Built by :func:`resolve`; :func:`vtamiq_metric.api.score_batch` scores with it."""

    model: VTAMIQ
    device: torch.device
    options: ScoringOptions

    @property
    def num_patches(self) -> int:
        """Patches per image and draw."""
        return int(self.options.num_patches)  # type: ignore[arg-type]

    @property
    def sampling(self) -> SamplingConfig:
        """The CAPS settings in use."""
        return self.options.sampling  # type: ignore[return-value]

    @property
    def half_precision(self) -> bool:
        """Whether the model runs under a 16-bit autocast (bf16 or fp16) on this device."""
        return uses_half(self.device, self.options.precision)


def resolve_device(device: str | torch.device | None, ref: torch.Tensor, model: VTAMIQ | None) -> torch.device:
    """The compute device: explicit, else the model's, else the input tensor's, else CUDA if available, else CPU.

    Raises:
        ValueError: an unknown device string, or a device that this machine does not have
            (:func:`vtamiq_metric._device.check_device`, the check ``load_model`` shares).
        TypeError: ``device`` is neither None, a str nor a ``torch.device``.
    """
    if device is not None:
        return check_device(device)
    if model is not None:
        return next(model.parameters()).device
    if ref.device.type != "cpu":
        return ref.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_model_name() -> str:
    """The registered name used when no model is given; raises if this version bundles none.

    The first use in a process logs (at WARNING) what the default model is, so nobody mistakes the small bundled
    model for the paper's.
    """
    global _DEFAULT_NOTICE_SHOWN
    model_option = vocabulary().option("model")
    if hub.DEFAULT_MODEL is not None and not _DEFAULT_NOTICE_SHOWN:
        _DEFAULT_NOTICE_SHOWN = True
        _logger.warning("using the bundled default model %s: a small model trained on synthetic distortions, not the "
                        "paper's VTAMIQ and not calibrated to human scores; pass %s for paper-grade weights "
                        "(see vtamiq_metric/weights/MODEL_CARD.md)", hub.DEFAULT_MODEL, model_option)
    if hub.DEFAULT_MODEL is None:
        raise ValueError(f"no default VTAMIQ model is bundled with this version; pass {model_option} a registered "
                         f"name ({hub.list_pretrained()}), 'hf-hub:org/repo', a local weights path"
                         + ("" if vocabulary().cli else ", or a VTAMIQ instance")
                         + " (e.g. the authors' vtamiq_kadis700k.pth)")
    return hub.DEFAULT_MODEL


def _check_model_spec(model: object) -> None:
    if not isinstance(model, (str, VTAMIQ)) and not hasattr(model, "__fspath__"):
        raise TypeError(f"model must be a name, a path or a VTAMIQ instance, got {type(model).__name__}")


def file_identity(spec: str | os.PathLike[str]) -> tuple | None:
    """What identifies the weights behind a local path, read with ``stat`` only (no file is read): for a file, its
    resolved path, device, inode, size, modification and change times (ns); for a directory, the same for each of
    its regular files. None when ``spec`` is no existing path (a registered name, ``hf-hub:...``).

    Saving weights again changes it: :func:`vtamiq_metric._io.atomic_path` puts a new file (a new inode) in place, and
    a file rewritten in place gets a new size or modification time.
    """
    path = Path(os.fspath(spec)).expanduser()
    try:
        if not path.exists():
            return None
        resolved = path.resolve()
        files = sorted(p for p in resolved.iterdir() if p.is_file()) if resolved.is_dir() else [resolved]
        stats = [(str(file), file.stat()) for file in files]
    except OSError:
        return None  # unreadable: loading it reports why
    return tuple((name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) for name, st in stats)


def resolve_model(model: str | VTAMIQ | None, device: torch.device) -> VTAMIQ:
    """The model to use: a given instance as is, or a name/path loaded once per (name, device) and cached (frozen,
    in eval mode).

    A local path is loaded again when its files changed since (see :func:`file_identity`): new weights saved to the
    same folder are never answered with the old model. ``None`` means the package default
    (:data:`vtamiq_metric.hub.DEFAULT_MODEL`).

    Raises:
        TypeError: ``model`` is neither None, a name, a path nor a :class:`VTAMIQ`.
    """
    if isinstance(model, VTAMIQ):
        return model
    if model is None:
        model = default_model_name()
    _check_model_spec(model)
    key = (str(model), str(device))
    identity = file_identity(model) if str(model) not in hub.PRETRAINED else None
    with _CACHE_LOCK:
        cached = _MODEL_CACHE.get(key)
        if cached is None or cached[0] != identity:
            _MODEL_CACHE[key] = cached = (identity, freeze(hub.load_model(model, device=device)))
    return cached[1]


def resolve(model: str | VTAMIQ | None, options: ScoringOptions, *, device: str | torch.device | None = None,
            like: object = None, shared: bool = True) -> Scorer:
    """The model, the device and the complete options of one face: the one resolver every face calls.

    Args:
        model: a registered name, ``hf-hub:org/repo[@rev]``, a local path, a :class:`VTAMIQ` instance (used as is,
            on its own device), or None for the bundled default.
        options: the face's checked options.
        device: where to compute (see :func:`resolve_device`); with an instance it must be the instance's device.
        like: the face's ``ref`` argument: a tensor's device is the default device.
        shared: load a named model through the cache shared by ``score()`` (True), or load a fresh frozen copy on
            the CPU that the caller owns and may move (False: ``VTAMIQLoss`` and ``VTAMIQMetric``, whose ``.to()``
            must not move another user's model).

    Returns:
        A :class:`Scorer`.

    Raises:
        TypeError: ``model`` or ``device`` of the wrong type, or ``options`` is not a :class:`ScoringOptions`.
        ValueError: an unknown or missing device, or an instance on another device than ``device``.
    """
    if not isinstance(options, ScoringOptions):
        raise TypeError(f"options must be a ScoringOptions, got {type(options).__name__}")
    _check_model_spec(model if model is not None else "")
    instance = model if isinstance(model, VTAMIQ) else None
    if not isinstance(model, VTAMIQ) and not shared:
        net = freeze(hub.load_model(default_model_name() if model is None else model))
        return Scorer(net, next(net.parameters()).device, options.complete(net.config))
    probe = like if isinstance(like, torch.Tensor) else torch.empty(0)
    target = resolve_device(device, probe, instance)
    net = resolve_model(model, target)
    actual = next(net.parameters()).device
    if instance is not None and device is not None and actual != target:
        raise ValueError(f"model is on {actual} but device={target} was requested; move the model with .to() or "
                         f"leave device=None")
    return Scorer(net, target, options.complete(net.config))


def freeze(model: VTAMIQ) -> VTAMIQ:
    """``model`` in eval mode with ``requires_grad=False`` on every parameter (in place); returns it."""
    return model.eval().requires_grad_(False)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode (no dropout) and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class _Option:
    """An attribute of a module face that reads its :class:`ScoringOptions`; assigning it replaces the options,
    checked like the constructor's (None takes the model's value again)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, face: Any, owner: type | None = None) -> Any:
        if face is None:
            return self
        return getattr(face.options, self.name)

    def __set__(self, face: Any, value: Any) -> None:
        face.options = dataclasses.replace(face.options, **{self.name: value}).complete(face.model.config)


class FrozenFace:
    """Mixin for the ``nn.Module`` faces (``VTAMIQLoss``, ``VTAMIQMetric``) that hold a frozen metric network in
    ``self.model`` and complete :class:`ScoringOptions` in ``self.options``.

    ``.train()`` keeps everything in eval mode, so dropout never switches on, also when an enclosing module is put in
    training mode (the eval-mode lock). The options read (and, checked, write) as attributes: ``num_patches``,
    ``num_repeats``, ``seed``, ``precision``, ``sampling``, ``batch_size``.
    """

    options: ScoringOptions
    model: VTAMIQ

    num_patches = _Option()
    num_repeats = _Option()
    seed = _Option()
    precision = _Option()
    sampling = _Option()
    batch_size = _Option()

    def train(self, mode: bool = True) -> Any:
        """Kept for the nn.Module interface: the metric network always stays in eval mode."""
        return super().train(False)  # type: ignore[misc]


REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


def check_reduction(reduction: object) -> str:
    """``reduction`` if it is one of :data:`REDUCTIONS`, else ``ValueError``."""
    return check_choice("reduction", reduction, REDUCTIONS)


def reduce(scores: torch.Tensor, reduction: str) -> torch.Tensor:
    """(B,) scores -> their mean or sum (scalars), or themselves for ``"none"``."""
    check_reduction(reduction)
    if reduction == "mean":
        return scores.mean()
    if reduction == "sum":
        return scores.sum()
    return scores
