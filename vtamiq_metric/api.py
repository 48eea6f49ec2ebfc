"""``score()``: VTAMIQ distortion scores for image pairs, and the core it shares with :class:`VTAMIQLoss`.

The pipeline is: validate and batch the inputs (:mod:`._validation`), draw aligned patches with CAPS
(:func:`.sampling.sample_patches`), normalise them with the model's mean/std, run the model. ``score`` averages
``num_repeats`` seeded draws. Scores are distortions: 0 means identical and higher means worse.

The options are checked and the model and device resolved by :mod:`vtamiq_metric._frontend`, as for every other face;
:func:`score_batch` is the core that ``score()`` and ``vtamiq score`` share, :func:`forward_pairs` the one draw that
the loss and the damage map share too.

Performance:
    Attention runs through ``scaled_dot_product_attention`` (timm's fused attention). On CUDA ``score()`` uses bf16
    autocast by default (``precision="auto"``; fp16 on GPUs older than compute capability 8.0), and ``batch_size=None``
    picks the largest chunk of pairs that fits in about half of the free GPU memory (see :func:`auto_batch_size`).
    ``compile=True`` wraps the model with ``torch.compile`` once per model instance (the first call pays the
    compilation; a new batch shape may compile once more).

    On CPU, torch uses one thread per core by default. Nothing here changes global thread settings; when several
    processes score at once, give each a share of the *physical* cores with ``torch.set_num_threads(n)`` (or
    ``OMP_NUM_THREADS=n`` before starting Python), since oversubscribed threads are much slower than fewer busy
    ones. ``precision="auto"`` also uses bf16 on CPUs with native bf16 units (AVX512-BF16, AMX), where it is faster
    than fp32; other CPUs stay fp32 (:mod:`vtamiq_metric._precision`). Measured speeds are in the README's
    "Benchmarks" section (``benchmarks/bench_score.py``).

Memory:
    A list of images is decoded and validated lazily, one batch of ``batch_size`` pairs at a time, so peak memory is
    that of one batch whatever the length of the list. 8-bit images stay 8-bit until patches are cut (3 bytes per
    pixel), and the CAPS difference map of large images is computed in strips; the README's "Memory" table gives the
    measured peak per pixel (``benchmarks/bench_memory.py``). ``max_pixels`` (:data:`DEFAULT_MAX_PIXELS`, 150 million
    by default) refuses larger images before decoding them, like Pillow's decompression-bomb check; pass
    ``max_pixels=None`` to lift it.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypedDict, overload

import torch

from ._checks import check_bool
from ._frontend import (
    DEFAULT_MAX_PIXELS,
    Scorer,
    ScoringOptions,
    default_model_name,
    resolve,
    resolve_device,
    resolve_model,
)
from ._precision import Precision, autocast, autocast_dtype
from ._validation import ImageLike, image_size, is_single_image, prepare_pair, to_batch
from .model.config import VTAMIQConfig
from .model.vtamiq import VTAMIQ
from .sampling import SamplingConfig, sample_patches, viewing_downsample, viewing_factor
from .sampling.memory import sampler_bytes

if TYPE_CHECKING:  # annotations only (typing.Unpack is Python >= 3.11; typing_extensions comes with torch)
    from typing_extensions import Unpack

__all__ = ["DEFAULT_MAX_PIXELS", "Scorer", "ScoringOptions", "auto_batch_size", "batch_size_for", "compiled_forward",
           "default_model_name", "estimate_pair_bytes", "forward_pairs", "pair_flops", "resolve", "resolve_device",
           "resolve_model", "score", "score_batch"]

_logger = logging.getLogger(__name__)

# One torch.compile'd forward per model instance. The compiled function reaches its model through a weak reference,
# so the cache entry (and the compiled code) goes away with the model instead of keeping it alive.
_COMPILED: weakref.WeakKeyDictionary[VTAMIQ, Callable[..., torch.Tensor]] = weakref.WeakKeyDictionary()
_COMPILED_LOCK = threading.Lock()
# Largest automatic chunk on CUDA, and the share of the free memory it may plan for (the rest is headroom for the
# allocator's fragmentation and for anything else on the GPU).
_AUTO_BATCH_MAX = 256
_AUTO_BATCH_MEMORY_FRACTION = 0.5
# On CPU/MPS: at most this many pairs per chunk, and about this many bytes of working memory per chunk. Larger CPU
# batches measured slower, not faster (benchmarks/bench_cli.py prints the comparison).
_AUTO_BATCH_MAX_CPU = 4
_AUTO_BATCH_BYTES_CPU = 1 << 30


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
                # The runner is a value of the WeakKeyDictionary keyed by the model: it never outlives it.
                return model_ref()(ref_patches, dist_patches, pos, scale)  # type: ignore[misc]

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
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast), or ``"auto"`` (see
            :mod:`vtamiq_metric._precision`: bf16 on GPUs and CPUs with native bf16, fp16 on older GPUs).
        compile: run the model through its cached ``torch.compile`` wrapper (:func:`compiled_forward`); sampling
            stays eager.

    Returns:
        (B,) float32 distortion scores; differentiable w.r.t. ``ref``/``dist`` when they require grad.

    Raises:
        RuntimeError: under fp16 autocast, a score that is not finite: an activation overflowed float16's range
            (at most 65504; the inputs were checked finite, so nothing else makes one). Use ``"bf16"`` or ``"fp32"``.
    """
    (ref, dist), _ = viewing_downsample(ref, dist, side=model.config.downsample_side)
    sample = sample_patches(ref, dist, num_patches, patch_size=model.config.patch_size, config=sampling, seed=seed)
    param = next(model.parameters())
    ref_p = model.normalize(sample.ref.to(param.dtype))  # (B, N, 3, P, P)
    dist_p = model.normalize(sample.dist.to(param.dtype))
    forward = compiled_forward(model) if compile else model
    with autocast(ref.device, precision):
        out = forward(ref_p, dist_p, sample.pos.to(param.dtype), sample.scale)
    if autocast_dtype(ref.device, precision) == torch.float16 and not bool(torch.isfinite(out).all()):
        raise RuntimeError(
            f"precision={precision!r} ran the model in float16 and an activation overflowed its range (a score is "
            f"{float(out[~torch.isfinite(out)][0])}); use precision='bf16' (same speed on GPUs with bf16) or 'fp32'")
    return out.float()


