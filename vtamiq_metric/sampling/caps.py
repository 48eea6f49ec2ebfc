"""CAPS draws: how many patches each cell receives, where they go inside it, and the patches themselves.

The probabilities of the cells come from :mod:`vtamiq_metric.sampling.probability`, the levels and cells from
:mod:`vtamiq_metric.sampling.pyramid`. Per level:

**Allocation.** A cell's expected count ``e = n * mass`` is quantised to multiples of ``2**-32`` (int64, exact total),
and the counts are drawn by systematic sampling over the cells in a random order with one random offset: every cell
receives ``floor(e)`` or ``ceil(e)`` patches (the largest-remainder quota property), the expectation is exactly ``e``
(up to the ``2**-32`` quantisation), and the total is exactly ``n``. A deterministic largest-remainder rule is not used
because it would place the leftover patches in the same cells on every draw whenever there are more cells than
patches.

**Placement inside a cell.** A cell of ``R x C`` candidates holding ``k`` patches is divided into a node grid
``kr x kc`` shaped like the cell, with ``kr * kc >= k`` whenever ``R * C >= k``. Its candidates, listed node by node,
are sampled systematically with one random offset (every candidate is chosen with probability exactly ``k / (R * C)``,
at most about one patch per node), and the pixel inside each node is then redrawn from the node's own uniform so that
positions in different nodes are independent. Patches are therefore unbiased within the cell, spread over it, and
distinct wherever the cell has room (``k <= R * C``; otherwise candidates repeat as evenly as possible). Every
top-left lies in ``[0, H - P] x [0, W - P]``.

Outputs are ordered by level (all level-0 patches first), then by cell in raster order. ``pos`` is the patch centre
relative to the level's size, ``((top + P/2) / H_s, (left + P/2) / W_s)``, and the same positions index the reference
and the distorted image.

**Randomness and determinism.** Every random number comes from a CPU :class:`torch.Generator` (the one passed in, or
``torch.Generator().manual_seed(seed)``); the global torch, numpy and ``random`` states are never read or changed.
Per level, in order: cell-order keys ``(D, cells)``, systematic offsets ``(D, 1)``, cell offsets ``(D, cells)`` and
per-patch uniforms ``(D, n)``, where ``D = 1`` by default: every image of the batch uses the same random numbers, so
an image's positions depend only on the seed (or generator state), its size and its own pixels, and scoring a pair
alone or inside any batch gives the same positions. With ``per_image_draws=True``, ``D = B`` and image ``b`` gets its
own numbers (more diverse batches for training; positions then depend on ``b`` and ``B`` too). The shapes never
depend on the image content, so the content of one image never changes another image's positions. Only the
``(B, cells)`` difference masses cross from the input's device to the CPU, in one transfer, and everything after that
(allocation, placement) runs on the CPU, mostly in integer arithmetic. Positions are therefore bit-identical on CPU
and CUDA for the same seed and inputs when ``diff_weight`` is 0. Otherwise the masses are sums in one fixed order
(:mod:`vtamiq_metric.sampling.footprint`) of difference maps that may differ in the last bit between devices, and
the positions are identical unless such a difference moves a cell boundary of the systematic sampling across one of
its points: a probability of order ``cells * n * 1e-15``, about 1e-9 per image for 1024 patches. Patch *pixels* at
levels above 0 come from average pooling in the input dtype on the device and may differ in the last bit.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import as_float, ceil_div, check_int, work_dtype
from .config import SamplingConfig
from .probability import level_probabilities, plan_draw
from .pyramid import Level, pooled_levels

__all__ = ["PatchSample", "extract_patches", "sample_patches"]

# Expected counts are quantised to multiples of 1 / _UNIT; n * _UNIT must stay below 2**53 for exact float64 rounding.
_UNIT = 1 << 32
# The largest float32 strictly below 1.
_POS_MAX = 1.0 - 2.0**-24


@dataclass
class PatchSample:
    """Aligned patches drawn from a (ref, dist) batch.

    Attributes:
        ref: (B, N, 3, P, P) reference patches, same dtype/device/value range as the input images.
        dist: (B, N, 3, P, P) distorted patches at the same positions.
        pos: (B, N, 2) float32 patch centres (row, col) in [0, 1), relative to the image size at the patch's scale.
        scale: (B, N) long pyramid level of each patch, or None when sampling used a single scale.
        top_left: (B, N, 2) long (row, col) pixel coordinates of each patch's top-left corner at its scale.
        image_size: (H, W) of the full-resolution images the patches were drawn from (None if unknown).
    """

    ref: torch.Tensor
    dist: torch.Tensor
    pos: torch.Tensor
    scale: torch.Tensor | None
    top_left: torch.Tensor
    image_size: tuple[int, int] | None = None


def _allocate(prob: Tensor, count: int, keys: Tensor, offsets: Tensor) -> Tensor:
    """Exact integer allocation of ``count`` patches over cells by systematic sampling in a random cell order.

    Args:
        prob: (B, K) non-negative float64 cell masses, each row with a positive sum.
        count: patches per image n.
        keys: (B, K) float64 uniforms defining the cell order.
        offsets: (B, 1) int64 uniforms in [0, 2**32): the systematic sampling offset.

    Returns:
        (B, K) int64 counts; each row sums to n and each cell gets floor or ceil of ``n * prob / prob.sum()``.
    """
    total = count * _UNIT
    quanta = torch.round(prob / prob.sum(dim=1, keepdim=True) * total).to(torch.int64)  # (B, K)
    rows = torch.arange(quanta.shape[0])
    quanta[rows, quanta.argmax(dim=1)] += total - quanta.sum(dim=1)  # exact total; the largest cell absorbs rounding
    order = torch.argsort(keys, dim=1)  # (B, K) random cell order
    ordered = quanta.gather(1, order)  # (B, K)
    upper = ordered.cumsum(dim=1)
    lower = upper - ordered
    # Points offsets + k * _UNIT, k = 0..n-1; a cell receives the points inside [lower, upper).
    got = ceil_div(upper - offsets, _UNIT) - ceil_div(lower - offsets, _UNIT)  # (B, K)
    return torch.empty_like(got).scatter_(1, order, got)


def _place(level: Level, counts: Tensor, cell_offsets: Tensor, jitter: Tensor) -> Tensor:
    """Integer top-left positions for the allocated counts of one level.

    Inside a cell of ``R x C`` candidates holding ``k`` patches, the candidates are ordered node by node (a
    ``kr x kc`` node grid shaped like the cell, ``kr * kc >= k`` when ``R * C >= k``) and ``k`` of them are chosen by
    systematic sampling with the integer offset ``omega`` in ``[0, R * C)``: the points ``(i * R * C + omega) / k``.
    This picks every candidate with probability exactly ``k / (R * C)`` and spreads the patches over the nodes. The
    pixel inside a node is then redrawn from the node's own uniform (the ``jitter`` of its first patch, by systematic
    sampling over the node's pixels), so that positions inside different nodes are independent. Patches are distinct
    whenever ``k <= R * C``; otherwise candidates repeat as evenly as possible.

    Args:
        level: the level geometry.
        counts: (B, K) int64 patches per cell, rows summing to n.
        cell_offsets: (B, K) float64 uniforms, one systematic offset per cell.
        jitter: (B, n) float64 uniforms, one per patch.

    Returns:
        (B, n, 2) int64 (row, col) top-left corners in [0, H_s - P] x [0, W_s - P], ordered by cell (raster order).
    """
    batch, cells = counts.shape
    gh, gw = level.grid
    row_edges, col_edges = level.edges
    rows, cols = level.sides
    cell_top = row_edges[:-1].repeat_interleave(gw)  # (K,)
    cell_left = col_edges[:-1].repeat(gh)  # (K,)
    cell_rows = rows.repeat_interleave(gw)  # (K,)
    cell_cols = cols.repeat(gh)  # (K,)

    # Node grid per cell, shaped like the cell, with kr * kc >= n whenever the cell has room for n distinct patches.
    n = counts.clamp(min=1)  # (B, K)
    kr = torch.round(torch.sqrt(n.double() * cell_rows.double() / cell_cols.double())).to(torch.int64).clamp(min=1)
    kr = torch.minimum(kr, cell_rows.expand_as(kr))
    kc = torch.minimum(cell_cols.expand_as(kr), ceil_div(n, kr))
    kr = torch.where(kr * kc < n, torch.minimum(cell_rows.expand_as(kr), ceil_div(n, kc)), kr)  # (B, K)
    area = cell_rows * cell_cols  # (K,)
    omega = torch.minimum((cell_offsets * area).floor().to(torch.int64), area - 1)  # (B, K) in [0, R*C)

    flat_counts = counts.reshape(-1)  # (B*K,)
    first_patch = flat_counts.cumsum(0) - flat_counts  # (B*K,) flat index of each cell's first patch
    cell = torch.repeat_interleave(torch.arange(batch * cells), flat_counts)  # (B*n,) ordered by (image, cell)
    i = torch.arange(cell.numel()) - first_patch[cell]  # (B*n,) index inside the cell
    k = cell % cells
    n_c = flat_counts[cell]
    rows_c, cols_c, area_c = cell_rows[k], cell_cols[k], area[k]
    kr_c, kc_c = kr.reshape(-1)[cell], kc.reshape(-1)[cell]
    omega_c = omega.reshape(-1)[cell]

    # Candidate index in node-major order: node row bands are contiguous, nodes inside a band are contiguous.
    cand = (i * area_c + omega_c) // n_c  # (B*n,) in [0, R*C)
    band = ceil_div((cand // cols_c + 1) * kr_c, rows_c) - 1  # node row of the candidate
    band_top = band * rows_c // kr_c
    band_rows = (band + 1) * rows_c // kr_c - band_top  # >= 1 because kr <= R
    in_band = cand - band_top * cols_c  # (B*n,) in [0, band_rows * C)
    node_col = ceil_div((in_band // band_rows + 1) * kc_c, cols_c) - 1
    node_left = node_col * cols_c // kc_c
    node_cols = (node_col + 1) * cols_c // kc_c - node_left  # >= 1 because kc <= C
    node_start = band_top * cols_c + band_rows * node_left  # node-major index of the node's first candidate
    node_area = band_rows * node_cols

    # Patches of this cell that fall in the same node: rank r among m, first one at index `first`.
    first = ceil_div(n_c * node_start - omega_c, area_c)
    m = ceil_div(n_c * (node_start + node_area) - omega_c, area_c) - first
    u = jitter.reshape(-1)[first_patch[cell] + first]  # (B*n,) the node's own uniform
    q = torch.minimum(((i - first + u) * node_area / m).floor().to(torch.int64), node_area - 1)  # pixel in node
    row = cell_top[k] + band_top + q // node_cols
    col = cell_left[k] + node_left + q % node_cols
    return torch.stack([row, col], dim=1).reshape(batch, level.count, 2)  # (B, n, 2)


def _gather(image: Tensor, top_left: Tensor, patch_size: int) -> Tensor:
    """(B, C, H, W) image, (B, n, 2) long top-left on the image's device -> (B, n, C, P, P) patches (differentiable)."""
    batch, channels, height, width = image.shape
    count = top_left.shape[1]
    offsets = torch.arange(patch_size, device=image.device)  # (P,)
    rows = top_left[..., 0:1] + offsets  # (B, n, P)
    cols = top_left[..., 1:2] + offsets  # (B, n, P)
    index = (rows[..., :, None] * width + cols[..., None, :]).reshape(batch, 1, -1)  # (B, 1, n*P*P)
    flat = image.reshape(batch, channels, height * width)  # (B, C, H*W)
    patches = flat.gather(2, index.expand(batch, channels, -1))  # (B, C, n*P*P)
    patches = patches.view(batch, channels, count, patch_size, patch_size)  # (B, C, n, P, P)
    return patches.permute(0, 2, 1, 3, 4).contiguous()  # (B, n, C, P, P)


