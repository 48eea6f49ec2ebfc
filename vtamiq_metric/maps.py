"""``damage_map()``: where in the image VTAMIQ sees the difference, as a per-pixel map.

Method: **integrated gradients** (IG; Sundararajan et al. 2017, https://arxiv.org/abs/1703.01365) of the distortion
score along the straight path from the reference to the distorted image, computed per patch and spread back onto the
pixels. For one CAPS draw with seed ``s`` (the patch positions :func:`vtamiq_metric.score` uses for that seed, held
fixed along the path), patch ``i`` with reference pixels ``r_i`` and change ``d_i = dist_i - ref_i`` receives the
share::

    T_i = d_i . (1 / K) sum_k  d score_s / d dist_i  evaluated at  ref + a_k (dist - ref)

which is IG restricted to that patch's pixels (summed over its pixels and colour channels). ``T_i`` is then spread over
the full-resolution pixels the patch covers in proportion to their change ``|dist - ref|`` (summed over channels).
The signed map is the mean over draws of these splats, and the **damage map** is its positive part.

The path points: draw ``k`` of ``num_repeats`` (R) evaluates the gradient at ``a = (j * R + k + 0.5) / (R * steps)``
for ``j < steps``, so together the draws form an ``R * steps`` point midpoint rule (an interleaved, stratified
estimate of the path integral at the cost of ``R * steps`` model passes). The score grows smoothly along the
path, so ``steps=1`` with a few draws is already close (see the completeness check below).

Why this method:

* **Completeness.** Summed over the image, the signed map is IG's total, which approximates
  ``score(ref, dist) - score(ref, ref)`` averaged over the seeds ``seed .. seed + num_repeats - 1`` (exactly in the
  limit of many path points). The map therefore splits the score among the pixels, in score units per pixel. Models
  built with ``zero_identity`` score identical pairs exactly 0, so their map sums to the score itself.
* **Zero where nothing changed.** Every share carries the factor ``dist - ref`` and is spread only over changed
  pixels: the map is exactly 0 wherever ``dist == ref``, and everywhere for an identical pair, for any model.
* **The model's own unit and view.** VTAMIQ sees the images as patches drawn by CAPS; the share of a patch is what
  the final score (backbone, DiffNet, head, token distance alike) counts for the change inside that patch. The
  per-pixel IG values inside a patch mostly trace the patch embedding's filters and cancel each other, so they are
  summed per patch before taking the positive part (the positive part of raw per-pixel IG is several times larger
  than the score). Model-agnostic: it works for every code era, with or without ``token_distance``.
* **Cost.** ``num_repeats * steps`` forward and backward passes per pair, i.e. about three times that many :func:`score`
  calls; no extra model is needed (patch occlusion would need one model pass per occluded patch).

Models with a viewing distance (``config.downsample_side``) see a large image as ``F x F`` block averages
(:func:`vtamiq_metric.sampling.viewing_downsample`); the map is computed at that scale, and each block's share is
spread over its full-resolution pixels in proportion to their change, by the same rule (rows and columns beyond the
last whole block are never seen and stay 0).

Only pixels inside drawn patches can receive attribution; with the model's default number of patches a 256 x 256 image
is covered about four times per draw. A changed pixel that no patch of any draw covered stays 0 (use more
``num_repeats`` or ``num_patches`` on large images; :func:`vtamiq_metric.sampling.sampling_density` shows where patches
go).

Negative shares (patches whose change *lowered* the score, which learned models do for some changes) are dropped by
the positive part; ``signed=True`` returns the signed map, whose sum is the score difference above.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import check_bool, check_positive_int, renamed_keywords
from ._frontend import DEFAULT_MAX_PIXELS, ScoringOptions, eval_mode, resolve
from ._precision import Precision, autocast
from ._validation import ImageLike, prepare_pair
from .api import score
from .model.vtamiq import VTAMIQ
from .sampling import SamplingConfig, extract_patches, sample_patches, sampling_density, viewing_downsample

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["damage_map", "plot_damage_map"]


# Path points (steps x pairs) per model call: bounds the activations kept for the backward pass.
_MAX_POINTS_PER_CALL = 16


def _draw_map(model: VTAMIQ, ref: torch.Tensor, dist: torch.Tensor, alphas: torch.Tensor, *, num_patches: int,
              seed: int, sampling: SamplingConfig, precision: str) -> torch.Tensor:
    """Signed attribution of one CAPS draw at the path points ``alphas``, splatted onto the image: (B, H, W)."""
    full_ref, full_dist = ref, dist
    (ref, dist), factor = viewing_downsample(ref, dist, side=model.config.downsample_side)  # model's scale (h, w)
    sample = sample_patches(ref, dist, num_patches, patch_size=model.config.patch_size, config=sampling, seed=seed)
    param = next(model.parameters())
    steps = len(alphas)
    ref_p = sample.ref.to(param.dtype)  # (B, N, 3, P, P)
    delta_p = sample.dist.to(param.dtype) - ref_p  # (B, N, 3, P, P)
    path = (ref_p + alphas.to(param.dtype).view(steps, 1, 1, 1, 1, 1) * delta_p).flatten(0, 1)  # (S*B, N, 3, P, P)
    path.requires_grad_(True)
    ref_rep = ref_p.expand(steps, *ref_p.shape).flatten(0, 1)  # (S*B, N, 3, P, P)
    pos = sample.pos.to(param.dtype).repeat(steps, 1, 1)  # (S*B, N, 2)
    scale = None if sample.scale is None else sample.scale.repeat(steps, 1)  # (S*B, N)
    with autocast(ref.device, precision):
        out = model(model.normalize(ref_rep), model.normalize(path), pos, scale)  # (S*B,)
    (grad,) = torch.autograd.grad(out.sum(), path)  # (S*B, N, 3, P, P)
    grad = grad.view(steps, *delta_p.shape).to(ref.dtype).sum(0)  # (B, N, 3, P, P): sum over the path points
    share = (delta_p.to(ref.dtype) * grad).sum((2, 3, 4))  # (B, N): each patch's share of the score (times steps)

    # Spread each patch's share over the full-resolution pixels it covers, in proportion to their change |dist - ref|
    # (summed over channels): share_i * |d(p)| / sum_{q in patch i} |d(q)|. A level-s patch was cut from the image
    # average-pooled s times; the adjoint of that cut (autograd of extract_patches) divides by 4**s, and the pooled
    # patch's sum is 4**-s times the full-resolution footprint's, so the two factors cancel and every share is
    # distributed exactly.
    change = (dist - ref).abs().sum(1, keepdim=True)  # (B, 1, H, W)
    footprint = extract_patches(change, sample).sum((2, 3, 4))  # (B, N)
    per_change = torch.where(footprint > 0, share / footprint.clamp(min=torch.finfo(ref.dtype).tiny), 0.0)
    canvas = torch.zeros_like(change, requires_grad=True)  # (B, 1, H, W)
    cut = extract_patches(canvas, sample)  # (B, N, 1, P, P)
    (spread,) = torch.autograd.grad(cut, canvas, grad_outputs=per_change[..., None, None, None].expand_as(cut))
    heat = (change * spread)[:, 0]  # (B, h, w)
    if factor == 1:
        return heat
    # Viewing distance (config.downsample_side): each pixel of the model's view averaged an F x F block; its share is
    # spread over that block's full-resolution pixels in proportion to their change, the same rule as for patches.
    # A block whose pixels did not change has a pooled change of 0 too, so every share is distributed exactly.
    change = (full_dist - full_ref).abs().sum(1)  # (B, H, W)
    block = F.avg_pool2d(change[:, None], factor)[:, 0] * factor**2  # (B, h, w): avg_pool2d drops partial blocks
    per_change = torch.where(block > 0, heat / block.clamp(min=torch.finfo(heat.dtype).tiny), 0.0)
    return change * _to_full_resolution(per_change, factor, change.shape[-2], change.shape[-1])


def _to_full_resolution(values: torch.Tensor, factor: int, height: int, width: int) -> torch.Tensor:
    """(B, h, w) values of ``F x F`` blocks -> (B, H, W): every pixel of a block gets its value; the rows and columns
    that :func:`viewing_downsample` dropped get 0."""
    if factor == 1:
        return values
    out = values.new_zeros(values.shape[0], height, width)
    rows, cols = values.shape[-2] * factor, values.shape[-1] * factor
    out[:, :rows, :cols] = values.repeat_interleave(factor, -2).repeat_interleave(factor, -1)
    return out


@renamed_keywords(draws="num_repeats")
def damage_map(
    ref: ImageLike | Sequence[ImageLike],
    dist: ImageLike | Sequence[ImageLike],
    *,
    model: str | VTAMIQ | None = None,
    num_patches: int | None = None,
    num_repeats: int = 4,
    steps: int = 1,
    seed: int = 0,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    sampling: SamplingConfig | None = None,
    signed: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """Per-pixel map of where VTAMIQ sees the distortion (integrated gradients, see the module docstring).

    Scores are distortions (0 = identical, higher = worse). The map splits each pair's score among its pixels: larger
    values mark pixels whose change the model counts as more damage. It is exactly 0 wherever ``dist == ref`` (so all
    zero for an identical pair), and with ``signed=True`` its sum approximates
    ``score(ref, dist, num_repeats=num_repeats, seed=seed) - score(ref, ref, num_repeats=num_repeats, seed=seed)``.

    Cost: ``num_repeats * steps`` forward and backward passes per pair, about ``3 * num_repeats * steps`` times the
    cost of ``score(ref, dist)`` (the README gives measured times); ``num_repeats=2`` halves it.

    Args:
        ref: reference image(s): anything :func:`vtamiq_metric.score` accepts (paths, PIL, numpy HWC, tensors
            (3, H, W) or (B, 3, H, W) in [0, 1], lists).
        dist: distorted image(s), same count and size as ``ref``.
        model: a registered name, ``hf-hub:org/repo[@rev]``, a local path or a :class:`VTAMIQ` instance (run in eval
            mode, its previous mode restored afterwards; its parameters receive no gradient). None uses the bundled
            default.
        num_patches: patches per image and draw (default: the model config's ``num_patches``, as in ``score``).
        num_repeats: seeded CAPS draws to average, >= 1; draw ``k`` uses seed ``seed + k``, the seeds of
            ``score(..., num_repeats=num_repeats)``. Its former name ``draws`` still works, with a
            ``DeprecationWarning``.
        steps: path points per draw, >= 1; all draws together evaluate a ``num_repeats * steps`` point midpoint
            rule.
        seed: first sampling seed; the global RNG state is never read or changed.
        device: where to compute (default as in ``score``: the model's device for an instance, else the input
            tensors' device, else CUDA when available, else CPU).
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` autocast, or ``"auto"`` (see
            :mod:`vtamiq_metric._precision`). fp32 by default, unlike ``score()``: the map is a sum of gradients that
            should add up to the score difference, and 16-bit gradients break that bookkeeping.
        sampling: CAPS settings (default: the model config's ``sampling``).
        signed: return the signed map (negative where a patch's change lowered the score) instead of its positive
            part.
        max_pixels: refuse (``ValueError``) any image of more pixels than this, before decoding it (default 150
            million, as in :func:`vtamiq_metric.score`; the map needs several times the memory of a score); None
            lifts the limit.

    Returns:
        (B, H, W) float32 tensor on the compute device, in score units per pixel; >= 0 unless ``signed``.

    Raises:
        TypeError: bad argument types (the same messages as :func:`score`), or images :func:`score` rejects by type.
        ValueError: bad images (size mismatch, range, channels, more than ``max_pixels`` pixels...),
            ``num_repeats``, ``steps`` or ``num_patches`` below 1, an unknown ``precision``, or a model on another
            device than ``device``.
        FileNotFoundError: a missing image file.

    Example:
        >>> import torch, vtamiq_metric
        >>> from vtamiq_metric import VTAMIQ
        >>> ref = torch.rand(1, 3, 64, 64)
        >>> dist = ref.clone()
        >>> dist[:, :, :32, :32] = 0.5
        >>> heat = vtamiq_metric.damage_map(ref, dist, model=VTAMIQ("tiny"), num_patches=16)
        >>> heat.shape, bool(heat[:, 32:, :].eq(0).all()), bool(heat.ge(0).all())
        (torch.Size([1, 64, 64]), True, True)
    """
    options = ScoringOptions(num_patches=num_patches, num_repeats=num_repeats, seed=seed, precision=precision,
                             sampling=sampling, max_pixels=max_pixels)
    steps = check_positive_int("steps", steps)
    check_bool("signed", signed)
    scorer = resolve(model, options, device=device, like=ref)
    net, target, repeats = scorer.model, scorer.device, scorer.options.num_repeats
    config = net.config
    ref_t, dist_t = prepare_pair(ref, dist, patch_size=config.patch_size, max_pixels=max_pixels)
    # float64 only for float64 models (exactness tests); float32 otherwise, also under bf16 autocast.
    work = torch.float64 if next(net.parameters()).dtype == torch.float64 else torch.float32
    ref_t = ref_t.detach().to(target, work)
    dist_t = dist_t.detach().to(target, work)

    # Interleaved midpoint rule: draw k takes the path points (j * R + k + 0.5) / (R * steps) for R = repeats, so the
    # draws together evaluate an R * steps point grid for the price of R * steps model passes.
    grid = (torch.arange(repeats * steps, dtype=torch.float64) + 0.5) / (repeats * steps)
    total = torch.zeros(ref_t.shape[0], *ref_t.shape[2:], device=target, dtype=work)  # (B, H, W)
    with eval_mode(net), torch.enable_grad():
        for draw in range(repeats):
            for alphas in grid[draw::repeats].to(target, work).split(_MAX_POINTS_PER_CALL):  # (<= 16,) path points
                chunk = max(1, _MAX_POINTS_PER_CALL // len(alphas))
                for i in range(0, len(ref_t), chunk):
                    total[i:i + chunk] += _draw_map(net, ref_t[i:i + chunk], dist_t[i:i + chunk], alphas,
                                                    num_patches=scorer.num_patches, seed=seed + draw,
                                                    sampling=scorer.sampling, precision=precision)
    total /= repeats * steps
    total = total.float()
    return total if signed else total.clamp(min=0.0)


def _gray(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] -> (H, W) luma (Rec. 601 weights)."""
    return image @ np.array([0.299, 0.587, 0.114])


def _overlay(ax: Any, background: np.ndarray, values: np.ndarray, *, cmap: str, vmax: float, matplotlib: Any,
             label: str) -> None:
    """Draw ``values`` (H, W) >= 0 over a dimmed grayscale ``background``, opaque where high, clear where 0."""
    from matplotlib.colors import Normalize

    norm = Normalize(vmin=0.0, vmax=vmax, clip=True)
    colors = matplotlib.colormaps[cmap](norm(values))  # (H, W, 4)
    # Opacity ramps from 0 at 2% of the scale to 0.9 at a third of it: the faint tail stays out of the way and the
    # image shows through wherever there is little damage.
    colors[..., 3] = 0.9 * np.clip((norm(values) - 0.02) / 0.3, 0.0, 1.0)
    ax.imshow(0.25 + 0.5 * _gray(background), cmap="gray", vmin=0.0, vmax=1.0, interpolation="antialiased")
    ax.imshow(colors, interpolation="antialiased")
    mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    extend = "max" if float(values.max()) > vmax else "neither"
    bar = ax.figure.colorbar(mappable, ax=ax, shrink=0.85, extend=extend, pad=0.02)
    bar.set_label(label)


@renamed_keywords(draws="num_repeats")
def plot_damage_map(
    ref: ImageLike,
    dist: ImageLike,
    *,
    model: str | VTAMIQ | None = None,
    num_patches: int | None = None,
    num_repeats: int = 4,
    steps: int = 1,
    seed: int = 0,
    device: str | torch.device | None = None,
    show_sampling: bool = False,
    title: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Figure:
    """A figure to read at a glance: reference, distorted image, and the damage map over the distorted image.

    The damage map (:func:`damage_map`) is drawn semi-transparently over a dimmed grayscale copy of the distorted
    image, with a colour bar in score units per pixel (clipped at the 99th percentile of the damaged pixels so a
    few hot pixels do not wash the rest out; the bar's arrow marks the clipping). The title gives the score
    ``score(ref, dist, num_repeats=num_repeats, seed=seed)`` (0 = identical, higher = worse). With ``show_sampling`` a
    fourth panel shows where CAPS puts the patches: :func:`vtamiq_metric.sampling.sampling_density`, the expected
    number of patches covering each pixel in one draw.

    Args:
        ref: one reference image (anything :func:`vtamiq_metric.score` accepts, as a single pair).
        dist: the distorted image, same size.
        model: as in :func:`damage_map`.
        num_patches: as in :func:`damage_map`.
        num_repeats: as in :func:`damage_map` (``draws``, its former name, still works with a ``DeprecationWarning``).
        steps: as in :func:`damage_map`.
        seed: as in :func:`damage_map`.
        device: as in :func:`damage_map`.
        show_sampling: add the CAPS sampling-density panel.
        title: first title line (default: the score).
        max_pixels: as in :func:`damage_map`.

    Returns:
        A :class:`matplotlib.figure.Figure` (not attached to pyplot); save it with ``fig.savefig("map.png")``.

    Raises:
        ImportError: matplotlib is not installed (``pip install 'vtamiq-metric[plot]'``).
        ValueError: more than one pair, or what :func:`damage_map` raises.
    """
    from ._plotting import new_figure, require_matplotlib

    matplotlib = require_matplotlib()
    options = ScoringOptions(num_patches=num_patches, num_repeats=num_repeats, seed=seed, precision="fp32",
                             max_pixels=max_pixels)
    check_positive_int("steps", steps)
    scorer = resolve(model, options, device=device, like=ref)
    net = scorer.model
    ref_t, dist_t = prepare_pair(ref, dist, patch_size=net.config.patch_size, max_pixels=max_pixels)
    if ref_t.shape[0] != 1:
        raise ValueError(f"expected one image pair to plot, got a batch of {ref_t.shape[0]}")
    common: dict[str, Any] = {"model": net, "num_patches": scorer.num_patches, "num_repeats": num_repeats,
                              "seed": seed}
    heat = damage_map(ref_t, dist_t, steps=steps, **common)[0]
    value = float(score(ref_t, dist_t, precision="fp32", **common)[0])
    heat_np = heat.cpu().double().numpy()
    ref_np = ref_t[0].detach().permute(1, 2, 0).cpu().double().numpy()
    dist_np = dist_t[0].detach().permute(1, 2, 0).cpu().double().numpy()

    height, width = heat_np.shape
    panels = 4 if show_sampling else 3
    panel_width = 4.0
    fig = new_figure(panels * panel_width + 0.6 * (panels - 1), panel_width * height / width + 0.9)
    axes = fig.subplots(1, panels)
    for ax in axes:
        ax.set_axis_off()
    axes[0].imshow(ref_np, interpolation="antialiased")
    axes[0].set_title("reference")
    axes[1].imshow(dist_np, interpolation="antialiased")
    axes[1].set_title("distorted")
    damaged = heat_np[heat_np > 0]
    if damaged.size:
        vmax = float(np.quantile(damaged, 0.99))
        _overlay(axes[2], dist_np, heat_np, cmap="inferno", vmax=vmax, matplotlib=matplotlib,
                 label="damage (score per pixel)")
        axes[2].set_title("where VTAMIQ sees damage")
    else:
        axes[2].imshow(0.25 + 0.5 * _gray(dist_np), cmap="gray", vmin=0.0, vmax=1.0)
        axes[2].set_title("no damage: the images are identical" if not bool((ref_t != dist_t).any())
                          else "no positive damage")
    if show_sampling:
        config = net.config
        (small_ref, small_dist), factor = viewing_downsample(ref_t.to(heat.device), dist_t.to(heat.device),
                                                            side=config.downsample_side)
        density = sampling_density(small_ref, small_dist, scorer.num_patches, patch_size=config.patch_size,
                                   config=scorer.sampling)
        density_np = _to_full_resolution(density, factor, height, width)[0].cpu().double().numpy()
        _overlay(axes[3], ref_np, density_np, cmap="viridis", vmax=float(density_np.max()), matplotlib=matplotlib,
                 label="patches covering the pixel, per draw")
        axes[3].set_title("where CAPS samples patches")
    name = _model_label(model, net)
    first = title if title is not None else f"VTAMIQ distortion score {value:.4f}  (0 = identical, higher = worse)"
    fig.suptitle(f"{first}\n{name}; integrated gradients over {num_repeats} CAPS draw(s) x {steps} step(s)",
                 fontsize="medium")
    return fig


def _model_label(model: str | VTAMIQ | None, net: VTAMIQ) -> str:
    """A short name for the figure: the registered name or path given, else the architecture."""
    if model is None:
        from . import hub

        return str(hub.DEFAULT_MODEL)
    if not isinstance(model, VTAMIQ):
        text = str(model)
        return Path(text).name if os.sep in text and not text.startswith("hf-hub:") else text
    return f"VTAMIQ model (embed_dim {net.config.embed_dim}, depth {net.config.depth})"
