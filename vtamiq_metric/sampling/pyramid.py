"""The pyramid of a CAPS draw: which levels receive patches, how many, and the cells of each level.

**Scales.** With ``num_scales > 1``, level ``s`` is the image 2×2 average-pooled ``s`` times (stride 2, floor). Only
levels at least one patch tall and wide are used, so the effective number of scales is
``S = min(num_scales, available levels)`` (:func:`effective_num_scales`). Level ``s`` receives a share proportional to
``2 ** (-scale_ratio * s)``, rounded by largest remainder to integers summing to ``N`` (:func:`scale_counts`); level 0
receives the most, and only trailing levels can receive none.

**Cells.** The ``(H - P + 1) x (W - P + 1)`` top-left candidates of a level are split into ``gh x gw`` cells whose
sides differ by at most one pixel. The target side is ``min(P, sqrt(4 * area / n))`` for ``n`` patches at this level:
about four patches per cell when patches are dense, and never wider than one patch, so that the probability map is
honoured at patch resolution even for small ``n``. ``gh = clamp(ceil((H - P + 1) / side), 1, H - P + 1)`` and likewise
``gw``. A cell is therefore never longer than ``P`` candidates on either side. :attr:`Level.edges` is the one place the
cell boundaries are computed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import as_float, check_fits_a_patch, check_int, check_real, strip_rows
from .config import SamplingConfig

__all__ = ["Level", "effective_num_scales", "plan_levels", "pooled_levels", "scale_counts"]

# Average number of patches per cell when patches are dense (the authors' stratified sampler used the same density).
_PATCHES_PER_CELL = 4.0


@dataclass(frozen=True)
class Level:
    """Geometry of one pyramid level that receives patches.

    Attributes:
        index: the level s (the image is 2×2 average-pooled s times).
        height: H_s, the level's height in pixels.
        width: W_s, the level's width in pixels.
        count: patches drawn at this level, >= 1.
        grid: (gh, gw) cells over the level's top-left candidates.
        patch_size: P.
    """

    index: int
    height: int
    width: int
    count: int
    grid: tuple[int, int]
    patch_size: int

    @property
    def candidates(self) -> tuple[int, int]:
        """(H_s - P + 1, W_s - P + 1): the top-left candidates per column and per row."""
        return self.height - self.patch_size + 1, self.width - self.patch_size + 1

    @property
    def cells(self) -> int:
        """The number of cells, ``gh * gw``."""
        return self.grid[0] * self.grid[1]

    @functools.cached_property
    def edges(self) -> tuple[Tensor, Tensor]:
        """(gh + 1,) and (gw + 1,) long CPU boundaries of the cells over the candidate rows and columns.

        Cell ``(i, j)`` holds the candidates ``[rows[i], rows[i + 1]) x [cols[j], cols[j + 1])``; the runs of one axis
        differ in length by at most one.
        """
        (rows, cols), (gh, gw) = self.candidates, self.grid
        return torch.arange(gh + 1) * rows // gh, torch.arange(gw + 1) * cols // gw

    @property
    def sides(self) -> tuple[Tensor, Tensor]:
        """(gh,) and (gw,) long: the number of candidate rows of each cell row and columns of each cell column."""
        rows, cols = self.edges
        return rows[1:] - rows[:-1], cols[1:] - cols[:-1]


def effective_num_scales(height: int, width: int, patch_size: int, num_scales: int) -> int:
    """Number of pyramid levels that can hold a patch.

    Level ``s`` has size ``(height // 2**s, width // 2**s)`` (repeated 2×2 average pooling with floor). A level is
    usable while both sides are at least ``patch_size``.

    Args:
        height: image height H in pixels, >= patch_size.
        width: image width W in pixels, >= patch_size.
        patch_size: patch side P in pixels, >= 1.
        num_scales: requested number of levels, >= 1.

    Returns:
        ``min(num_scales, usable levels)``, at least 1.

    Raises:
        ValueError: the image is smaller than one patch, or an argument is < 1.

    Example:
        >>> effective_num_scales(384, 512, 16, 5)
        5
        >>> effective_num_scales(64, 96, 16, 5)
        3
    """
    height = check_int("height", height, minimum=1)
    width = check_int("width", width, minimum=1)
    patch_size = check_int("patch_size", patch_size, minimum=1)
    num_scales = check_int("num_scales", num_scales, minimum=1)
    check_fits_a_patch(height, width, patch_size)
    levels = 0
    while levels < num_scales and height >= patch_size and width >= patch_size:
        levels += 1
        height //= 2
        width //= 2
    return levels


def scale_counts(num_patches: int, num_scales: int, ratio: float) -> list[int]:
    """Split ``num_patches`` over pyramid levels.

    Level ``s`` gets the share ``2 ** (-ratio * s) / sum_k 2 ** (-ratio * k)``. The expected counts are rounded by
    largest remainder (ties go to the finer level), so the counts sum exactly to ``num_patches``, each differs from
    its expectation by less than 1, and they never increase with ``s``.

    Args:
        num_patches: total number of patches N, >= 1.
        num_scales: number of levels S, >= 1.
        ratio: decay of the share per level, >= 0 (0 = equal shares).

    Returns:
        ``S`` non-negative ints, level 0 first, summing to N.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: N < 1, S < 1, or ratio negative or not finite.

    Example:
        >>> scale_counts(256, 5, 1.5)
        [166, 59, 21, 7, 3]
    """
    num_patches = check_int("num_patches", num_patches, minimum=1)
    num_scales = check_int("num_scales", num_scales, minimum=1)
    check_real("ratio", ratio, minimum=0.0)
    weights = [2.0 ** (-float(ratio) * s) for s in range(num_scales)]
    total = math.fsum(weights)
    expected = [num_patches * w / total for w in weights]
    counts = [math.floor(e) for e in expected]
    leftover = num_patches - sum(counts)
    by_remainder = sorted(range(num_scales), key=lambda s: (-(expected[s] - counts[s]), s))
    for s in by_remainder[:leftover]:
        counts[s] += 1
    return counts


def _grid_shape(rows: int, cols: int, count: int, patch_size: int) -> tuple[int, int]:
    """Cells per side for a ``rows x cols`` candidate region holding ``count`` patches (see the module docstring)."""
    side = min(float(patch_size), math.sqrt(_PATCHES_PER_CELL * rows * cols / count))
    return min(rows, max(1, math.ceil(rows / side))), min(cols, max(1, math.ceil(cols / side)))


def plan_levels(height: int, width: int, num_patches: int, patch_size: int, config: SamplingConfig) -> list[Level]:
    """The levels that receive patches, in order 0, 1, ..., with their counts and cell grids (see the module docstring).

    Args:
        height: image height H, >= patch_size.
        width: image width W, >= patch_size.
        num_patches: patches per image N, >= 1.
        patch_size: P, >= 1.
        config: the draw's ``num_scales`` and ``scale_ratio``.

    Returns:
        One :class:`Level` per level with at least one patch; their indices are ``0, 1, ..., len - 1``.
    """
    num_levels = effective_num_scales(height, width, patch_size, config.num_scales)
    levels = []
    for s, count in enumerate(scale_counts(num_patches, num_levels, config.scale_ratio)):
        if count == 0:
            continue
        h_s, w_s = height // 2**s, width // 2**s
        grid = _grid_shape(h_s - patch_size + 1, w_s - patch_size + 1, count, patch_size)
        levels.append(Level(index=s, height=h_s, width=w_s, count=count, grid=grid, patch_size=patch_size))
    return levels


def pooled_levels(image: Tensor, count: int) -> list[Tensor]:
    """Levels 0 .. count - 1 of ``image``'s 2×2 average pyramid.

    Args:
        image: (B, C, H, W) float or uint8 image.
        count: number of levels, >= 1.

    Returns:
        ``count`` tensors (B, C, H // 2**s, W // 2**s): level 0 is ``image`` itself; the others are in its dtype, or
        float32 for a uint8 image, whose levels are pooled from float32 row strips (never a full-size float copy).
    """
    levels = [image]
    if count <= 1:
        return levels
    if image.dtype != torch.uint8:
        for _ in range(1, count):
            levels.append(F.avg_pool2d(levels[-1], 2))  # (B, 3, H_s, W_s)
        return levels
    step = strip_rows(image.shape[-1], 2 ** (count - 1))
    parts: list[list[Tensor]] = [[] for _ in range(count - 1)]
    for top in range(0, image.shape[-2], step):
        level = as_float(image[..., top : top + step, :])
        for s in range(count - 1):
            level = F.avg_pool2d(level, 2)  # (B, 3, h_s, W_s)
            parts[s].append(level)
    levels.extend(torch.cat(p, dim=-2) for p in parts)
    return levels
