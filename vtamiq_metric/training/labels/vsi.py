"""VSI, the Visual Saliency-induced Index (Zhang, Shen & Li, IEEE TIP 2014), following the official MATLAB code.

VSI is the weak label of KADIS-700k in VTAMIQ. This is our own batched PyTorch implementation of the MATLAB
``VSI.m`` (Lin Zhang, 2013) as described in ``docs/background/datasets.md`` §2; it reproduces the MATLAB steps that
other ports change (see "Differences from piq" below).

Algorithm, for RGB images with values in [0, 255] (MATLAB works on ``double`` copies of the uint8 images, so no
intermediate value is ever rounded; the only effect of MATLAB's uint8 input is that pixel values are integers):

1. Saliency (SDSP, Zhang, Gu & Li, ICIP 2013) of each image: MATLAB ``imresize(..., [256 256], 'bilinear')``
   per channel (antialiased when shrinking), CIE L*a*b* with the sRGB/D65 matrix but the D50 white
   ``(0.9642, 1, 0.8251)``, a log-Gabor band-pass prior on L, a*, b* (FFT), a Gaussian centre prior and a
   "warm colour" prior on min-max-normalised a*, b*; the product is resized back (bilinear) and min-max normalised
   to [0, 1] (``mat2gray``).
2. Opponent colour channels ``L = 0.06R + 0.63G + 0.27B``, ``M = 0.30R + 0.04G - 0.35B``,
   ``N = 0.34R - 0.60G + 0.17B``.
3. With ``F = max(1, round(min(H, W) / 256))`` (MATLAB rounds halves away from zero), L, M, N and both saliency maps
   are filtered by an F x F box (``conv2(X, ones(F)/F^2, 'same')``, zero border) and sampled at ``X(1:F:end, 1:F:end)``.
4. Scharr gradient magnitude of L (``conv2 'same'``, zero border).
5. ``S = S_G^0.4 * S_VS * real((S_M * S_N)^0.02)`` with ``S_X = (2 X1 X2 + C) / (X1^2 + X2^2 + C)``,
   C = 386 (gradient), 1.27 (saliency), 130 (M, N); ``VSI = sum(S * w) / sum(w)`` with ``w = max(VS1, VS2)``.

Differences from piq (``piq.vsi``, docs/background/datasets.md §2), all on purpose because MATLAB does it this way: the
resize to 256 x 256 is antialiased (piq: plain bilinear), the resize back uses MATLAB's pixel-centre mapping (piq:
``align_corners=True``), the F x F box grid starts at the first pixel with a zero border (piq: shifted by one pixel
with a replicated border) and F uses half-away-from-zero rounding (piq: Python's half-to-even ``round``).

Degenerate cases where MATLAB returns NaN (documented deviations): if a* (or b*) is constant over the 256 x 256
image, its normalised channel is taken as 0 instead of 0/0; if both saliency maps are zero everywhere, the
unweighted mean of S is returned instead of 0/0.
"""

from __future__ import annotations

import functools
import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from vtamiq_metric.sampling import viewing_factor
from vtamiq_metric.training.labels._common import check_pair

__all__ = ["sdsp", "vsi", "vsi_downsample_factor"]

_logger = logging.getLogger(__name__)

# Constants of the official VSI.m.
_C_VS = 1.27
_C_GM = 386.0
_C_CHROM = 130.0
_ALPHA = 0.40
_LAMBDA = 0.020
_SIGMA_F = 1.34
_OMEGA_0 = 0.021
_SIGMA_D = 145.0
_SIGMA_C = 0.001
_SDSP_SIZE = 256

# sRGB (D65) -> XYZ matrix and the D50 reference white used by VSI's RGB2Lab (no chromatic adaptation).
_RGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
_WHITE_D50 = (0.9642, 1.0, 0.8251)
_LAB_EPSILON = 0.008856
_LAB_KAPPA = 903.3

