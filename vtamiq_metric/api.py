"""``score()``: VTAMIQ distortion scores for image pairs, and the core it shares with :class:`VTAMIQLoss`.

The pipeline is: validate and batch the inputs (:mod:`._validation`), draw aligned patches with CAPS
(:func:`.sampling.sample_patches`), normalise them with the model's mean/std, run the model. ``score`` averages
``num_repeats`` seeded draws. Scores are distortions: 0 means identical and higher means worse.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Literal

import torch

from . import hub
from ._validation import ImageLike, prepare_pair
from .model.vtamiq import VTAMIQ
from .sampling import SamplingConfig, sample_patches

__all__ = ["default_model_name", "forward_pairs", "resolve_device", "resolve_model", "score"]

_logger = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16"]
_PRECISIONS = ("auto", "fp32", "bf16")

_MODEL_CACHE: dict[tuple[str, str], VTAMIQ] = {}
_CACHE_LOCK = threading.Lock()


def resolve_device(device: str | torch.device | None, ref: torch.Tensor, model: VTAMIQ | None) -> torch.device:
    """The compute device: explicit, else the model's, else the input tensor's, else CUDA if available, else CPU."""
    if device is not None:
        return torch.device(device)
    if model is not None:
        return next(model.parameters()).device
    if ref.device.type != "cpu":
        return ref.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_model_name() -> str:
    """The registered name used when no model is given; raises if this version bundles none."""
    if hub.DEFAULT_MODEL is None:
        raise ValueError("no default VTAMIQ model is bundled with this version; pass model= a registered name "
                         f"({hub.list_pretrained()}), 'hf-hub:org/repo', a local weights path, or a VTAMIQ "
                         "instance (e.g. converted with vtamiq_metric.model.convert.load_reference_checkpoint)")
    return hub.DEFAULT_MODEL


def resolve_model(model: str | VTAMIQ | None, device: torch.device) -> VTAMIQ:
    """The model to use: a given instance as is, or a name/path loaded once per (name, device) and cached.

    ``None`` means the package default (:data:`vtamiq_metric.hub.DEFAULT_MODEL`).
    """
    if isinstance(model, VTAMIQ):
        return model
    if model is None:
        model = default_model_name()
    if not isinstance(model, str) and not hasattr(model, "__fspath__"):
        raise TypeError(f"model must be a name, a path or a VTAMIQ instance, got {type(model).__name__}")
    key = (str(model), str(device))
    with _CACHE_LOCK:
        cached = _MODEL_CACHE.get(key)
        if cached is None:
            cached = hub.load_model(model, device=device).eval().requires_grad_(False)
            _MODEL_CACHE[key] = cached
    return cached


def _autocast(device: torch.device, precision: str):
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {_PRECISIONS}, got {precision!r}")
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def forward_pairs(model: VTAMIQ, ref: torch.Tensor, dist: torch.Tensor, *, num_patches: int, seed: int,
                  sampling: SamplingConfig, precision: str = "fp32") -> torch.Tensor:
    """One seeded CAPS draw and one model pass: the core shared by :func:`score` and :class:`VTAMIQLoss`.

    Args:
        model: the model (its device is used as is).
        ref: (B, 3, H, W) float reference images in [0, 1], on the model's device.
        dist: (B, 3, H, W) float distorted images, same size and device.
        num_patches: patches per image.
        seed: sampling seed.
        sampling: CAPS settings.
        precision: ``"fp32"``, ``"bf16"`` (autocast), or ``"auto"`` (bf16 on CUDA only).

    Returns:
        (B,) float32 distortion scores; differentiable w.r.t. ``ref``/``dist`` when they require grad.
    """
    sample = sample_patches(ref, dist, num_patches, patch_size=model.config.patch_size, config=sampling, seed=seed)
    param = next(model.parameters())
    ref_p = model.normalize(sample.ref.to(param.dtype))  # (B, N, 3, P, P)
    dist_p = model.normalize(sample.dist.to(param.dtype))
    with _autocast(ref.device, precision):
        out = model(ref_p, dist_p, sample.pos.to(param.dtype), sample.scale)
    return out.float()


def score(
    ref: ImageLike | Sequence[ImageLike],
    dist: ImageLike | Sequence[ImageLike],
    *,
    model: str | VTAMIQ | None = None,
    num_patches: int | None = None,
    num_repeats: int = 1,
    seed: int = 0,
    device: str | torch.device | None = None,
    precision: Precision = "auto",
    batch_size: int | None = None,
    sampling: SamplingConfig | None = None,
    return_std: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """VTAMIQ distortion score of each (reference, distorted) image pair.

    Scores are **distortions**: 0 means no visible difference and higher means worse
    (``VTAMIQ.higher_is_better`` is False). The same inputs and seed give the same scores on every run, and the
    same patch positions on CPU and CUDA.

    Args:
        ref: reference image(s): a file path, PIL image, numpy array (HWC; uint8, uint16 or float in [0, 1]), tensor
            (CHW or BCHW float in [0, 1]), or a list of these. Grayscale is replicated to RGB and alpha is dropped.
        dist: distorted image(s), same count and size as ``ref`` (nothing is resized).
        model: a registered name, ``hf-hub:org/repo[@rev]``, a local path, or a :class:`VTAMIQ` instance; None uses
            the bundled default. Loaded models are cached per (model, device).
        num_patches: patches per image (default: the model config's ``num_patches``).
        num_repeats: independent seeded CAPS draws to average (seeds ``seed .. seed + num_repeats - 1``).
        seed: sampling seed; the global RNG state is never read or changed.
        device: where to compute (default: the model's device for an instance, else the input tensors' device, else
            CUDA when available, else CPU).
        precision: ``"auto"`` (bf16 autocast on CUDA, fp32 on CPU), ``"fp32"`` or ``"bf16"``.
        batch_size: pairs per model call (default: all pairs at once up to 32).
        sampling: CAPS settings (default: the model config's ``sampling``).
        return_std: also return the standard deviation over the repeats (0 when ``num_repeats == 1``).

    Returns:
        (B,) float32 tensor of distortion scores on the compute device, or ``(mean, std)`` when ``return_std``.

    Raises:
        ValueError / TypeError: bad images (size mismatch, out-of-range values, NaN, wrong channels...), bad
        arguments. FileNotFoundError: a missing image file.

    Example:
        >>> import torch, vtamiq_metric
        >>> from vtamiq_metric import VTAMIQ
        >>> ref = torch.rand(1, 3, 64, 64)
        >>> vtamiq_metric.score(ref, ref.clone(), model=VTAMIQ("tiny").eval(), num_patches=16).shape
        torch.Size([1])
    """
    if not isinstance(num_repeats, int) or num_repeats < 1:
        raise ValueError(f"num_repeats must be an int >= 1, got {num_repeats!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be an int >= 1 or None, got {batch_size!r}")
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    instance = model if isinstance(model, VTAMIQ) else None
    probe = ref if isinstance(ref, torch.Tensor) else torch.empty(0)
    target = resolve_device(device, probe, instance)
    net = resolve_model(model, target)
    if instance is not None and device is not None and next(net.parameters()).device != target:
        raise ValueError(f"model is on {next(net.parameters()).device} but device={target} was requested; move the "
                         f"model with .to() or leave device=None")
    config = net.config
    num_patches = config.num_patches if num_patches is None else num_patches
    if not isinstance(num_patches, int) or num_patches < 1:
        raise ValueError(f"num_patches must be an int >= 1, got {num_patches!r}")
    sampling = config.sampling if sampling is None else sampling
    ref_t, dist_t = prepare_pair(ref, dist, patch_size=config.patch_size)
    ref_t, dist_t = ref_t.to(target), dist_t.to(target)
    chunk = batch_size or min(len(ref_t), 32)

    runs = []
    with torch.no_grad():
        for repeat in range(num_repeats):
            parts = [
                forward_pairs(net, ref_t[i:i + chunk], dist_t[i:i + chunk], num_patches=num_patches,
                              seed=seed + repeat, sampling=sampling, precision=precision)
                for i in range(0, len(ref_t), chunk)
            ]
            runs.append(torch.cat(parts))
    stacked = torch.stack(runs)  # (R, B)
    mean = stacked.mean(0)
    if return_std:
        std = stacked.std(0, unbiased=False) if num_repeats > 1 else torch.zeros_like(mean)
        return mean, std
    return mean
