"""``score()``: VTAMIQ distortion scores for image pairs, and the core it shares with :class:`VTAMIQLoss`.

The pipeline is: validate and batch the inputs (:mod:`._validation`), draw aligned patches with CAPS
(:func:`.sampling.sample_patches`), normalise them with the model's mean/std, run the model. ``score`` averages
``num_repeats`` seeded draws. Scores are distortions: 0 means identical and higher means worse.

Performance:
    Attention runs through ``scaled_dot_product_attention`` (timm's fused attention). On CUDA ``score()`` uses bf16
    autocast by default (``precision="auto"``), and ``batch_size=None`` picks the largest chunk of pairs that fits
    in about half of the free GPU memory (see :func:`auto_batch_size`). ``compile=True`` wraps the model with
    ``torch.compile`` once per model instance (the first call pays the compilation; a new batch shape may compile
    once more).

    On CPU, torch uses one thread per core by default. Nothing here changes global thread settings; when several
    processes score at once, give each a share of the *physical* cores with ``torch.set_num_threads(n)`` (or
    ``OMP_NUM_THREADS=n`` before starting Python), since oversubscribed threads are much slower than fewer busy
    ones. ``precision="auto"`` also uses bf16 on CPUs with native bf16 units (AVX512-BF16, AMX), where it is about
    twice as fast as fp32; other CPUs stay fp32 (:mod:`vtamiq_metric._precision`).

Memory:
    A list of images is decoded and validated lazily, one batch of ``batch_size`` pairs at a time, so peak memory is
    that of one batch whatever the length of the list. 8-bit images stay 8-bit until patches are cut (3 bytes per
    pixel), and the CAPS difference map of large images is computed in strips: one pair of 8-bit images peaks at
    about 16 bytes per pixel of one image (decoding included). ``max_pixels`` (150 million by default) refuses larger
    images before decoding them, like Pillow's decompression-bomb check; pass ``max_pixels=None`` to lift it.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Sequence
import torch

from . import hub
from ._precision import Precision, autocast, uses_bf16
from ._validation import ImageLike, image_size, is_single_image, prepare_pair
from .model.config import VTAMIQConfig
from .model.vtamiq import VTAMIQ
from .sampling import SamplingConfig, sample_patches, viewing_downsample

__all__ = ["auto_batch_size", "compiled_forward", "default_model_name", "estimate_pair_bytes", "forward_pairs",
           "pair_flops", "resolve_device", "resolve_model", "score"]

_logger = logging.getLogger(__name__)

_MODEL_CACHE: dict[tuple[str, str], VTAMIQ] = {}
_CACHE_LOCK = threading.Lock()

# One torch.compile'd forward per model instance. The compiled function reaches its model through a weak reference,
# so the cache entry (and the compiled code) goes away with the model instead of keeping it alive.
_COMPILED: weakref.WeakKeyDictionary[VTAMIQ, Callable[..., torch.Tensor]] = weakref.WeakKeyDictionary()
_COMPILED_LOCK = threading.Lock()
# Largest automatic chunk on CUDA, and the share of the free memory it may plan for (the rest is headroom for the
# allocator's fragmentation and for anything else on the GPU).
_AUTO_BATCH_MAX = 256
_AUTO_BATCH_MEMORY_FRACTION = 0.5
# On CPU/MPS: at most this many pairs per chunk, and about this many bytes of working memory per chunk. Larger CPU
# batches were slower, not faster: with the bundled model on 128x128 pairs (benchmarks/bench_cli.py, 2-core CPU)
# batch 4 scored 5.4 pairs/s against 4.6 at batch 16 on one thread, and 4.3-4.8 against 3.7-3.9 at 16-32 on two.
_AUTO_BATCH_MAX_CPU = 4
_AUTO_BATCH_BYTES_CPU = 1 << 30
# score()'s default pixel limit per image (see "Memory" above).
DEFAULT_MAX_PIXELS = 150_000_000
# How the default-model notice tells the user to choose a model: "model=" in Python; the CLI sets "--model".
_MODEL_OPTION = "model="


def resolve_device(device: str | torch.device | None, ref: torch.Tensor, model: VTAMIQ | None) -> torch.device:
    """The compute device: explicit, else the model's, else the input tensor's, else CUDA if available, else CPU.

    Raises:
        ValueError: an unknown device string, or a CUDA device that this machine does not have.
        TypeError: ``device`` is neither None, a str nor a ``torch.device``.
    """
    if device is not None:
        if not isinstance(device, (str, torch.device)):
            raise TypeError(f"device must be None, a str or a torch.device, got {type(device).__name__}")
        try:
            target = torch.device(device)
        except RuntimeError as error:
            raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N', 'mps'..., got {device!r} ({error})") from None
        if target.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"device={str(device)!r} was requested but no CUDA device is available "
                                 f"(torch.cuda.is_available() is False); use device='cpu' or leave it unset")
            if target.index is not None and target.index >= torch.cuda.device_count():
                raise ValueError(f"device={str(device)!r} was requested but this machine has "
                                 f"{torch.cuda.device_count()} CUDA device(s) (cuda:0 .. "
                                 f"cuda:{torch.cuda.device_count() - 1})")
        return target
    if model is not None:
        return next(model.parameters()).device
    if ref.device.type != "cpu":
        return ref.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_DEFAULT_NOTICE_SHOWN = False


def default_model_name() -> str:
    """The registered name used when no model is given; raises if this version bundles none.

    The first use in a process logs (at WARNING) what the default model is, so nobody mistakes the small bundled
    model for the paper's.
    """
    global _DEFAULT_NOTICE_SHOWN
    if hub.DEFAULT_MODEL is not None and not _DEFAULT_NOTICE_SHOWN:
        _DEFAULT_NOTICE_SHOWN = True
        _logger.warning("using the bundled default model %s: a small model trained on synthetic distortions, not the "
                        "paper's VTAMIQ and not calibrated to human scores; pass %s for paper-grade weights "
                        "(see vtamiq_metric/weights/MODEL_CARD.md)", hub.DEFAULT_MODEL, _MODEL_OPTION)
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


def compiled_forward(model: VTAMIQ) -> Callable[..., torch.Tensor]:
    """``model``'s forward wrapped with ``torch.compile``, built once per model instance and cached.

    The wrapper has the signature of :meth:`VTAMIQ.forward`. It holds the model weakly, so caching it never keeps a
    model alive. Compilation happens lazily on the first call (and again only when guards fail, e.g. for a new batch
    shape or after the model moved to another device).

    Args:
        model: the model to compile.

    Returns:
        A callable ``(ref_patches, dist_patches, pos, scale) -> (B,)`` scores.

    Raises:
        TypeError: ``model`` is not a :class:`VTAMIQ`.
        RuntimeError: ``torch.compile`` is unavailable on this platform (raised by torch on the first call).
    """
    if not isinstance(model, VTAMIQ):
        raise TypeError(f"expected a VTAMIQ model, got {type(model).__name__}")
    with _COMPILED_LOCK:
        runner = _COMPILED.get(model)
        if runner is None:
            model_ref = weakref.ref(model)

            def run(ref_patches: torch.Tensor, dist_patches: torch.Tensor, pos: torch.Tensor,
                    scale: torch.Tensor | None) -> torch.Tensor:
                return model_ref()(ref_patches, dist_patches, pos, scale)

            runner = torch.compile(run)
            _COMPILED[model] = runner
            _logger.debug("created the torch.compile wrapper of a %s model", type(model).__name__)
    return runner


def forward_pairs(model: VTAMIQ, ref: torch.Tensor, dist: torch.Tensor, *, num_patches: int, seed: int,
                  sampling: SamplingConfig, precision: str = "fp32", compile: bool = False) -> torch.Tensor:
    """One seeded CAPS draw and one model pass: the core shared by :func:`score` and :class:`VTAMIQLoss`.

    Models with ``config.downsample_side`` see both images averaged over ``F x F`` blocks first
    (:func:`vtamiq_metric.sampling.viewing_downsample`); gradients flow through that average.

    Args:
        model: the model (its device is used as is).
        ref: (B, 3, H, W) float reference images in [0, 1], on the model's device.
        dist: (B, 3, H, W) float distorted images, same size and device.
        num_patches: patches per image.
        seed: sampling seed.
        sampling: CAPS settings.
        precision: ``"fp32"``, ``"bf16"`` (autocast), or ``"auto"`` (see :mod:`vtamiq_metric._precision`: bf16 on
            CUDA and on CPUs with native bf16 units).
        compile: run the model through its cached ``torch.compile`` wrapper (:func:`compiled_forward`); sampling
            stays eager.

    Returns:
        (B,) float32 distortion scores; differentiable w.r.t. ``ref``/``dist`` when they require grad.
    """
    (ref, dist), _ = viewing_downsample(ref, dist, side=model.config.downsample_side)
    sample = sample_patches(ref, dist, num_patches, patch_size=model.config.patch_size, config=sampling, seed=seed)
    param = next(model.parameters())
    ref_p = model.normalize(sample.ref.to(param.dtype))  # (B, N, 3, P, P)
    dist_p = model.normalize(sample.dist.to(param.dtype))
    forward = compiled_forward(model) if compile else model
    with autocast(ref.device, precision):
        out = forward(ref_p, dist_p, sample.pos.to(param.dtype), sample.scale)
    return out.float()


def estimate_pair_bytes(config: VTAMIQConfig, num_patches: int, height: int, width: int, *,
                        half_precision: bool) -> int:
    """A generous estimate of the device memory one image pair needs inside :func:`score` (no autograd).

    The terms: per image of the pair, the widest live activations of a transformer block (the MLP hidden layer, the
    residual stream, the fused qkv and the attention output, ``T * (mlp_dim + 6 * D)`` values for ``T`` tokens)
    plus a materialised float32 ``(heads, T, T)`` attention matrix in case no fused SDPA kernel applies; the gathered,
    cast and normalised patches of both images (six float32 copies of ``N * 3 * P * P``); and the two images with the
    sampler's working set: 40 bytes per pixel (two float32 images and the difference strips; 8-bit images and the
    strips of :mod:`vtamiq_metric.sampling` need less).

    Args:
        config: the model's config.
        num_patches: patches per image N.
        height: image height H in pixels.
        width: image width W in pixels.
        half_precision: activations in bf16 (autocast) rather than float32.

    Returns:
        Bytes per pair.
    """
    act = 2 if half_precision else 4
    tokens = 1 + config.num_extra_tokens + num_patches
    block = tokens * (config.mlp_dim + 6 * config.embed_dim) * act
    attention = config.num_heads * tokens * tokens * 4  # softmax runs in float32 under autocast too
    patches = 6 * num_patches * 3 * config.patch_size**2 * 4
    sampler = height * width * (2 * 3 * 4 + 16)
    return 2 * (block + attention) + patches + sampler


def pair_flops(config: VTAMIQConfig, num_patches: int) -> int:
    """Forward FLOPs of one image pair (a multiply-add counts 2), from the config.

    For ``T = 1 + num_extra_tokens + N`` tokens per image, width D, depth L, MLP width M and patch side P::

        per image = 2 * N * 3P^2 * D                 patch embedding
                  + L * 2 * T * (4 D^2 + 2 D M)      qkv (3 D^2), attention projection (D^2), MLP (2 D M)
                  + L * 4 * T^2 * D                  attention scores Q K^T and the weighted sum A V
        per pair  = 2 * per image + 2 * (weights of the DiffNet and head linears)

    For ``paper2021`` at N = 1024 this is about 215 GFLOP per pair. Elementwise work (norms, activations, softmax) and
    the token distance are not counted; ``torch.utils.flop_counter`` agrees exactly on the materialised-attention path
    (tested).

    Args:
        config: the model's config.
        num_patches: patches per image N.

    Returns:
        FLOPs per pair.
    """
    dim, mlp, depth = config.embed_dim, config.mlp_dim, config.depth
    tokens = 1 + config.num_extra_tokens + num_patches
    embed = 2 * num_patches * 3 * config.patch_size**2 * dim
    matmuls = depth * 2 * tokens * (4 * dim * dim + 2 * dim * mlp)
    attention = depth * 4 * tokens * tokens * dim
    per_image = embed + matmuls + attention
    hidden = dim // config.ca_reduction
    diffnet = config.num_groups * (config.blocks_per_group * (dim * dim + 2 * dim * hidden) + dim * dim) + dim * dim
    head = dim * config.head_hidden + config.head_hidden
    return 2 * per_image + 2 * (diffnet + head)


def auto_batch_size(config: VTAMIQConfig, num_patches: int, height: int, width: int, num_pairs: int,
                    device: torch.device, *, half_precision: bool) -> int:
    """Pairs per model call (and per decoded batch) for ``batch_size=None``, from :func:`estimate_pair_bytes`.

    On CUDA the chunk is ``_AUTO_BATCH_MEMORY_FRACTION`` of the free memory (``torch.cuda.mem_get_info``) divided by
    :func:`estimate_pair_bytes`, clamped to ``[1, min(num_pairs, _AUTO_BATCH_MAX)]``. On CPU and MPS it is 1 GiB
    (``_AUTO_BATCH_BYTES_CPU``) divided by the same estimate, clamped to ``[1, min(num_pairs, 4)]``
    (``_AUTO_BATCH_MAX_CPU``; larger CPU batches measured slower): 4 pairs of small images, a single pair of
    6000x4000 photographs.

    Args:
        config: the model's config.
        num_patches: patches per image.
        height: image height in pixels.
        width: image width in pixels.
        num_pairs: number of pairs to score.
        device: the compute device.
        half_precision: whether the model runs under bf16 autocast.

    Returns:
        An int in ``[1, max(num_pairs, 1)]``.
    """
    per_pair = estimate_pair_bytes(config, num_patches, height, width, half_precision=half_precision)
    if device.type != "cuda":
        return max(1, min(num_pairs, _AUTO_BATCH_MAX_CPU, _AUTO_BATCH_BYTES_CPU // per_pair))
    free, _ = torch.cuda.mem_get_info(device)
    fits = int(free * _AUTO_BATCH_MEMORY_FRACTION) // per_pair
    chunk = max(1, min(num_pairs, _AUTO_BATCH_MAX, fits))
    _logger.debug("auto batch size %d: %.1f GiB free, about %.0f MiB per pair", chunk, free / 2**30,
                  per_pair / 2**20)
    return chunk


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
    compile: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
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
        precision: ``"auto"`` (bf16 autocast on CUDA and on CPUs with native bf16 units, AVX512-BF16 or AMX; fp32
            on other CPUs), ``"fp32"`` or ``"bf16"``.
        batch_size: pairs decoded and scored at once; a list of images is decoded lazily, one batch at a time, so
            peak memory is that of one batch. None: on CUDA, as many as fit in about half of the free GPU memory
            (at most 256); elsewhere as many as fit in about 1 GiB, at most 4 (see :func:`auto_batch_size`).
            Scores do not depend on it (beyond float rounding of batched kernels).
        sampling: CAPS settings (default: the model config's ``sampling``).
        return_std: also return the standard deviation over the repeats (0 when ``num_repeats == 1``).
        compile: run the model through ``torch.compile``, compiled once per model instance and cached (the first call
            compiles, which takes from seconds to minutes). Scores match eager mode up to float rounding.
        max_pixels: refuse (``ValueError``) any image of more pixels than this, before decoding it (default 150
            million, about 2.2 GiB of memory for a pair of 8-bit images); None lifts the limit. Files also obey
            Pillow's own limit, ``PIL.Image.MAX_IMAGE_PIXELS``.

    Returns:
        (B,) float32 tensor of distortion scores on the compute device, or ``(mean, std)`` when ``return_std``.

    Raises:
        ValueError: bad images (size mismatch, out-of-range values, NaN, wrong channels, more than ``max_pixels``
            pixels...), bad argument values, a CUDA device that is not there.
        TypeError: an image or argument of the wrong type.
        FileNotFoundError: a missing image file.

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
    if not isinstance(compile, bool):
        raise TypeError(f"compile must be a bool, got {type(compile).__name__}")
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
    half = uses_bf16(target, precision)
    options = {"num_patches": num_patches, "num_repeats": num_repeats, "seed": seed, "sampling": sampling,
               "precision": precision, "compile": compile}
    prepare = {"patch_size": config.patch_size, "max_pixels": max_pixels, "keep_uint8": True}
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1):
        raise ValueError(f"max_pixels must be an int >= 1 or None, got {max_pixels!r}")

    lazy = (isinstance(ref, (list, tuple)) and isinstance(dist, (list, tuple)) and len(ref) == len(dist) > 0
            and all(is_single_image(x) for x in ref) and all(is_single_image(x) for x in dist))
    means, stds = [], []
    if lazy:  # decode and validate one batch at a time: peak memory is one batch, whatever len(ref) is
        size = image_size(ref[0])
        if batch_size is not None:
            chunk = batch_size
        elif size is None:
            chunk = 1
        else:
            chunk = auto_batch_size(config, num_patches, size[0], size[1], len(ref), target, half_precision=half)
        first_size: tuple[int, int] | None = None
        for start in range(0, len(ref), chunk):
            ref_t, dist_t = prepare_pair(ref[start:start + chunk], dist[start:start + chunk], start=start, **prepare)
            batch_size_hw = (int(ref_t.shape[-2]), int(ref_t.shape[-1]))
            if first_size is None:
                first_size = batch_size_hw
            elif batch_size_hw != first_size:
                raise ValueError(
                    f"all images in ref must have the same size, got {batch_size_hw} at ref[{start}] and "
                    f"{first_size} at ref[0] (height, width)")
            mean, std = _score_prepared(net, ref_t.to(target), dist_t.to(target), **options)
            del ref_t, dist_t
            means.append(mean)
            stds.append(std)
    else:
        ref_t, dist_t = prepare_pair(ref, dist, **prepare)
        ref_t, dist_t = ref_t.to(target), dist_t.to(target)
        chunk = batch_size if batch_size is not None else auto_batch_size(
            config, num_patches, ref_t.shape[-2], ref_t.shape[-1], len(ref_t), target, half_precision=half)
        for start in range(0, len(ref_t), chunk):
            mean, std = _score_prepared(net, ref_t[start:start + chunk], dist_t[start:start + chunk], **options)
            means.append(mean)
            stds.append(std)
    mean = torch.cat(means)
    if return_std:
        return mean, torch.cat(stds)
    return mean


def _score_prepared(net: VTAMIQ, ref: torch.Tensor, dist: torch.Tensor, *, num_patches: int, num_repeats: int,
                    seed: int, sampling: SamplingConfig, precision: str,
                    compile: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over ``num_repeats`` seeded draws of one batch of validated ``(B, 3, H, W)`` pairs (float in
    [0, 1], or uint8) already on the model's device; no autograd. ``score()`` and ``vtamiq score`` call it."""
    with torch.no_grad():
        runs = [forward_pairs(net, ref, dist, num_patches=num_patches, seed=seed + repeat, sampling=sampling,
                              precision=precision, compile=compile) for repeat in range(num_repeats)]
    stacked = torch.stack(runs)  # (R, B)
    mean = stacked.mean(0)
    std = stacked.std(0, unbiased=False) if num_repeats > 1 else torch.zeros_like(mean)
    return mean, std