def _resolve_generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
        if generator.device.type != "cpu":
            raise ValueError(f"generator: expected a CPU torch.Generator, got one on {generator.device}")
        return generator
    if seed is None:
        fresh = torch.Generator()
        fresh.seed()  # non-deterministic seed; the global RNG is untouched
        return fresh
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed: expected an int or None, got {type(seed).__name__}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed: expected an int in [0, 2**64), got {seed}")
    return torch.Generator().manual_seed(int(seed))


def sample_patches(
    ref: Tensor,
    dist: Tensor,
    num_patches: int,
    *,
    patch_size: int = 16,
    config: SamplingConfig | None = None,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    per_image_draws: bool = False,
) -> PatchSample:
    """Draw N aligned patches from each (ref, dist) pair with context-aware patch sampling (CAPS).

    The algorithm, the cell rule, the scale rule and what "deterministic" relies on are described in the docstrings
    of this module, :mod:`~vtamiq_metric.sampling.probability` and :mod:`~vtamiq_metric.sampling.pyramid`. The
    values of the images are not range-checked here (callers validate them).

    Args:
        ref: (B, 3, H, W) float reference images in [0, 1], H and W >= patch_size; or uint8 images (values
            ``v`` read as ``v / 255``, see "Memory on large images" in the :mod:`vtamiq_metric.sampling` docstring).
        dist: (B, 3, H, W) float distorted images in [0, 1], same shape, dtype family and device as ``ref`` (uint8
            if and only if ``ref`` is).
        num_patches: patches per image N, 1 <= N <= 2**20. More patches than candidate positions is allowed;
            positions then repeat as evenly as possible.
        patch_size: patch side P in pixels, >= 1.
        config: sampling weights and scales; ``SamplingConfig()`` if None.
        seed: seed of a fresh CPU generator, in [0, 2**64); None draws a non-deterministic seed. Ignored when
            ``generator`` is given.
        generator: CPU generator to draw from (advanced in place). The global RNG is never used.
        per_image_draws: False (default): all images share the random numbers, so each image's positions are the
            same as when it is sampled alone (batch-invariant scores). True: independent numbers per image.

    Returns:
        PatchSample with ``ref``/``dist`` (B, N, 3, P, P) in the input dtype (float32 for uint8 input) and device
        (differentiable w.r.t. the inputs), ``pos`` (B, N, 2) float32 in [0, 1), ``top_left`` (B, N, 2) long, and
        ``scale`` (B, N) long (None when only one scale is used). Patches are ordered by scale, then by cell in
        raster order.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: shapes or devices differ, the images are not (B, 3, H, W), an image is smaller than a patch,
            ``num_patches`` is out of range, or the generator is not on the CPU.

    Example:
        >>> ref = torch.rand(2, 3, 64, 96)
        >>> sample = sample_patches(ref, ref.flip(-1), 32, seed=0)
        >>> tuple(sample.ref.shape), tuple(sample.pos.shape)
        ((2, 32, 3, 16, 16), (2, 32, 2))
    """
    plan = plan_draw(ref, dist, num_patches, patch_size, config, allow_uint8=True)
    if not isinstance(per_image_draws, bool):
        raise TypeError(f"per_image_draws: expected a bool, got {type(per_image_draws).__name__}")
    gen = _resolve_generator(seed, generator)
    batch, _, height, width = ref.shape
    draws = batch if per_image_draws else 1

    placed = []
    for level, prob in level_probabilities(ref, dist, plan):
        keys = torch.rand(draws, level.cells, generator=gen, dtype=torch.float64).expand(batch, -1)  # (B, K)
        offsets = torch.randint(0, _UNIT, (draws, 1), generator=gen, dtype=torch.int64).expand(batch, -1)  # (B, 1)
        cell_offsets = torch.rand(draws, level.cells, generator=gen, dtype=torch.float64).expand(batch, -1)  # (B, K)
        jitter = torch.rand(draws, level.count, generator=gen, dtype=torch.float64).expand(batch, -1)  # (B, n_s)
        counts = _allocate(prob, level.count, keys, offsets)  # (B, K)
        top_left = _place(level, counts, cell_offsets, jitter)  # (B, n_s, 2)
        meta = torch.tensor([level.index, level.height, level.width], dtype=torch.int64)
        placed.append(torch.cat([top_left, meta.expand(batch, level.count, 3)], dim=2))  # (B, n_s, 5)

    # One host -> device transfer of (top, left, scale, H_s, W_s) per patch.
    packed = torch.cat(placed, dim=1).to(ref.device, non_blocking=True)  # (B, N, 5)
    top_left = packed[..., 0:2]  # (B, N, 2)
    work = work_dtype(ref.device)
    pos = ((top_left.to(work) + plan.patch_size / 2) / packed[..., 3:5].to(work)).to(torch.float32)  # (B, N, 2)
    pos = pos.clamp(max=_POS_MAX)

    # Levels are 0, 1, ..., len(levels) - 1: scale counts never increase, so only trailing levels can be empty.
    levels = plan.levels
    ref_levels, dist_levels = pooled_levels(ref, len(levels)), pooled_levels(dist, len(levels))
    ref_parts, dist_parts = [], []
    start = 0
    for level in levels:
        level_top_left = top_left[:, start : start + level.count]  # (B, n_s, 2)
        # (B, n_s, 3, P, P) each
        ref_parts.append(as_float(_gather(ref_levels[level.index], level_top_left, level.patch_size)))
        dist_parts.append(as_float(_gather(dist_levels[level.index], level_top_left, level.patch_size)))
        start += level.count
    del ref_levels, dist_levels
    ref_patches = ref_parts[0] if len(ref_parts) == 1 else torch.cat(ref_parts, dim=1)  # (B, N, 3, P, P)
    dist_patches = dist_parts[0] if len(dist_parts) == 1 else torch.cat(dist_parts, dim=1)

    scale = packed[..., 2].contiguous() if plan.num_scales > 1 else None  # (B, N)
    return PatchSample(
        ref=ref_patches,
        dist=dist_patches,
        pos=pos,
        scale=scale,
        top_left=top_left.contiguous(),
        image_size=(height, width),
    )


