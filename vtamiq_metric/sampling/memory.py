"""How much memory a CAPS draw needs: the model behind ``api.estimate_pair_bytes``.

:func:`sample_patches` works in three phases; the first ends before the others begin, and the placed positions of the
second live on while the third gathers the patches, so the peak is at most ``max(difference, placement + patches)``:

1. **Difference** (only when ``diff_weight > 0``). ``"mse"``: per pixel of one row strip (at most ``_STRIP_PIXELS``
   pixels), the float64 strips of both images (2 x 24 bytes, the first becoming their difference) and the float32
   copy of a uint8 strip (12), then the squared difference, its channel mean and window sums: 60 bytes, counted as
   ``_MSE_STRIP_BYTES = 96``.
   ``"ssim"``, per row strip of a level: the full-resolution rows it is pooled from as float64 (48 bytes per pixel,
   with the float32 copy of a uint8 strip and the pooling steps below 80, counted as ``_SSIM_SOURCE_BYTES = 96``),
   then per pixel of the strip with its halo the float64 images (48), the five statistics, their padded copy, the row
   pass and the blurred output (4 x 120): 528 bytes, counted as ``_SSIM_BYTES = 576``. The cell masses are tiny beside
   either.
2. **Cells and placement**: a dozen float64/int64 vectors per cell (allocation, node grids) and about thirty int64
   values per patch (placement), counted as ``_CELL_BYTES`` and ``_PATCH_BYTES``.
3. **Patches**: the pyramid levels above 0 of both images (in the input dtype, float32 for uint8, whose levels are
   pooled by strips and then concatenated: three copies in all), the gathered patches of both images and, while one
   image's patches are gathered, its int64 pixel index and the un-permuted copy: at most 16 bytes per float32 patch
   value (with the levels' concatenation), beside the placed positions.

The bound is of the live allocations (what a device allocator holds); the resident memory of a CPU process can exceed
it by the C library's heap slack for blocks below 32 MB. ``tests/sampling/test_memory.py`` checks the bound, and that
it is less than twice the truth, against the peak of the live allocations of real draws.
"""

from __future__ import annotations

from ._common import check_int, strip_rows
from .config import SamplingConfig
from .difference import ssim_strips
from .pyramid import plan_levels

__all__ = ["sampler_bytes"]

_MSE_STRIP_BYTES = 96
_SSIM_BYTES = 576
_SSIM_SOURCE_BYTES = 96
_CELL_BYTES = 160
_PATCH_BYTES = 320
_LEVEL_COPIES = 3  # both images' levels, and a uint8 image's strips before their concatenation
_PATCH_VALUE_COPIES = 4  # kept ref and dist patches, their levels' concatenation (the index and copy fit within)


def sampler_bytes(height: int, width: int, num_patches: int, *, patch_size: int = 16,
                  config: SamplingConfig | None = None, itemsize: int = 4) -> int:
    """An upper bound on the memory :func:`sample_patches` allocates for one image pair, beyond the images.

    Linear in the pixels whatever the image's shape: the difference is bounded by one row strip, the other terms grow
    with the pixels, the cells and the patches (see the module docstring).

    Args:
        height: image height H in pixels, >= patch_size.
        width: image width W in pixels, >= patch_size.
        num_patches: patches per image N, >= 1.
        patch_size: patch side P, >= 1.
        config: the sampling settings; ``SamplingConfig()`` if None.
        itemsize: bytes per value of the images: 1 (uint8), 2, 4 (float32) or 8 (float64).

    Returns:
        Bytes, per image pair (a batch of B pairs needs B times as much).

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: the image is smaller than a patch, or an argument is out of range.

    Example:
        >>> sampler_bytes(4000, 6000, 1024) // 2**20  # MiB: 96 bytes per pixel of one 699 x 6000 strip
        383
    """
    if config is None:
        config = SamplingConfig()
    elif not isinstance(config, SamplingConfig):
        raise TypeError(f"config: expected a SamplingConfig or None, got {type(config).__name__}")
    itemsize = check_int("itemsize", itemsize, minimum=1)
    levels = plan_levels(height, width, check_int("num_patches", num_patches, minimum=1), patch_size, config)
    difference = 0
    if config.diff_weight > 0 and config.diff_type == "mse":
        rows = min(height, strip_rows(width, 2 ** levels[-1].index))
        difference = _MSE_STRIP_BYTES * rows * width
    elif config.diff_weight > 0:
        for level in levels:
            rows = max(last - first for _, _, first, last in ssim_strips(width, level))  # with the halo
            source = min(height, rows * 2**level.index) * width
            difference = max(difference, _SSIM_SOURCE_BYTES * source + _SSIM_BYTES * rows * level.width)
    cells = sum(level.cells for level in levels)
    placement = _CELL_BYTES * cells + _PATCH_BYTES * num_patches
    value = max(itemsize, 4)  # levels above 0 and patches of uint8 images are float32
    pyramid = _LEVEL_COPIES * 3 * value * sum(level.height * level.width for level in levels if level.index > 0)
    patches = _PATCH_VALUE_COPIES * value * num_patches * 3 * patch_size**2
    return max(difference, placement + pyramid + patches)