def estimate_pair_bytes(config: VTAMIQConfig, num_patches: int, height: int, width: int, *,
                        half_precision: bool, sampling: SamplingConfig | None = None) -> int:
    """A generous estimate of the peak memory one image pair needs inside :func:`score` (no autograd).

    The terms, in the order :func:`forward_pairs` holds them:

    - the pair's images, as two float32 images (24 bytes per pixel; 8-bit images take a quarter of that), and with
      ``config.downsample_side`` their ``F x F`` block averages (:func:`vtamiq_metric.sampling.viewing_downsample`);
    - then the larger of two phases that never overlap: the CAPS draw on the images the model sees
      (:func:`vtamiq_metric.sampling.memory.sampler_bytes`: its difference strips, cells, pyramid and patches; linear
      in the pixels whatever the image's shape) and the model pass: per image, the widest live activations of a
      transformer block (the MLP hidden layer, the residual stream, the fused qkv and the attention output,
      ``T * (mlp_dim + 6 * D)`` values for ``T`` tokens) plus a materialised float32 ``(heads, T, T)`` attention
      matrix in case no fused SDPA kernel applies, the gathered, cast and normalised patches of both images (six
      float32 copies of ``N * 3 * P * P``) and, with ``config.token_distance``, the tokens of every layer of both
      images that :class:`~vtamiq_metric.model.distance.TokenDistance` compares (and its float32 working copies),
      and with ``config.patch_fidelity`` the float32 copies of the patches that
      :class:`~vtamiq_metric.model.fidelity.PatchFidelity` compares.

    Args:
        config: the model's config.
        num_patches: patches per image N.
        height: image height H in pixels.
        width: image width W in pixels.
        half_precision: activations in bf16 or fp16 (autocast) rather than float32.
        sampling: the CAPS settings of the call; ``config.sampling`` if None.

    Returns:
        Bytes per pair.
    """
    act = 2 if half_precision else 4
    tokens = 1 + config.num_extra_tokens + num_patches
    block = tokens * (config.mlp_dim + 6 * config.embed_dim) * act
    attention = config.num_heads * tokens * tokens * 4  # softmax runs in float32 under autocast too
    patches = 6 * num_patches * 3 * config.patch_size**2 * 4
    model = 2 * (block + attention) + patches
    if config.token_distance:
        model += (config.depth + 1) * 2 * tokens * config.embed_dim * act + 6 * num_patches * config.embed_dim * 4
    if config.patch_fidelity:  # float32 RGB and opponent copies of both patch sets, and the products it pools
        model += 8 * num_patches * 3 * config.patch_size**2 * 4
    images = 2 * 3 * 4 * height * width
    factor = 1 if config.downsample_side is None else viewing_factor(height, width, config.downsample_side)
    seen_height, seen_width = height // factor, width // factor
    viewed = 2 * 3 * 4 * seen_height * seen_width if factor > 1 else 0
    draw = 0  # an image smaller than a patch is refused before anything is drawn
    if min(seen_height, seen_width) >= config.patch_size:
        draw = sampler_bytes(seen_height, seen_width, num_patches, patch_size=config.patch_size,
                             config=config.sampling if sampling is None else sampling)
    return images + viewed + max(draw, model)


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
    (``_AUTO_BATCH_BYTES_CPU``) divided by the same estimate, clamped to ``[1, min(num_pairs, _AUTO_BATCH_MAX_CPU)]``
    (4; larger CPU batches were slower, see ``benchmarks/bench_cli.py``): 4 pairs of small images, a single pair of
    6000x4000 photographs.

    Args:
        config: the model's config.
        num_patches: patches per image.
        height: image height in pixels.
        width: image width in pixels.
        num_pairs: number of pairs to score.
        device: the compute device.
        half_precision: whether the model runs under a 16-bit autocast (bf16 or fp16).

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