_RGB_TO_LMN = (
    (0.06, 0.63, 0.27),
    (0.30, 0.04, -0.35),
    (0.34, -0.60, 0.17),
)
# Scharr kernel of VSI.m (x direction); the y kernel is its transpose.
_SCHARR_X = ((3.0, 0.0, -3.0), (10.0, 0.0, -10.0), (3.0, 0.0, -3.0))


def vsi_downsample_factor(height: int, width: int) -> int:
    """Box-filter and stride factor of VSI: ``F = max(1, round(min(H, W) / 256))`` with MATLAB rounding
    (:func:`vtamiq_metric.sampling.viewing_factor`, which models with ``downsample_side=256`` share).

    Args:
        height: image height H in pixels (>= 1).
        width: image width W in pixels (>= 1).

    Returns:
        F >= 1. For example 1 for 48 x 64 and 384 x 383, 2 for 384 x 512 (1.5 rounds up, unlike Python's ``round``),
        3 for 640 x 640.
    """
    return viewing_factor(height, width, 256)


def _triangle(x: np.ndarray) -> np.ndarray:
    """MATLAB's bilinear (triangle) kernel: ``1 - |x|`` on [-1, 1], 0 elsewhere."""
    return np.where((x >= -1.0) & (x < 0.0), x + 1.0, 0.0) + np.where((x >= 0.0) & (x <= 1.0), 1.0 - x, 0.0)


