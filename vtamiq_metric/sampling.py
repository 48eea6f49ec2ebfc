"""Context-aware patch sampling (CAPS).

VTAMIQ (Chubarau & Clark, 2021, https://arxiv.org/abs/2110.01655, §3.2) encodes a sparse set of N aligned P×P patches
drawn from the reference and the distorted image. CAPS biases where the patches go: towards the image centre (the
centre bias of human attention), towards regions where the two images differ, and uniformly everywhere else.

How a draw works, per image and per pyramid level (all coordinates are patch **top-left** corners; the candidates are
the integer positions ``[0, H - P] x [0, W - P]``):

1. **Probability map** over candidates: ``w_c * C + w_d * D + w_u * U``, each component normalised to sum 1 first.

   - ``C`` (centre bias): an anisotropic Gaussian evaluated at the patch centre, centred on the image centre, with
     standard deviations ``centre_sigma = (0.25, 0.25)`` times the image height and width by default. The authors used
     the DeepGaze II MIT1003 fixation log-density (``centerbias.npy``), which we do not ship; a Gaussian whose
     standard deviation is a quarter of each side is a broad centre bias of comparable spread (most of its mass lies
     in the central half of each axis) and stretches with the aspect ratio, as fixation densities do.
   - ``D`` (perceptual difference), from the un-normalised [0, 1] images: ``"mse"`` is the per-pixel squared error
     averaged over channels; ``"ssim"`` is ``1 - SSIM`` (Gaussian window 11, sigma 1.5, replicate padding,
     ``C1 = 0.01**2``, ``C2 = 0.03**2`` for data range 1, SSIM averaged over channels) clamped to >= 0. The value of a
     candidate is the sum of the per-pixel difference over the patch footprint, i.e. the difference a patch at that
     position would cover. When the images are (numerically) identical ``D`` is absent: it contributes nothing and
     the remaining components are renormalised (a pure-difference config then samples uniformly).
   - ``U``: uniform over candidates.

2. **Cells.** The ``(H - P + 1) x (W - P + 1)`` candidate region is split into ``gh x gw`` cells whose sides differ by
   at most one pixel. The target side is ``min(P, sqrt(4 * area / n))`` for ``n`` patches at this level: about four
   patches per cell when patches are dense, and never wider than one patch, so that the map is honoured at patch
   resolution even for small ``n``. ``gh = clamp(ceil((H - P + 1) / side), 1, H - P + 1)`` and likewise ``gw``.

3. **Allocation.** A cell's mass is the sum of the map over its candidates. Its expected count ``e = n * mass`` is
   quantised to multiples of ``2**-32`` (int64, exact total), and the counts are drawn by systematic sampling over the
   cells in a random order with one random offset: every cell receives ``floor(e)`` or ``ceil(e)`` patches (the
   largest-remainder quota property), the expectation is exactly ``e`` (up to the ``2**-32`` quantisation), and the
   total is exactly ``n``. A deterministic largest-remainder rule is not used because it would place the leftover
   patches in the same cells on every draw whenever there are more cells than patches.

4. **Placement inside a cell.** A cell of ``R x C`` candidates holding ``k`` patches is divided into a node grid
   ``kr x kc`` shaped like the cell, with ``kr * kc >= k`` whenever ``R * C >= k``. Its candidates, listed node by
   node, are sampled systematically with one random offset (every candidate is chosen with probability exactly
   ``k / (R * C)``, at most about one patch per node), and the pixel inside each node is then redrawn from the node's
   own uniform so that positions in different nodes are independent. Patches are therefore unbiased within the cell,
   spread over it, and distinct wherever the cell has room (``k <= R * C``; otherwise candidates repeat as evenly as
   possible). Every top-left lies in ``[0, H - P] x [0, W - P]``.

5. **Scales.** With ``num_scales > 1``, level ``s`` is the image 2×2 average-pooled ``s`` times (stride 2, floor).
   Only levels at least one patch tall and wide are used, so the effective number of scales is
   ``S = min(num_scales, available levels)`` (:func:`effective_num_scales`). Level ``s`` receives a share proportional
   to ``2 ** (-scale_ratio * s)``, rounded by largest remainder to integers summing to ``N``
   (:func:`scale_counts`); level 0 receives the most. The maps are recomputed per level from the pooled images.

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
depend on the image content, so the content of one image never changes another image's positions. The centre and
uniform masses are computed on the CPU in float64. The difference is computed on the input's device in float64
(float32 on MPS, which has no float64) and reduced to per-cell masses with exact integer footprint weights; only these
``(B, cells)`` masses cross to the CPU, in one transfer, and everything after that (allocation, placement) runs on the
CPU, mostly in integer arithmetic. Positions are therefore bit-identical on CPU and CUDA for the same seed and inputs
when ``diff_weight`` is 0. Otherwise they are identical unless the float64 cell masses of the two devices (which
differ by about 1e-15 relative, from summation order) move a cell boundary of the systematic sampling across one of
its points: a probability of order ``cells * n * 1e-15``, about 1e-9 per image for 1024 patches. Patch *pixels* at
levels above 0 come from average pooling in the input dtype on the device and may differ in the last bit.

**Memory on large images.** :func:`sample_patches` also takes ``uint8`` images (values ``v`` read as ``v / 255`` in
float32, exactly what decoding to float gives), which ``score()`` uses for 8-bit files: 3 bytes per pixel instead of
12. The ``"mse"`` difference is computed in row strips of at most ``_STRIP_PIXELS`` pixels, so its float64 working set
stays a few hundred MB whatever the image size; images up to that size are computed in one strip, bit-identical to a
whole-image computation, and for larger ones only the float64 summation order of the cell masses changes (see the
previous paragraph for what that can move). Pyramid levels above 0 of a ``uint8`` image are pooled strip by strip
from float32 strips (the same values as pooling the float image). The ``"ssim"`` difference is computed on the whole
image (about a dozen float64 maps per pixel).

**Viewing distance.** Models whose config sets ``downsample_side`` (the bundled default: 256) see an image whose
shorter side is much longer than that side at a coarser scale: :func:`viewing_downsample` averages ``F x F`` pixel
blocks, ``F = max(1, round(min(H, W) / side))`` (:func:`viewing_factor`), before any patch is drawn. This is the
viewing-distance rule of SSIM's reference implementation and of VSI (``side = 256``), the label such models learn from,
so a 512 x 384 image is scored at 256 x 192, the scale its labels describe; images shorter than ``1.5 * side`` are
unchanged. The sampler itself never downsamples: :func:`vtamiq_metric.score`, :class:`vtamiq_metric.VTAMIQLoss`,
:func:`vtamiq_metric.damage_map` and the training data call :func:`viewing_downsample` first.
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "PatchSample",
    "SamplingConfig",
    "centre_bias",
    "difference_map",
    "effective_num_scales",
    "extract_patches",
    "sample_patches",
    "sampling_density",
    "scale_counts",
    "viewing_downsample",
    "viewing_factor",
]

_logger = logging.getLogger(__name__)

_DIFF_TYPES = ("mse", "ssim")
# Expected counts are quantised to multiples of 1 / _UNIT; n * _UNIT must stay below 2**53 for exact float64 rounding.
_UNIT = 1 << 32
_MAX_PATCHES = 1 << 20
# Average number of patches per cell when patches are dense (the authors' stratified sampler used the same density).
_PATCHES_PER_CELL = 4.0
# A difference map whose mean per-pixel footprint value is at or below this is treated as "images identical".
_DIFF_EPS = 1e-20
# The largest float32 strictly below 1.
_POS_MAX = 1.0 - 2.0**-24
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = 0.01**2
_SSIM_C2 = 0.03**2
# The "mse" difference of larger images is computed in row strips of at most this many pixels (see the module
# docstring).
_STRIP_PIXELS = 1 << 22


@dataclass(frozen=True)
class SamplingConfig:
    """How CAPS draws patch positions.

    The probability of a location is ``centre_weight * centre_bias + diff_weight * difference +
    uniform_weight * uniform`` (each term normalised to sum 1 before weighting). Presets: release era
    ``SamplingConfig(2, 2, 0.5, num_scales=5, scale_ratio=1.5)``, paper era ``SamplingConfig(2, 5, 0.25)``.

    Attributes:
        centre_weight: weight of the analytic anisotropic Gaussian centre bias.
        diff_weight: weight of the perceptual difference between ref and dist.
        uniform_weight: weight of the uniform component.
        diff_type: ``"mse"`` (per-pixel squared error, mean over channels) or ``"ssim"`` (1 - local SSIM).
        centre_sigma: (row, col) standard deviations of the centre bias, as fractions of the image height and width.
        num_scales: number of pyramid levels (1 = single scale). Level s is the image average-pooled by 2**s.
        scale_ratio: level s receives a share of the patches proportional to ``2 ** (-scale_ratio * s)``.

    Raises:
        TypeError: a field has the wrong type.
        ValueError: a weight is negative or not finite, all weights are 0, ``diff_type`` is unknown, a sigma is not
            positive, ``num_scales < 1`` or ``scale_ratio`` is negative or not finite.

    Example:
        >>> SamplingConfig(centre_weight=2, diff_weight=2, uniform_weight=0.5, num_scales=5, scale_ratio=1.5).num_scales
        5
    """

    centre_weight: float = 1.0
    diff_weight: float = 1.0
    uniform_weight: float = 0.5
    diff_type: str = "mse"
    centre_sigma: tuple[float, float] = (0.25, 0.25)
    num_scales: int = 1
    scale_ratio: float = 1.5

    def __post_init__(self) -> None:
        """Validate the fields and normalise ``centre_sigma`` to a tuple of floats."""
        for name in ("centre_weight", "diff_weight", "uniform_weight"):
            _check_real(f"SamplingConfig.{name}", getattr(self, name), minimum=0.0)
        if self.centre_weight + self.diff_weight + self.uniform_weight <= 0:
            raise ValueError(
                "SamplingConfig: expected at least one of centre_weight, diff_weight, uniform_weight > 0, got "
                f"({self.centre_weight}, {self.diff_weight}, {self.uniform_weight})"
            )
        if not isinstance(self.diff_type, str):
            raise TypeError(f"SamplingConfig.diff_type: expected a str, got {type(self.diff_type).__name__}")
        if self.diff_type not in _DIFF_TYPES:
            raise ValueError(f"SamplingConfig.diff_type: expected one of {_DIFF_TYPES}, got {self.diff_type!r}")
        sigma = self.centre_sigma
        if isinstance(sigma, (str, bytes)) or not hasattr(sigma, "__len__") or len(sigma) != 2:
            raise TypeError(f"SamplingConfig.centre_sigma: expected a (row, col) pair of numbers, got {sigma!r}")
        for value in sigma:
            _check_real("SamplingConfig.centre_sigma", value, minimum=0.0, strict=True)
        # Frozen dataclass: normalise lists (e.g. from JSON) to a tuple of floats.
        object.__setattr__(self, "centre_sigma", (float(sigma[0]), float(sigma[1])))
        if isinstance(self.num_scales, bool) or not isinstance(self.num_scales, numbers.Integral):
            raise TypeError(f"SamplingConfig.num_scales: expected an int, got {type(self.num_scales).__name__}")
        if self.num_scales < 1:
            raise ValueError(f"SamplingConfig.num_scales: expected an int >= 1, got {self.num_scales}")
        _check_real("SamplingConfig.scale_ratio", self.scale_ratio, minimum=0.0)


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


@dataclass(frozen=True)
class _Level:
    """Geometry of one pyramid level that receives patches."""

    index: int
    height: int
    width: int
    count: int
    grid: tuple[int, int]


def _check_real(name: str, value: object, *, minimum: float, strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    bad = not math.isfinite(value) or (value <= minimum if strict else value < minimum)
    if bad:
        relation = ">" if strict else ">="
        raise ValueError(f"{name}: expected a finite number {relation} {minimum}, got {value!r}")


def _check_int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def _check_fits_a_patch(height: int, width: int, patch_size: int) -> None:
    if height < patch_size or width < patch_size:
        raise ValueError(
            f"image smaller than a patch: expected height and width >= patch_size={patch_size}, got {height}x{width}"
        )


def _ceil_div(numerator: Tensor, denominator: int | Tensor) -> Tensor:
    return -torch.div(-numerator, denominator, rounding_mode="floor")


def _work_dtype(device: torch.device) -> torch.dtype:
    # MPS has no float64; there the device-identical guarantee is weaker (float32 masses).
    return torch.float32 if device.type == "mps" else torch.float64


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
    height = _check_int("height", height, minimum=1)
    width = _check_int("width", width, minimum=1)
    patch_size = _check_int("patch_size", patch_size, minimum=1)
    num_scales = _check_int("num_scales", num_scales, minimum=1)
    _check_fits_a_patch(height, width, patch_size)
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
    num_patches = _check_int("num_patches", num_patches, minimum=1)
    num_scales = _check_int("num_scales", num_scales, minimum=1)
    _check_real("ratio", ratio, minimum=0.0)
    weights = [2.0 ** (-float(ratio) * s) for s in range(num_scales)]
    total = math.fsum(weights)
    expected = [num_patches * w / total for w in weights]
    counts = [math.floor(e) for e in expected]
    leftover = num_patches - sum(counts)
    by_remainder = sorted(range(num_scales), key=lambda s: (-(expected[s] - counts[s]), s))
    for s in by_remainder[:leftover]:
        counts[s] += 1
    return counts


def _centre_profile(size: int, patch_size: int, sigma: float) -> Tensor:
    """Unnormalised 1-D Gaussian over the ``size - P + 1`` top-left candidates, evaluated at patch centres."""
    top = torch.arange(size - patch_size + 1, dtype=torch.float64)  # (size - P + 1,)
    z = (top + patch_size / 2 - size / 2) / (sigma * size)
    z2 = z * z
    return torch.exp(-0.5 * (z2 - z2.min()))  # max 1, never all-zero


def centre_bias(height: int, width: int, sigma: tuple[float, float] = (0.25, 0.25), *, patch_size: int = 16) -> Tensor:
    """Analytic centre-bias probability over patch top-left candidates.

    An anisotropic Gaussian centred on the image centre, evaluated at each candidate patch centre
    ``(top + P/2, left + P/2)``, with standard deviations ``sigma[0] * height`` and ``sigma[1] * width`` pixels.

    Args:
        height: image height H, >= patch_size.
        width: image width W, >= patch_size.
        sigma: (row, col) standard deviations as fractions of H and W, > 0.
        patch_size: patch side P; use 1 for a per-pixel map.

    Returns:
        (H - P + 1, W - P + 1) float64 CPU tensor, non-negative, summing to 1; largest at the centre.

    Raises:
        ValueError: the image is smaller than a patch, or a sigma is not positive.

    Example:
        >>> centre_bias(64, 96).shape
        torch.Size([49, 81])
    """
    height = _check_int("height", height, minimum=1)
    width = _check_int("width", width, minimum=1)
    patch_size = _check_int("patch_size", patch_size, minimum=1)
    _check_fits_a_patch(height, width, patch_size)
    if len(sigma) != 2:
        raise ValueError(f"sigma: expected a (row, col) pair, got {sigma!r}")
    for value in sigma:
        _check_real("sigma", value, minimum=0.0, strict=True)
    rows = _centre_profile(height, patch_size, float(sigma[0]))  # (H - P + 1,)
    cols = _centre_profile(width, patch_size, float(sigma[1]))  # (W - P + 1,)
    prob = rows[:, None] * cols[None, :]  # (H - P + 1, W - P + 1)
    return prob / prob.sum()


def _gaussian_blur(x: Tensor) -> Tensor:
    """Separable Gaussian blur (window 11, sigma 1.5) with replicate padding; keeps the spatial size.

    Implemented as 11 shifted multiply-adds per axis with Python-float weights: much faster than a grouped float64
    convolution on the CPU, and the weights are bit-identical on every device.
    """
    radius = _SSIM_WINDOW // 2
    taps = [math.exp(-0.5 * ((i - radius) / _SSIM_SIGMA) ** 2) for i in range(_SSIM_WINDOW)]
    norm = math.fsum(taps)
    taps = [t / norm for t in taps]
    height, width = x.shape[-2:]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")  # (B, C, H + 10, W + 10)
    rows = x[..., :, 0:width] * taps[0]  # (B, C, H + 10, W)
    for i in range(1, _SSIM_WINDOW):
        rows.add_(x[..., :, i : i + width], alpha=taps[i])
    out = rows[..., 0:height, :] * taps[0]  # (B, C, H, W)
    for i in range(1, _SSIM_WINDOW):
        out.add_(rows[..., i : i + height, :], alpha=taps[i])
    return out


def difference_map(ref: Tensor, dist: Tensor, kind: str = "mse") -> Tensor:
    """Per-pixel perceptual difference used by CAPS.

    Args:
        ref: (B, 3, H, W) float reference images in [0, 1].
        dist: (B, 3, H, W) float distorted images in [0, 1], same shape and device.
        kind: ``"mse"``: squared error averaged over channels, in [0, 1]; ``"ssim"``: ``1 - SSIM`` with a Gaussian
            window (11, sigma 1.5), replicate padding, constants for data range 1, SSIM averaged over channels,
            clamped to >= 0 (range [0, 2]).

    Returns:
        (B, H, W) non-negative map on the input's device, float64 (float32 on MPS). 0 where the images agree; larger
        means more different.

    Raises:
        TypeError: inputs are not float tensors.
        ValueError: shapes differ or are not (B, 3, H, W), or ``kind`` is unknown.

    Example:
        >>> ref = torch.zeros(1, 3, 8, 8)
        >>> difference_map(ref, ref + 0.5).max().item()
        0.25
    """
    _check_pair(ref, dist)
    if kind not in _DIFF_TYPES:
        raise ValueError(f"kind: expected one of {_DIFF_TYPES}, got {kind!r}")
    dtype = _work_dtype(ref.device)
    x = ref.to(dtype)
    y = dist.to(dtype)
    if kind == "mse":
        return (x - y).square().mean(dim=1)  # (B, H, W)
    channels = x.shape[1]
    stats = _gaussian_blur(torch.cat([x, y, x * x, y * y, x * y], dim=1))  # (B, 5C, H, W)
    mu_x, mu_y, xx, yy, xy = stats.split(channels, dim=1)  # 5 x (B, C, H, W)
    var_x = xx - mu_x * mu_x
    var_y = yy - mu_y * mu_y
    cov = xy - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu_x * mu_x + mu_y * mu_y + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    )  # (B, C, H, W)
    return (1.0 - ssim.mean(dim=1)).clamp(min=0.0)  # (B, H, W)


def _check_pair(ref: object, dist: object, *, allow_uint8: bool = False) -> None:
    for name, x in (("ref", ref), ("dist", dist)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if not (x.is_floating_point() or (allow_uint8 and x.dtype == torch.uint8)):
            kinds = "a floating-point or uint8 tensor" if allow_uint8 else "a floating-point tensor"
            raise TypeError(f"{name}: expected {kinds}, got dtype {x.dtype}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{name}: expected shape (B, 3, H, W), got {tuple(x.shape)}")
    if ref.dtype != dist.dtype and torch.uint8 in (ref.dtype, dist.dtype):
        raise TypeError(f"ref and dist: expected both uint8 or both floating point, got {ref.dtype} and {dist.dtype}")
    if ref.shape != dist.shape:
        raise ValueError(f"ref and dist: expected the same shape, got {tuple(ref.shape)} and {tuple(dist.shape)}")
    if ref.device != dist.device:
        raise ValueError(f"ref and dist: expected the same device, got {ref.device} and {dist.device}")
    if ref.shape[0] < 1:
        raise ValueError(f"ref and dist: expected a batch of at least 1 image, got shape {tuple(ref.shape)}")


def _grid_shape(rows: int, cols: int, count: int, patch_size: int) -> tuple[int, int]:
    """Cells per side for a ``rows x cols`` candidate region holding ``count`` patches (see module docstring)."""
    side = min(float(patch_size), math.sqrt(_PATCHES_PER_CELL * rows * cols / count))
    return min(rows, max(1, math.ceil(rows / side))), min(cols, max(1, math.ceil(cols / side)))


def _levels(height: int, width: int, num_patches: int, patch_size: int, config: SamplingConfig) -> list[_Level]:
    """The pyramid levels that receive patches, with their counts and cell grids (see the module docstring)."""
    num_levels = effective_num_scales(height, width, patch_size, config.num_scales)
    levels = []
    for s, count in enumerate(scale_counts(num_patches, num_levels, config.scale_ratio)):
        if count == 0:
            continue
        h_s, w_s = height // 2**s, width // 2**s
        grid = _grid_shape(h_s - patch_size + 1, w_s - patch_size + 1, count, patch_size)
        levels.append(_Level(index=s, height=h_s, width=w_s, count=count, grid=grid))
    return levels


def _cell_edges(extent: int, cells: int, device: torch.device | None = None) -> Tensor:
    """(cells + 1,) long boundaries splitting ``range(extent)`` into ``cells`` runs whose lengths differ by <= 1."""
    return torch.arange(cells + 1, device=device) * extent // cells


def _footprint_weights(edges: Tensor, size: int, patch_size: int) -> Tensor:
    """(cells, size) long: for each cell run of top-left candidates, how many of them cover each pixel."""
    pixel = torch.arange(size, device=edges.device)  # (size,)
    first = torch.maximum(edges[:-1, None], pixel[None, :] - patch_size + 1)  # (cells, size)
    last = torch.minimum(edges[1:, None] - 1, pixel[None, :])  # (cells, size)
    return (last - first + 1).clamp(min=0)


def _as_float(x: Tensor) -> Tensor:
    """A uint8 image as float32 ``v / 255`` (the value decoding to float gives); a float image unchanged."""
    return x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x


def _strip_rows(height: int, width: int, levels: list[_Level]) -> int:
    """Rows per strip: at most ``_STRIP_PIXELS`` pixels, a multiple of the deepest level's pooling factor."""
    align = 2 ** max(level.index for level in levels)
    rows = max(align, (_STRIP_PIXELS // max(width, 1)) // align * align)
    return height if rows >= height else rows


def _diff_cell_masses(ref: Tensor, dist: Tensor, levels: list[_Level], patch_size: int, kind: str) -> Tensor:
    """Difference mass per cell for every level, on the input's device, returned as (B, total cells) CPU float64."""
    dtype = _work_dtype(ref.device)
    footprints = []
    for level in levels:
        gh, gw = level.grid
        row_edges = _cell_edges(level.height - patch_size + 1, gh, ref.device)  # (gh + 1,)
        col_edges = _cell_edges(level.width - patch_size + 1, gw, ref.device)  # (gw + 1,)
        rows = _footprint_weights(row_edges, level.height, patch_size).to(dtype)  # (gh, H_s)
        cols = _footprint_weights(col_edges, level.width, patch_size).to(dtype)  # (gw, W_s)
        footprints.append((rows, cols))
    if kind != "mse":
        x = _as_float(ref.detach()).to(dtype)
        y = _as_float(dist.detach()).to(dtype)
        masses = []
        for level, (rows, cols) in zip(levels, footprints):  # levels are 0, 1, ... (see sample_patches)
            if level.index > 0:
                x = F.avg_pool2d(x, 2)  # (B, 3, H_s, W_s)
                y = F.avg_pool2d(y, 2)
            diff = difference_map(x, y, kind)  # (B, H_s, W_s)
            masses.append((rows @ diff @ cols.T).flatten(1))  # (B, gh * gw)
        return torch.cat(masses, dim=1).to("cpu", torch.float64)  # (B, total cells): the one device -> CPU transfer

    # "mse": pooling is linear, so one pyramid of the signed difference replaces the two image pyramids, and it is
    # built strip by strip (strips aligned to the deepest pooling factor, so each pooled row comes from one strip).
    height = ref.shape[-2]
    step = _strip_rows(height, ref.shape[-1], levels)
    sums: list[Tensor | None] = [None] * len(levels)
    for top in range(0, height, step):
        x = _as_float(ref[..., top : top + step, :].detach()).to(dtype)
        delta = x - _as_float(dist[..., top : top + step, :].detach()).to(dtype)  # (B, 3, h, W); never in place
        for k, (level, (rows, cols)) in enumerate(zip(levels, footprints)):
            if level.index > 0:
                delta = F.avg_pool2d(delta, 2)  # (B, 3, h_s, W_s)
            first = top >> level.index
            diff = delta.square().mean(dim=1)  # (B, h_s, W_s)
            part = rows[:, first : first + diff.shape[1]] @ diff @ cols.T  # (B, gh, gw)
            sums[k] = part if sums[k] is None else sums[k] + part
    masses = [part.flatten(1) for part in sums]  # (B, gh * gw) each
    return torch.cat(masses, dim=1).to("cpu", torch.float64)  # (B, total cells): the one device -> CPU transfer


def viewing_factor(height: int, width: int, side: int = 256) -> int:
    """The viewing-distance factor ``F = max(1, round(min(H, W) / side))``, rounding halves up as MATLAB does.

    ``side = 256`` is the rule of SSIM's reference implementation and of VSI (a 384 x 512 image gets 2: 1.5 rounds up,
    unlike Python's ``round``; 640 x 640 gets 3).

    Args:
        height: image height H in pixels, >= 1.
        width: image width W in pixels, >= 1.
        side: the shorter side, in pixels, at which an image is seen whole, >= 1.

    Returns:
        F >= 1.
    """
    for name, value in (("height", height), ("width", width), ("side", side)):
        _check_int(name, value, minimum=1)
    return max(1, math.floor(min(height, width) / side + 0.5))


def viewing_downsample(*images: Tensor, side: int | None) -> tuple[tuple[Tensor, ...], int]:
    """Average ``F x F`` pixel blocks of every image, ``F = viewing_factor(H, W, side)`` (see the module docstring).

    Rows and columns beyond the last whole block (fewer than ``F``) are dropped, as ``avg_pool2d`` does. ``uint8``
    images are pooled from float32 row strips (the values of pooling ``v / 255``), so large 8-bit images never exist
    as full-size float copies. The operation is linear and differentiable; with ``F = 1`` (or ``side=None``) the
    inputs are returned unchanged.

    Args:
        *images: (B, C, H, W) images of one size (e.g. the reference and the distorted batch), float in [0, 1] or
            uint8; each is pooled once.
        side: the model config's ``downsample_side``; None keeps the native resolution.

    Returns:
        ``(images, F)``: the images as float of size ``(H // F, W // F)`` in the order given (the inputs themselves
        when ``F = 1``), and F.

    Raises:
        ValueError: no image, or images of different heights and widths.

    Example:
        >>> ref = torch.rand(1, 3, 512, 768)
        >>> (small, _), factor = viewing_downsample(ref, ref, side=256)
        >>> tuple(small.shape), factor
        ((1, 3, 256, 384), 2)
    """
    sizes = {tuple(image.shape[-2:]) for image in images}
    if len(sizes) != 1:
        raise ValueError(f"viewing_downsample: expected one or more images of one size, got sizes {sorted(sizes)}")
    if side is None:
        return images, 1
    height, width = sizes.pop()
    factor = viewing_factor(int(height), int(width), side)
    if factor == 1:
        return images, 1
    return tuple(_box_pool(image, factor) for image in images), factor


def _box_pool(image: Tensor, factor: int) -> Tensor:
    """``avg_pool2d(image, factor)``; a uint8 image is pooled by float32 row strips (whole blocks per strip)."""
    if image.dtype != torch.uint8:
        return F.avg_pool2d(image, factor)
    step = max(factor, (_STRIP_PIXELS // max(image.shape[-1], 1)) // factor * factor)
    usable = image.shape[-2] // factor * factor
    parts = [F.avg_pool2d(_as_float(image[..., top : min(top + step, usable), :]), factor)
             for top in range(0, usable, step)]
    return torch.cat(parts, dim=-2)


def _pooled_levels(image: Tensor, count: int) -> list[Tensor]:
    """Levels 0 .. count - 1 of ``image``'s 2x2 average pyramid; levels above 0 are float (uint8 pooled by strips)."""
    levels = [image]
    if count <= 1:
        return levels
    if image.dtype != torch.uint8:
        for _ in range(1, count):
            levels.append(F.avg_pool2d(levels[-1], 2))  # (B, 3, H_s, W_s)
        return levels
    align = 2 ** (count - 1)
    step = max(align, (_STRIP_PIXELS // max(image.shape[-1], 1)) // align * align)
    parts: list[list[Tensor]] = [[] for _ in range(count - 1)]
    for top in range(0, image.shape[-2], step):
        level = _as_float(image[..., top : top + step, :])
        for s in range(count - 1):
            level = F.avg_pool2d(level, 2)  # (B, 3, h_s, W_s)
            parts[s].append(level)
    levels.extend(torch.cat(p, dim=-2) for p in parts)
    return levels


def _level_probabilities(level: _Level, diff: Tensor | None, config: SamplingConfig, patch_size: int) -> Tensor:
    """(B, cells) float64 cell probabilities for one level; ``diff`` is (B, cells) difference masses or None."""
    gh, gw = level.grid
    hc = level.height - patch_size + 1
    wc = level.width - patch_size + 1
    row_edges = _cell_edges(hc, gh)
    col_edges = _cell_edges(wc, gw)
    rows = (row_edges[1:] - row_edges[:-1]).to(torch.float64)  # (gh,)
    cols = (col_edges[1:] - col_edges[:-1]).to(torch.float64)  # (gw,)
    prob = config.uniform_weight * (rows[:, None] * cols[None, :]).reshape(-1) / (hc * wc)  # (cells,)
    if config.centre_weight > 0:
        zero = torch.zeros(1, dtype=torch.float64)
        row_cum = torch.cat([zero, _centre_profile(level.height, patch_size, config.centre_sigma[0]).cumsum(0)])
        col_cum = torch.cat([zero, _centre_profile(level.width, patch_size, config.centre_sigma[1]).cumsum(0)])
        centre = (row_cum[row_edges[1:]] - row_cum[row_edges[:-1]])[:, None] * (
            col_cum[col_edges[1:]] - col_cum[col_edges[:-1]]
        )[None, :]  # (gh, gw)
        prob = prob + config.centre_weight * (centre / centre.sum()).reshape(-1)
    prob = prob.expand(1 if diff is None else diff.shape[0], -1)  # (B or 1, cells)
    if diff is not None:
        total = diff.sum(dim=1, keepdim=True)  # (B, 1)
        present = total > _DIFF_EPS * hc * wc * patch_size * patch_size
        prob = prob + config.diff_weight * torch.where(present, diff / total.clamp(min=1e-300), 0.0)
    empty = prob.sum(dim=1) <= 0  # only when the difference is the sole component and the images are identical
    if bool(empty.any()):
        _logger.debug("difference map is empty and no other component has weight; sampling uniformly")
        uniform = (rows[:, None] * cols[None, :]).reshape(1, -1)
        prob = torch.where(empty[:, None], uniform, prob)
    return prob


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
    got = _ceil_div(upper - offsets, _UNIT) - _ceil_div(lower - offsets, _UNIT)  # (B, K)
    return torch.empty_like(got).scatter_(1, order, got)


def _place(level: _Level, counts: Tensor, cell_offsets: Tensor, jitter: Tensor, patch_size: int) -> Tensor:
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
        patch_size: P.

    Returns:
        (B, n, 2) int64 (row, col) top-left corners in [0, H_s - P] x [0, W_s - P], ordered by cell (raster order).
    """
    batch, cells = counts.shape
    gh, gw = level.grid
    row_edges = _cell_edges(level.height - patch_size + 1, gh)
    col_edges = _cell_edges(level.width - patch_size + 1, gw)
    cell_top = row_edges[:-1].repeat_interleave(gw)  # (K,)
    cell_left = col_edges[:-1].repeat(gh)  # (K,)
    cell_rows = (row_edges[1:] - row_edges[:-1]).repeat_interleave(gw)  # (K,)
    cell_cols = (col_edges[1:] - col_edges[:-1]).repeat(gh)  # (K,)

    # Node grid per cell, shaped like the cell, with kr * kc >= n whenever the cell has room for n distinct patches.
    n = counts.clamp(min=1)  # (B, K)
    kr = torch.round(torch.sqrt(n.double() * cell_rows.double() / cell_cols.double())).to(torch.int64).clamp(min=1)
    kr = torch.minimum(kr, cell_rows.expand_as(kr))
    kc = torch.minimum(cell_cols.expand_as(kr), _ceil_div(n, kr))
    kr = torch.where(kr * kc < n, torch.minimum(cell_rows.expand_as(kr), _ceil_div(n, kc)), kr)  # (B, K)
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
    band = _ceil_div((cand // cols_c + 1) * kr_c, rows_c) - 1  # node row of the candidate
    band_top = band * rows_c // kr_c
    band_rows = (band + 1) * rows_c // kr_c - band_top  # >= 1 because kr <= R
    in_band = cand - band_top * cols_c  # (B*n,) in [0, band_rows * C)
    node_col = _ceil_div((in_band // band_rows + 1) * kc_c, cols_c) - 1
    node_left = node_col * cols_c // kc_c
    node_cols = (node_col + 1) * cols_c // kc_c - node_left  # >= 1 because kc <= C
    node_start = band_top * cols_c + band_rows * node_left  # node-major index of the node's first candidate
    node_area = band_rows * node_cols

    # Patches of this cell that fall in the same node: rank r among m, first one at index `first`.
    first = _ceil_div(n_c * node_start - omega_c, area_c)
    m = _ceil_div(n_c * (node_start + node_area) - omega_c, area_c) - first
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

    The algorithm, the cell rule, the scale rule and what "deterministic" relies on are described in the module
    docstring. The values of the images are not range-checked here (callers validate them).

    Args:
        ref: (B, 3, H, W) float reference images in [0, 1], H and W >= patch_size; or uint8 images (values
            ``v`` read as ``v / 255``, see "Memory on large images" in the module docstring).
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
    _check_pair(ref, dist, allow_uint8=True)
    num_patches = _check_int("num_patches", num_patches, minimum=1)
    if num_patches > _MAX_PATCHES:
        raise ValueError(f"num_patches: expected an int <= {_MAX_PATCHES}, got {num_patches}")
    patch_size = _check_int("patch_size", patch_size, minimum=1)
    if config is None:
        config = SamplingConfig()
    elif not isinstance(config, SamplingConfig):
        raise TypeError(f"config: expected a SamplingConfig or None, got {type(config).__name__}")
    batch, _, height, width = ref.shape
    _check_fits_a_patch(height, width, patch_size)
    if not isinstance(per_image_draws, bool):
        raise TypeError(f"per_image_draws: expected a bool, got {type(per_image_draws).__name__}")
    gen = _resolve_generator(seed, generator)
    device = ref.device
    draws = batch if per_image_draws else 1

    num_levels = effective_num_scales(height, width, patch_size, config.num_scales)
    levels = _levels(height, width, num_patches, patch_size, config)

    diff_masses = None
    if config.diff_weight > 0:
        diff_masses = _diff_cell_masses(ref, dist, levels, patch_size, config.diff_type)  # (B, total cells) CPU

    placed = []
    offset = 0
    for level in levels:
        cells = level.grid[0] * level.grid[1]
        diff = None if diff_masses is None else diff_masses[:, offset : offset + cells]  # (B, K)
        offset += cells
        prob = _level_probabilities(level, diff, config, patch_size).expand(batch, -1)  # (B, K)
        keys = torch.rand(draws, cells, generator=gen, dtype=torch.float64).expand(batch, -1)  # (B, K)
        offsets = torch.randint(0, _UNIT, (draws, 1), generator=gen, dtype=torch.int64).expand(batch, -1)  # (B, 1)
        cell_offsets = torch.rand(draws, cells, generator=gen, dtype=torch.float64).expand(batch, -1)  # (B, K)
        jitter = torch.rand(draws, level.count, generator=gen, dtype=torch.float64).expand(batch, -1)  # (B, n_s)
        counts = _allocate(prob, level.count, keys, offsets)  # (B, K)
        top_left = _place(level, counts, cell_offsets, jitter, patch_size)  # (B, n_s, 2)
        meta = torch.tensor([level.index, level.height, level.width], dtype=torch.int64)
        placed.append(torch.cat([top_left, meta.expand(batch, level.count, 3)], dim=2))  # (B, n_s, 5)

    # One host -> device transfer of (top, left, scale, H_s, W_s) per patch.
    packed = torch.cat(placed, dim=1).to(device, non_blocking=True)  # (B, N, 5)
    top_left = packed[..., 0:2]  # (B, N, 2)
    work = _work_dtype(device)
    pos = ((top_left.to(work) + patch_size / 2) / packed[..., 3:5].to(work)).to(torch.float32)  # (B, N, 2)
    pos = pos.clamp(max=_POS_MAX)

    # Levels are 0, 1, ..., len(levels) - 1: scale counts never increase, so only trailing levels can be empty.
    ref_levels, dist_levels = _pooled_levels(ref, len(levels)), _pooled_levels(dist, len(levels))
    ref_parts, dist_parts = [], []
    start = 0
    for level in levels:
        level_top_left = top_left[:, start : start + level.count]  # (B, n_s, 2)
        ref_parts.append(_as_float(_gather(ref_levels[level.index], level_top_left, patch_size)))  # (B, n_s, 3, P, P)
        dist_parts.append(_as_float(_gather(dist_levels[level.index], level_top_left, patch_size)))
        start += level.count
    del ref_levels, dist_levels
    ref_patches = ref_parts[0] if len(ref_parts) == 1 else torch.cat(ref_parts, dim=1)  # (B, N, 3, P, P)
    dist_patches = dist_parts[0] if len(dist_parts) == 1 else torch.cat(dist_parts, dim=1)

    scale = packed[..., 2].contiguous() if num_levels > 1 else None  # (B, N)
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
    elif _check_int("patch_size", patch_size, minimum=1) != inferred:
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


def sampling_density(
    ref: Tensor,
    dist: Tensor,
    num_patches: int,
    *,
    patch_size: int = 16,
    config: SamplingConfig | None = None,
) -> Tensor:
    """Expected number of CAPS patches covering each pixel in one draw of :func:`sample_patches`.

    This is the exact expectation of the sampler above, not an approximation of it: the probability map (centre bias,
    difference, uniform) is allocated to cells, every cell receives ``n * mass`` patches on average (up to the
    ``2**-32`` quantisation), and inside a cell every candidate position is equally likely. The density of patch
    top-left corners is therefore constant within each cell; summing it over the ``P x P`` footprint of each position
    gives the coverage of every pixel. A level-``s`` patch covers ``(P * 2**s)**2`` full-resolution pixels (the
    ``2**s`` blocks its pooled pixels came from); pixels cut off by the pooling's floor are never covered at that level.

    Args:
        ref: (B, 3, H, W) float reference images in [0, 1], H and W >= patch_size.
        dist: (B, 3, H, W) float distorted images, same shape and device.
        num_patches: patches per image N, as passed to :func:`sample_patches`.
        patch_size: patch side P in pixels.
        config: sampling weights and scales; ``SamplingConfig()`` if None.

    Returns:
        (B, H, W) float32 tensor on the input's device, >= 0: the expected number of drawn patches that contain each
        pixel (average over draws of the coverage count). It sums to ``sum_s n_s * (P * 2**s)**2`` over the image
        (``N * P**2`` for one scale). Higher means the metric looks there more often.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: shapes or devices differ, the images are not (B, 3, H, W), an image is smaller than a patch, or
            ``num_patches`` is out of range.

    Example:
        >>> ref = torch.rand(1, 3, 64, 96)
        >>> density = sampling_density(ref, ref, 32)
        >>> tuple(density.shape), round(float(density.sum()))
        ((1, 64, 96), 8192)
    """
    _check_pair(ref, dist)
    num_patches = _check_int("num_patches", num_patches, minimum=1)
    if num_patches > _MAX_PATCHES:
        raise ValueError(f"num_patches: expected an int <= {_MAX_PATCHES}, got {num_patches}")
    patch_size = _check_int("patch_size", patch_size, minimum=1)
    if config is None:
        config = SamplingConfig()
    elif not isinstance(config, SamplingConfig):
        raise TypeError(f"config: expected a SamplingConfig or None, got {type(config).__name__}")
    batch, _, height, width = ref.shape
    if height < patch_size or width < patch_size:
        raise ValueError(
            f"image smaller than a patch: expected height and width >= patch_size={patch_size}, got {height}x{width}"
        )
    levels = _levels(height, width, num_patches, patch_size, config)
    diff_masses = None
    if config.diff_weight > 0:
        diff_masses = _diff_cell_masses(ref, dist, levels, patch_size, config.diff_type)  # (B, total cells) CPU

    dtype = _work_dtype(ref.device)
    box = torch.ones(1, 1, patch_size, 1, dtype=dtype, device=ref.device)  # (1, 1, P, 1)
    density = torch.zeros(batch, height, width, dtype=dtype, device=ref.device)
    offset = 0
    for level in levels:
        gh, gw = level.grid
        diff = None if diff_masses is None else diff_masses[:, offset : offset + gh * gw]  # (B, K)
        offset += gh * gw
        prob = _level_probabilities(level, diff, config, patch_size).expand(batch, -1)  # (B, K)
        row_edges = _cell_edges(level.height - patch_size + 1, gh)  # (gh + 1,)
        col_edges = _cell_edges(level.width - patch_size + 1, gw)  # (gw + 1,)
        rows = row_edges[1:] - row_edges[:-1]  # (gh,)
        cols = col_edges[1:] - col_edges[:-1]  # (gw,)
        area = (rows[:, None] * cols[None, :]).reshape(-1).to(torch.float64)  # (K,)
        per_candidate = level.count * prob / prob.sum(dim=1, keepdim=True) / area  # (B, K)
        top = per_candidate.view(batch, gh, gw).repeat_interleave(rows, dim=1).repeat_interleave(cols, dim=2)
        top = top.to(ref.device, dtype)[:, None]  # (B, 1, H_s - P + 1, W_s - P + 1)
        cover = F.conv2d(top, box, padding=(patch_size - 1, 0))  # (B, 1, H_s, W_s - P + 1)
        cover = F.conv2d(cover, box.transpose(2, 3), padding=(0, patch_size - 1))[:, 0]  # (B, H_s, W_s)
        factor = 2**level.index
        cover = cover.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)  # (B, H_s * 2**s, W_s * 2**s)
        density[:, : cover.shape[1], : cover.shape[2]] += cover
    return density.float()