class _ScoreOptions(TypedDict, total=False):
    """``score``'s keywords other than ``return_std``, for its overloads (documented on ``score``)."""

    model: str | VTAMIQ | None
    num_patches: int | None
    num_repeats: int
    seed: int
    device: str | torch.device | None
    precision: Precision
    batch_size: int | None
    sampling: SamplingConfig | None
    compile: bool
    max_pixels: int | None


# The return type follows ``return_std`` (the implementation's docstring and defaults are below).
@overload
def score(ref: ImageLike | Sequence[ImageLike], dist: ImageLike | Sequence[ImageLike], *,
          return_std: Literal[False] = False, **options: Unpack[_ScoreOptions]) -> torch.Tensor: ...


@overload
def score(ref: ImageLike | Sequence[ImageLike], dist: ImageLike | Sequence[ImageLike], *,
          return_std: Literal[True], **options: Unpack[_ScoreOptions]) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def score(ref: ImageLike | Sequence[ImageLike], dist: ImageLike | Sequence[ImageLike], *,
          return_std: bool, **options: Unpack[_ScoreOptions]) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


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
            (CHW or BCHW; float in [0, 1], or uint8 0-255, divided by 255), or a list of these. Grayscale is
            replicated to RGB and alpha is dropped. One reference image (alone or in a list of one) is compared with
            every ``dist`` image (broadcast, as lpips does; decoded once).
        dist: distorted image(s): as many as ``ref`` (or any number against one reference), each the size of its
            reference (nothing is resized). A list of pairs may mix image sizes: the pairs are grouped by size (read
            from file headers, nothing decoded twice), each group is scored in batches, and the scores come back in
            the input order.
        model: a registered name, ``hf-hub:org/repo[@rev]``, a local path, or a :class:`VTAMIQ` instance; None uses
            the bundled default. Loaded models are cached per (model, device).
        num_patches: patches per image (default: the model config's ``num_patches``).
        num_repeats: independent seeded CAPS draws to average (seeds ``seed .. seed + num_repeats - 1``).
        seed: sampling seed; the global RNG state is never read or changed.
        device: where to compute (default: the model's device for an instance, else the input tensors' device, else
            CUDA when available, else CPU).
        precision: ``"auto"`` (the default for evaluation: bf16 autocast on GPUs of compute capability 8.0 or more
            and on CPUs with AVX512-BF16 or AMX, fp16 on older GPUs, fp32 on other CPUs and MPS), ``"fp32"`` (exact),
            ``"bf16"`` or ``"fp16"`` (see :mod:`vtamiq_metric._precision`).
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
            pixels...), bad argument values (checked by :class:`vtamiq_metric._frontend.ScoringOptions`, in the words
            every face uses: a bool is not a count), a CUDA device that is not there.
        TypeError: an image or argument of the wrong type.
        FileNotFoundError: a missing image file.

    Example:
        >>> import torch, vtamiq_metric
        >>> from vtamiq_metric import VTAMIQ
        >>> ref = torch.rand(1, 3, 64, 64)
        >>> vtamiq_metric.score(ref, ref.clone(), model=VTAMIQ("tiny").eval(), num_patches=16).shape
        torch.Size([1])
    """
    options = ScoringOptions(num_patches=num_patches, num_repeats=num_repeats, seed=seed, precision=precision,
                             batch_size=batch_size, sampling=sampling, compile=compile, max_pixels=max_pixels)
    check_bool("return_std", return_std)
    scorer = resolve(model, options, device=device, like=ref)
    prepare: dict[str, Any] = {"patch_size": scorer.model.config.patch_size, "max_pixels": max_pixels,
                               "keep_uint8": True}

    pairs = _lazy_pairs(ref, dist)
    if pairs is not None:  # decode and validate one batch at a time: peak memory is one batch, whatever the length
        refs, dists = pairs
        mean, std = _score_lazily(scorer, refs, dists, prepare)
    else:
        ref_t, dist_t = prepare_pair(ref, dist, **prepare)
        ref_t, dist_t = ref_t.to(scorer.device), dist_t.to(scorer.device)
        chunk = batch_size_for(scorer, ref_t.shape[-2], ref_t.shape[-1], len(dist_t))
        parts = [score_batch(scorer, ref_t[start:start + chunk], dist_t[start:start + chunk])
                 for start in range(0, len(dist_t), chunk)]
        mean, std = torch.cat([part[0] for part in parts]), torch.cat([part[1] for part in parts])
    if return_std:
        return mean, std
    return mean


def _lazy_pairs(ref: object, dist: object) -> tuple[list[ImageLike], list[ImageLike]] | None:
    """``(refs, dists)``, two lists of single images of one length, when ``score()`` can decode the input lazily:
    two lists of single images (one per pair), or one reference image (alone or in a list of one) against a list of
    distorted images (the reference repeated). None for anything else (batched arrays or tensors: decoded at once)."""
    if not isinstance(dist, (list, tuple)) or not dist or not all(is_single_image(x) for x in dist):
        return None
    if isinstance(ref, (list, tuple)):
        if len(ref) == len(dist) and all(is_single_image(x) for x in ref):
            return list(ref), list(dist)
        ref = ref[0] if len(ref) == 1 else None
    if ref is not None and is_single_image(ref) and len(dist) > 1:
        return [ref] * len(dist), list(dist)
    return None


def _score_lazily(scorer: Scorer, refs: list[ImageLike], dists: list[ImageLike],
                  prepare: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Score pairs ``refs[i], dists[i]`` of single images: grouped by image size (read from file headers, nothing
    decoded), each group decoded and scored ``batch_size`` pairs at a time, the scores put back in input order.

    A reference shared by every pair (the same object) is decoded once. Returns the (N,) means and stds.
    """
    count = len(dists)
    shared = all(item is refs[0] for item in refs)
    if shared:
        refs = [to_batch(refs[0], name="ref", max_pixels=prepare["max_pixels"], keep_uint8=True)] * count
    groups: dict[tuple[int, int] | tuple[str, int], list[int]] = {}
    for i in range(count):
        ref_size, dist_size = image_size(refs[i]), image_size(dists[i])
        if ref_size is not None and dist_size is not None and ref_size != dist_size:
            raise ValueError(f"ref[{0 if shared else i}] and dist[{i}] must have the same size, got ref {ref_size} "
                             f"and dist {dist_size} (height, width); images are never resized here, so crop or "
                             f"resize one of them first")
        # Unknown sizes (an unreadable file) form groups of their own: decoding them reports the problem.
        key = dist_size if dist_size is not None else ("unknown", i)
        groups.setdefault(key, []).append(i)
    if len(groups) > 1:
        _logger.debug("score(): %d pairs in %d groups of one image size", count, len(groups))
    mean = torch.empty(count, device=scorer.device)
    std = torch.empty(count, device=scorer.device)
    for key, members in groups.items():
        height, width = key
        if isinstance(height, int):
            chunk = batch_size_for(scorer, height, width, len(members))
        else:
            chunk = scorer.options.batch_size or 1
        for start in range(0, len(members), chunk):
            index = members[start:start + chunk]
            ref_side = refs[index[0]] if shared else [refs[i] for i in index]
            ref_t, dist_t = prepare_pair(ref_side, [dists[i] for i in index], indices=index, **prepare)
            ref_t, dist_t = ref_t.to(scorer.device), dist_t.to(scorer.device)  # a shared reference is broadcast
            batch_mean, batch_std = score_batch(scorer, ref_t, dist_t)
            where = torch.tensor(index, device=scorer.device)
            mean[where], std[where] = batch_mean, batch_std
            del ref_t, dist_t
    return mean, std