def extract_patches(images: Tensor, sample: PatchSample, *, patch_size: int | None = None) -> Tensor:
    """Cut patches from further images at the positions (and scales) of an existing sample.

    Used when more than two images share one set of positions, e.g. PieAPP triplets (ref, A, B).

    Args:
        images: (B, C, H, W) float images, the same size and batch as the images behind ``sample``; the sample's
            positions are moved to their device.
        sample: a :class:`PatchSample` from :func:`sample_patches`.
        patch_size: patch side P; inferred from ``sample.ref`` when None, and checked against it otherwise.

    Returns:
        (B, N, C, P, P) patches in the dtype and on the device of ``images``, differentiable w.r.t. ``images``.
        Level-s patches come from ``images`` 2×2 average-pooled s times, as in :func:`sample_patches`.

    Raises:
        TypeError: ``images`` is not a float tensor or ``sample`` is not a PatchSample.
        ValueError: shapes, batch, size or patch size do not match the sample.

    Example:
        >>> ref = torch.rand(1, 3, 64, 64)
        >>> sample = sample_patches(ref, ref.flip(-1), 8)
        >>> torch.equal(extract_patches(ref.flip(-1), sample), sample.dist)
        True
    """
    if not isinstance(sample, PatchSample):
        raise TypeError(f"sample: expected a PatchSample, got {type(sample).__name__}")
    if not isinstance(images, Tensor):
        raise TypeError(f"images: expected a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"images: expected a floating-point tensor, got dtype {images.dtype}")
    if images.ndim != 4:
        raise ValueError(f"images: expected shape (B, C, H, W), got {tuple(images.shape)}")
    inferred = sample.ref.shape[-1]
    if patch_size is None:
        patch_size = inferred
    elif check_int("patch_size", patch_size, minimum=1) != inferred:
        raise ValueError(f"patch_size: expected {inferred} (the sample's patch size), got {patch_size}")
    batch, _, height, width = images.shape
    if batch != sample.top_left.shape[0]:
        raise ValueError(f"images: expected a batch of {sample.top_left.shape[0]} (the sample's), got {batch}")
    if sample.image_size is not None and (height, width) != tuple(sample.image_size):
        raise ValueError(f"images: expected size {tuple(sample.image_size)} (the sample's), got {(height, width)}")
    sample_top_left = sample.top_left.to(images.device)  # (B, N, 2)
    if sample.scale is None:
        return _gather(images, sample_top_left, patch_size)  # (B, N, C, P, P)
    scale = sample.scale.to(images.device)  # (B, N)
    out = images.new_zeros(batch, sample.top_left.shape[1], images.shape[1], patch_size, patch_size)
    level = images
    for s in range(int(scale.max()) + 1):
        if s > 0:
            level = F.avg_pool2d(level, 2)  # (B, C, H_s, W_s)
        if min(level.shape[2:]) < patch_size:
            raise ValueError(
                f"images: level {s} is {tuple(level.shape[2:])}, expected at least {patch_size}x{patch_size}"
            )
        mask = (scale == s)[..., None, None, None]  # (B, N, 1, 1, 1)
        limit = torch.tensor([level.shape[2] - patch_size, level.shape[3] - patch_size], device=images.device)
        top_left = torch.minimum(sample_top_left, limit)  # other levels' positions kept in range
        out = torch.where(mask, _gather(level, top_left, patch_size), out)  # (B, N, C, P, P)
    return out