@functools.lru_cache(maxsize=64)
def _imresize_taps(in_len: int, out_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Taps of MATLAB ``imresize(..., 'bilinear')`` along one axis.

    MATLAB maps output pixel ``x`` (1-based) to input coordinate ``u = x / s + (1 - 1 / s) / 2`` with
    ``s = out_len / in_len``; when shrinking (s < 1) with its default antialiasing, the triangle kernel is stretched
    to width 2 / s and scaled by s. Weights are normalised per output pixel and out-of-range taps are mirrored
    (symmetric padding: ... 2 1 | 1 2 ... n | n n-1 ...).

    Args:
        in_len: input length (>= 1).
        out_len: output length (>= 1).

    Returns:
        ``(index, weight)``, both (out_len, P) on the CPU: 0-based int64 input indices and float64 weights, so that
        ``resized[i] = sum_p weight[i, p] * signal[index[i, p]]``.
    """
    scale = out_len / in_len
    kernel_width = 2.0
    if scale < 1.0:
        kernel_width = kernel_width / scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    num_taps = math.ceil(kernel_width) + 2
    taps = left[:, None] + np.arange(num_taps, dtype=np.float64)[None, :]  # (out_len, P), 1-based
    distance = u[:, None] - taps
    weights = scale * _triangle(scale * distance) if scale < 1.0 else _triangle(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])  # 0-based symmetric extension
    index = mirror[np.mod(taps.astype(np.int64) - 1, 2 * in_len)]
    keep = np.abs(weights).max(axis=0) > 0  # drop taps that are zero for every output pixel
    return torch.from_numpy(np.ascontiguousarray(index[:, keep])), torch.from_numpy(
        np.ascontiguousarray(weights[:, keep])
    )


def _resize_rows(x: torch.Tensor, out_len: int) -> torch.Tensor:
    """MATLAB bilinear ``imresize`` along the rows of ``x`` (..., n, W) -> (..., out_len, W).

    Each tap gathers whole rows (contiguous copies), which is faster than a dense matrix product on the CPU.
    """
    index, weight = _imresize_taps(x.shape[-2], out_len)
    index = index.to(x.device)
    weight = weight.to(device=x.device, dtype=x.dtype)
    out = x.index_select(-2, index[:, 0]) * weight[:, 0, None]  # (..., out_len, W)
    for tap in range(1, index.shape[1]):  # a handful of taps, not a loop over pixels or images
        out += x.index_select(-2, index[:, tap]) * weight[:, tap, None]
    return out


def _imresize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """MATLAB ``imresize(image, size, 'bilinear')`` of every (H, W) plane of ``image`` (..., H, W).

    Both axes are resized in float64 without intermediate rounding, so the axis order does not matter.
    """
    resized = _resize_rows(image.contiguous(), size[0])  # (..., size[0], W)
    resized = _resize_rows(resized.transpose(-2, -1).contiguous(), size[1])  # (..., size[1], size[0])
    return resized.transpose(-2, -1).contiguous()  # (..., size[0], size[1])


def _rgb_to_lab(rgb255: torch.Tensor) -> torch.Tensor:
    """VSI's ``RGB2Lab``: sRGB in [0, 255] -> CIE L*a*b* relative to the D50 white, (B, 3, H, W) -> (B, 3, H, W).

    The sRGB values are linearised and mapped to XYZ with the D65 matrix, then divided by the D50 white without any
    chromatic adaptation, as the MATLAB code does (so RGB white maps to about (100, -2.4, -19.4), not (100, 0, 0)).
    """
    v = rgb255 / 255.0
    linear = torch.where(v <= 0.04045, v / 12.92, ((v.clamp(min=0.0) + 0.055) / 1.055) ** 2.4)
    matrix = torch.tensor(_RGB_TO_XYZ, dtype=rgb255.dtype, device=rgb255.device)
    white = torch.tensor(_WHITE_D50, dtype=rgb255.dtype, device=rgb255.device).view(1, 3, 1, 1)
    xyz = torch.einsum("ij,bjhw->bihw", matrix, linear) / white  # (B, 3, H, W): X/Xr, Y/Yr, Z/Zr
    f = torch.where(xyz > _LAB_EPSILON, xyz.clamp(min=0.0) ** (1.0 / 3.0), (_LAB_KAPPA * xyz + 16.0) / 116.0)
    fx, fy, fz = f.unbind(dim=1)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


@functools.lru_cache(maxsize=8)
def _log_gabor(rows: int, cols: int) -> torch.Tensor:
    """SDSP's log-Gabor transfer function, unshifted (DC at [0, 0]), (rows, cols) float64 on the CPU.

    Normalised frequencies ``((1:n) - (fix(n/2) + 1)) / (n - mod(n, 2))`` per axis; frequencies with radius > 0.5 are
    zeroed, ``LG = exp(-log(r / omega0)^2 / (2 sigmaF^2))`` elsewhere, and the DC term is 0.
    """
    u_cols = (np.arange(1, cols + 1) - (cols // 2 + 1)) / (cols - cols % 2)
    u_rows = (np.arange(1, rows + 1) - (rows // 2 + 1)) / (rows - rows % 2)
    u1, u2 = np.meshgrid(u_cols, u_rows)  # (rows, cols) each
    inside = u1**2 + u2**2 <= 0.25
    radius = np.fft.ifftshift(np.sqrt(u1**2 + u2**2) * inside)
    response = np.zeros_like(radius)
    positive = radius > 0.0
    response[positive] = np.exp(-(np.log(radius[positive] / _OMEGA_0) ** 2) / (2.0 * _SIGMA_F**2))
    response[0, 0] = 0.0
    return torch.from_numpy(response)


def _min_max(x: torch.Tensor, constant_value: str) -> torch.Tensor:
    """Min-max normalise each (H, W) plane of ``x`` (B, H, W) to [0, 1].

    Args:
        x: (B, H, W) tensor.
        constant_value: what a constant plane becomes: ``"zero"`` or ``"clip"`` (MATLAB ``mat2gray``: the value
            itself clipped to [0, 1]).
    """
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    safe_span = torch.where(span > 0, span, torch.ones_like(span))
    normalised = (x - lo) / safe_span
    fallback = torch.zeros_like(x) if constant_value == "zero" else x.clamp(0.0, 1.0)
    return torch.where(span > 0, normalised, fallback)


def _sdsp255(rgb255: torch.Tensor) -> torch.Tensor:
    """SDSP saliency of (B, 3, H, W) float RGB in [0, 255] -> (B, H, W) in [0, 1]."""
    height, width = rgb255.shape[-2:]
    small = _imresize(rgb255, (_SDSP_SIZE, _SDSP_SIZE))  # (B, 3, 256, 256)
    lab = _rgb_to_lab(small)  # (B, 3, 256, 256)

    # Frequency prior. The log-Gabor response is real and even, so the real part of the full inverse FFT equals the
    # inverse real FFT of the half spectrum.
    response = _log_gabor(_SDSP_SIZE, _SDSP_SIZE).to(device=lab.device, dtype=lab.dtype)
    half = response[:, : _SDSP_SIZE // 2 + 1]
    band = torch.fft.irfft2(torch.fft.rfft2(lab) * half, s=(_SDSP_SIZE, _SDSP_SIZE))  # (B, 3, 256, 256)
    frequency_prior = band.pow(2).sum(dim=1).sqrt()  # (B, 256, 256)

    # Location prior around (rows/2, cols/2) with 1-based pixel coordinates.
    coords = torch.arange(1, _SDSP_SIZE + 1, dtype=lab.dtype, device=lab.device) - _SDSP_SIZE / 2
    location_prior = torch.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / _SIGMA_D**2)  # (256, 256)

    # Colour prior on min-max-normalised a*, b*.
    a_norm = _min_max(lab[:, 1], constant_value="zero")
    b_norm = _min_max(lab[:, 2], constant_value="zero")
    colour_prior = 1.0 - torch.exp(-(a_norm**2 + b_norm**2) / _SIGMA_C**2)  # (B, 256, 256)

    saliency = frequency_prior * location_prior * colour_prior
    saliency = _imresize(saliency, (height, width))  # (B, H, W)
    return _min_max(saliency, constant_value="clip")


def _box_downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``X = conv2(X, ones(F)/F^2, 'same'); X = X(1:F:end, 1:F:end)`` on (B, C, H, W) -> (B, C, ceil(H/F), ceil(W/F)).

    MATLAB's 'same' window for output pixel i covers input pixels ``i + floor(F/2) - F + 1 ... i + floor(F/2)``
    (0-based), with zeros outside the image.
    """
    if factor == 1:
        return x
    before = factor - 1 - factor // 2
    after = factor // 2
    padded = F.pad(x, (before, after, before, after))  # zero border
    return F.avg_pool2d(padded, kernel_size=factor, stride=factor)


def _similarity(a: torch.Tensor, b: torch.Tensor, constant: float) -> torch.Tensor:
    return (2.0 * a * b + constant) / (a * a + b * b + constant)


def _features(rgb255: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image VSI feature maps of (B, 3, H, W) float64 RGB in [0, 255], after the F x F box downsampling.

    Returns:
        ``(saliency, gradient, m, n)``, each (B, ceil(H/F), ceil(W/F)) float64.
    """
    height, width = rgb255.shape[-2:]
    factor = vsi_downsample_factor(height, width)
    saliency = _box_downsample(_sdsp255(rgb255).unsqueeze(1), factor)[:, 0]  # (B, h, w)
    # The opponent transform is linear, so it commutes with the (linear) box downsampling.
    rgb_small = _box_downsample(rgb255, factor)  # (B, 3, h, w)
    lmn = torch.einsum("ij,bjhw->bihw", torch.tensor(_RGB_TO_LMN, dtype=rgb255.dtype, device=rgb255.device), rgb_small)

    scharr_x = torch.tensor(_SCHARR_X, dtype=rgb255.dtype, device=rgb255.device) / 16.0
    kernels = torch.stack([scharr_x, scharr_x.transpose(0, 1)]).unsqueeze(1)  # (2, 1, 3, 3)
    # conv2d correlates; MATLAB's conv2 convolves, which only flips the sign of each derivative.
    derivatives = F.conv2d(lmn[:, :1], kernels, padding=1)  # (B, 2, h, w), zero border
    gradient = derivatives.pow(2).sum(dim=1).sqrt()  # (B, h, w)
    return saliency, gradient, lmn[:, 1], lmn[:, 2]


def sdsp(image: torch.Tensor) -> torch.Tensor:
    """SDSP visual saliency map (Zhang, Gu & Li, ICIP 2013) with the parameters and steps of VSI's MATLAB code.

    Args:
        image: (B, 3, H, W) float RGB in [0, 1], any device.

    Returns:
        (B, H, W) float64 saliency in [0, 1] (min-max normalised per image; higher = more salient).

    Raises:
        TypeError: if ``image`` is not a floating-point tensor.
        ValueError: if its shape is not (B, 3, H, W) or its values are outside [0, 1].
    """
    check_pair(image, image)
    return _sdsp255(image.to(torch.float64) * 255.0)


def vsi(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Visual Saliency-induced Index (VSI) of each (ref, dist) pair, faithful to the official MATLAB ``VSI.m``.

    Inputs are scaled by 255 to the 8-bit range the MATLAB constants assume; all computations run in float64 on the
    inputs' device, batched over B (no Python loop over images).

    Args:
        ref: (B, 3, H, W) float RGB reference images in [0, 1] (first argument, as in MATLAB ``VSI(ref, dist)``).
            A batch of 1 is compared with every image of ``dist`` (its features are computed once).
        dist: (B, 3, H, W) float RGB distorted images in [0, 1], on the device of ``ref``.

    Returns:
        (B,) float64 similarity in [0, 1]; 1 = identical, lower = more distorted (higher is better).

    Raises:
        TypeError: if an input is not a floating-point tensor.
        ValueError: if shapes differ or are not (B, 3, H, W), devices differ, or values are outside [0, 1].

    Example:
        >>> ref = torch.rand(2, 3, 64, 64)
        >>> vsi(ref, ref)
        tensor([1., 1.], dtype=torch.float64)
    """
    check_pair(ref, dist)
    batch = dist.shape[0]
    if batch == 0:
        return torch.zeros(0, dtype=torch.float64, device=dist.device)
    if ref.shape[0] == batch:
        both = _features(torch.cat([ref, dist], dim=0).to(torch.float64) * 255.0)  # 4 x (2B, h, w)
        ref_maps = tuple(x[:batch] for x in both)
        dist_maps = tuple(x[batch:] for x in both)
    else:  # one reference for the whole batch; broadcast its (1, h, w) maps
        ref_maps = _features(ref.to(torch.float64) * 255.0)
        dist_maps = _features(dist.to(torch.float64) * 255.0)
    vs1, gm1, m1, n1 = ref_maps
    vs2, gm2, m2, n2 = dist_maps

    s_vs = _similarity(vs1, vs2, _C_VS)  # (B, h, w)
    s_gm = _similarity(gm1, gm2, _C_GM)
    s_mn = _similarity(m1, m2, _C_CHROM) * _similarity(n1, n2, _C_CHROM)
    # real((S_M S_N)^lambda) for a possibly negative base: |x|^lambda * cos(pi * lambda) where x < 0.
    chroma = s_mn.abs().pow(_LAMBDA) * torch.where(s_mn < 0, math.cos(math.pi * _LAMBDA), 1.0)
    similarity = s_gm.pow(_ALPHA) * s_vs * chroma  # (B, h, w)

    weight = torch.maximum(vs1, vs2)  # (B, h, w)
    weight_sum = weight.sum(dim=(-2, -1))  # (B,)
    weighted = (similarity * weight).sum(dim=(-2, -1)) / torch.where(weight_sum > 0, weight_sum, 1.0)
    result = torch.where(weight_sum > 0, weighted, similarity.mean(dim=(-2, -1)))
    if _logger.isEnabledFor(logging.DEBUG) and bool((weight_sum <= 0).any()):
        _logger.debug("vsi: both saliency maps are zero for some pairs (MATLAB: NaN); used the unweighted mean of S")
    return result.clamp(0.0, 1.0)