def batch_size_for(scorer: Scorer, height: int, width: int, num_pairs: int) -> int:
    """Pairs per model call for ``scorer``: its ``batch_size`` option, else :func:`auto_batch_size` for images of
    ``height x width`` pixels on its device.

    Args:
        scorer: the resolved front-end (:func:`vtamiq_metric._frontend.resolve`).
        height: image height in pixels.
        width: image width in pixels.
        num_pairs: number of pairs to score.

    Returns:
        An int >= 1.
    """
    if scorer.options.batch_size is not None:
        return scorer.options.batch_size
    return auto_batch_size(scorer.model.config, scorer.num_patches, height, width, num_pairs, scorer.device,
                           half_precision=scorer.half_precision)


def score_batch(scorer: Scorer, ref: torch.Tensor, dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The scoring core behind :func:`score` and ``vtamiq score``: one batch of checked pairs, ``num_repeats`` draws.

    CAPS draws depend only on each pair and the seed, never on the batch, so a pair scores the same alone or in any
    batch (up to float rounding of batched kernels). No autograd.

    Args:
        scorer: the resolved front-end (model, device, complete options), from
            :func:`vtamiq_metric._frontend.resolve`.
        ref: (B, 3, H, W) reference images on ``scorer.device``: float in [0, 1], or uint8 (as
            :func:`vtamiq_metric._validation.prepare_pair` returns them with ``keep_uint8=True``).
        dist: (B, 3, H, W) distorted images, same size, dtype and device.

    Returns:
        ``(mean, std)``: two (B,) float32 tensors, the distortion score (0 = identical, higher = worse) averaged over
        the seeds ``seed .. seed + num_repeats - 1`` and its standard deviation over them (0 for one repeat).
    """
    options = scorer.options
    with torch.no_grad():
        runs = [forward_pairs(scorer.model, ref, dist, num_patches=scorer.num_patches, seed=options.seed + repeat,
                              sampling=scorer.sampling, precision=options.precision, compile=options.compile)
                for repeat in range(options.num_repeats)]
    stacked = torch.stack(runs)  # (R, B)
    mean = stacked.mean(0)
    std = stacked.std(0, unbiased=False) if options.num_repeats > 1 else torch.zeros_like(mean)
    return mean, std
