"""The teacher of the bundled model: VSI, S-CIELAB and MS-SSIM, each divided by its spread, summed.

No single full-reference measure is safe as the only label of a metric that will also be optimised as a loss:

- VSI (:func:`.vsi.vsi`) ranks structural and saliency-weighted damage well, but is nearly blind to colour casts and
  contrast cuts (adding a strong cast on top of noise *raises* VSI);
- the mean S-CIELAB difference (:func:`scielab`: CIEDE2000 after the eye's spatial filtering) counts colour and
  brightness differences as they are seen from the viewing distance, but misses most blur;
- 1 - MS-SSIM (:func:`ms_ssim_distortion`) is a multi-scale structural measure that orders stacked distortions
  well, but ignores hue.

The teacher's distortion is ``D = (1 - VSI) / s_vsi + dE / s_de + (1 - MS-SSIM) / s_ms`` with the spreads
:data:`SPREADS` (the standard deviation of each measure over KADIS-style pairs of the bundled model's training crops,
measured once and frozen), so that each measure has the same weight over the data the model learns from. ``D = 0``
for identical images and grows with the damage. As a registered label (``LABELS["teacher"]``) it is returned as the
similarity ``1 / (1 + D)`` in (0, 1] (1 = identical), the direction of every label of
:mod:`vtamiq_metric.training.labels`; :func:`teacher_distortion` returns ``D`` itself.

Viewing distance: all three measures see the image at the scale of VSI's and SSIM's reference code. VSI averages
``F x F`` blocks itself (``F = round(min(H, W) / 256)``); S-CIELAB and MS-SSIM are computed on the same block
averages (:func:`vtamiq_metric.sampling.viewing_downsample`), and S-CIELAB's filters assume that such an image
spans :data:`SAMPLES_PER_DEGREE` pixels per degree of visual angle.

Implementations: the sRGB <-> XYZ <-> CIE L*a*b* (D65) conversions and CIEDE2000 (Sharma, Wu & Dalal 2005) are
scikit-image's (``skimage.color``), the Gaussian filters scipy's (``scipy.ndimage.gaussian_filter``, reflected
borders); S-CIELAB's opponent transform and filter constants are Zhang & Wandell's (1997). MS-SSIM follows piq's
``multi_scale_ssim`` exactly (the paper's 11 x 11 Gaussian window and scale weights; the tests compare the two),
computed with separable float64 filters, using as many of the five scales as the image allows (at least one), the
weights of the scales used renormalised to sum to 1. scikit-image and scipy are dependencies of the ``train`` extra.
"""

from __future__ import annotations

import math
import types

import numpy as np
import torch

from vtamiq_metric.sampling import viewing_downsample
from vtamiq_metric.training.labels._common import check_pair
from vtamiq_metric.training.labels.vsi import vsi

__all__ = ["SAMPLES_PER_DEGREE", "SPREADS", "ms_ssim_distortion", "scielab", "teacher", "teacher_components",
           "teacher_distortion"]

#: Spread (standard deviation) of each measure over KADIS-style pairs: 1,200 pairs drawn from the bundled model's
#: training crops, the 24 KADID types used by the bundled model (all but denoising) at the five levels, measured with
#: ``examples/bundled_model/teacher_spreads.py`` (seed 0). Frozen: the shipped model's labels were computed with
#: these values, and ``tests/training/labels/test_teacher.py`` pins them.
SPREADS: dict[str, float] = {"vsi": 0.0503, "scielab": 7.18, "ms_ssim": 0.140}

_WINDOW_SIZE = 11
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang, Simoncelli & Bovik 2003
_VIEWING_SIDE = 256  # the side of SSIM's and VSI's reference code (and of the bundled model's downsample_side)


def _skimage_color() -> types.ModuleType:
    try:
        from skimage import color
    except ImportError as exc:  # scikit-image is a dependency of the train extra
        raise ImportError("the teacher label needs scikit-image: pip install 'vtamiq-metric[train]'") from exc
    return color


def _viewed(ref: torch.Tensor, dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked float64 inputs, the reference expanded to the batch, both at the viewing distance, clamped to [0, 1]."""
    check_pair(ref, dist)
    ref = ref.to(torch.float64).expand_as(dist)
    dist = dist.to(torch.float64)
    (ref, dist), _ = viewing_downsample(ref, dist, side=_VIEWING_SIDE)
    return ref.clamp(0.0, 1.0), dist.clamp(0.0, 1.0)


#: S-CIELAB (Zhang & Wandell 1997): XYZ -> opponent channels (luminance, red-green, blue-yellow).
_SCIELAB_OPPONENT = np.array([[0.279, 0.72, -0.107], [-0.449, 0.29, -0.077], [0.086, -0.59, 0.501]])
#: S-CIELAB's spatial filters: per opponent channel, (weight, spread in degrees of visual angle) of each Gaussian;
#: each channel's weights are normalised to sum to 1, so a uniform colour passes unchanged.
_SCIELAB_FILTERS = (((0.921, 0.0283), (0.105, 0.133), (-0.108, 4.336)),
                    ((0.531, 0.0392), (0.330, 0.494)),
                    ((0.488, 0.0536), (0.371, 0.386)))
#: Samples per degree of visual angle at the viewing distance: the images (after the ``F x F`` averaging, so about
#: 256 pixels on the shorter side) are taken to span 16 degrees, an image seen whole on a screen.
SAMPLES_PER_DEGREE = 16.0


def _scielab_lab(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) sRGB in [0, 1] -> (H, W, 3) CIE L*a*b* (D65) of the S-CIELAB-filtered image."""
    from scipy.ndimage import gaussian_filter

    color = _skimage_color()
    opponent = color.rgb2xyz(rgb) @ _SCIELAB_OPPONENT.T  # (H, W, 3)
    filtered = np.empty_like(opponent)
    for channel, gaussians in enumerate(_SCIELAB_FILTERS):
        total = sum(weight for weight, _ in gaussians)
        plane = opponent[..., channel]
        filtered[..., channel] = sum(weight / total * gaussian_filter(plane, spread * SAMPLES_PER_DEGREE,
                                                                      mode="reflect") for weight, spread in gaussians)
    xyz = filtered @ np.linalg.inv(_SCIELAB_OPPONENT).T
    return color.xyz2lab(np.clip(xyz, 0.0, None))


def scielab(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Mean S-CIELAB colour difference per pair (CIEDE2000 after the eye's spatial filtering), at the viewing distance.

    Both images are converted to S-CIELAB's opponent channels, each channel is filtered with the published sums of
    Gaussians (Zhang & Wandell 1997) at :data:`SAMPLES_PER_DEGREE`, converted back to CIE L*a*b* (D65), and the
    CIEDE2000 difference (Sharma, Wu & Dalal 2005) is averaged over the pixels. The filtering removes what the eye
    does not resolve at that distance (pixel noise weighs little, mostly through its luminance), while colour casts,
    brightness shifts and desaturation keep their full weight.

    Args:
        ref: (B, 3, H, W) float sRGB in [0, 1] (or (1, 3, H, W), compared with every image of ``dist``; it is then
            filtered once).
        dist: (B, 3, H, W) float sRGB in [0, 1], same device.

    Returns:
        (B,) float64 mean Delta E 2000: 0 = identical, higher = more different (about 1 is a just-noticeable
        difference of uniform colour patches).

    Raises:
        TypeError: if an input is not a floating-point tensor.
        ValueError: on wrong shapes, different devices, or values outside [0, 1].
    """
    color = _skimage_color()
    shared = ref.shape[0] == 1
    ref, dist = _viewed(ref, dist)
    ref_np, dist_np = ref.cpu().numpy(), dist.cpu().numpy()
    out = []
    lab_ref = None
    for index, d in enumerate(dist_np):
        if lab_ref is None or not shared:
            lab_ref = _scielab_lab(np.moveaxis(ref_np[index], 0, -1))
        lab_dist = _scielab_lab(np.moveaxis(d, 0, -1))
        out.append(float(np.mean(color.deltaE_ciede2000(lab_ref, lab_dist))))
    return torch.tensor(out, dtype=torch.float64, device=dist.device)


def _ms_ssim_levels(height: int, width: int) -> int:
    """Scales that fit: the window must fit the smallest one, ``min(H, W) >= 10 * 2 ** (levels - 1) + 1``."""
    side = min(height, width)
    if side < _WINDOW_SIZE:
        raise ValueError(f"expected images of at least {_WINDOW_SIZE} x {_WINDOW_SIZE} pixels for MS-SSIM, got "
                         f"{height} x {width}")
    return min(len(_MS_SSIM_WEIGHTS), 1 + int(math.floor(math.log2((side - 1) / (_WINDOW_SIZE - 1)))))


def _gaussian_window() -> np.ndarray:
    """The 11-tap Gaussian (sigma 1.5) of SSIM, normalised to sum 1; its outer product is piq's 2-D window."""
    taps = np.arange(_WINDOW_SIZE, dtype=np.float64) - (_WINDOW_SIZE - 1) / 2
    window = np.exp(-(taps**2) / (2 * 1.5**2))
    return window / window.sum()


def _valid_filter(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """(..., H, W) -> (..., H - 10, W - 10): separable Gaussian filtering without padding ('valid')."""
    from scipy.ndimage import correlate1d

    half = _WINDOW_SIZE // 2
    image = correlate1d(image, window, axis=-1, mode="constant")[..., half:-half]
    return correlate1d(image, window, axis=-2, mode="constant")[..., half:-half, :]


def _ms_ssim(ref: np.ndarray, dist: np.ndarray, levels: int) -> np.ndarray:
    """MS-SSIM of (B, C, H, W) float64 arrays with ``levels`` scales: (B,), the mean over channels.

    The definition and every convention of piq's ``multi_scale_ssim`` (which the tests compare against, to 1e-12):
    K1 = 0.01, K2 = 0.03, 'valid' filtering, before each coarser scale a replicated first row and column when either
    side is odd, then 2 x 2 averages; contrast-structure at every scale but the last, full SSIM at the last, each
    clipped at 0; the weighted geometric mean per channel, then the mean over channels. Filtering is separable in
    float64 (scipy), 30-40 times faster than piq's 2-D depthwise convolution on the CPU, which matters for labelling
    tens of thousands of pairs.
    """
    weights = np.asarray(_MS_SSIM_WEIGHTS[:levels])
    weights = weights / weights.sum()
    window = _gaussian_window()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for level in range(levels):
        if level:
            if ref.shape[-2] % 2 or ref.shape[-1] % 2:
                pad = [(0, 0)] * (ref.ndim - 2) + [(1, 0), (1, 0)]
                ref, dist = np.pad(ref, pad, mode="edge"), np.pad(dist, pad, mode="edge")
            height, width = ref.shape[-2] // 2, ref.shape[-1] // 2
            ref, dist = (x[..., :2 * height, :2 * width].reshape(*x.shape[:-2], height, 2, width, 2).mean((-3, -1))
                         for x in (ref, dist))
        mu_r, mu_d = _valid_filter(ref, window), _valid_filter(dist, window)
        var_r = _valid_filter(ref * ref, window) - mu_r * mu_r
        var_d = _valid_filter(dist * dist, window) - mu_d * mu_d
        cov = _valid_filter(ref * dist, window) - mu_r * mu_d
        similarity = (2 * cov + c2) / (var_r + var_d + c2)
        if level == levels - 1:
            similarity = similarity * (2 * mu_r * mu_d + c1) / (mu_r * mu_r + mu_d * mu_d + c1)
        values.append(np.maximum(similarity.mean((-2, -1)), 0.0))  # (B, C)
    return np.prod(np.stack(values) ** weights.reshape(-1, 1, 1), axis=0).mean(-1)


def ms_ssim_distortion(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """``1 - MS-SSIM`` per pair, with as many scales as fit (see the module docstring), at the viewing distance.

    Args:
        ref: (B, 3, H, W) float RGB in [0, 1] (or (1, 3, H, W)).
        dist: (B, 3, H, W) float RGB in [0, 1], same device; at least 11 x 11 after the viewing-distance averaging.

    Returns:
        (B,) float64 in [0, 1]: 0 = identical, higher = more distorted.

    Raises:
        TypeError: if an input is not a floating-point tensor.
        ValueError: on wrong shapes, different devices, values outside [0, 1] or images that are too small.
    """
    ref, dist = _viewed(ref, dist)
    levels = _ms_ssim_levels(*dist.shape[-2:])
    score = _ms_ssim(ref.cpu().numpy(), dist.cpu().numpy(), levels)
    return torch.from_numpy(1.0 - score).clamp(0.0, 1.0).to(dist.device)


def teacher_components(ref: torch.Tensor, dist: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three measures of the teacher, unscaled, each 0 for identical images and higher for worse.

    Args:
        ref: (B, 3, H, W) float RGB in [0, 1] (or (1, 3, H, W)).
        dist: (B, 3, H, W) float RGB in [0, 1], same device.

    Returns:
        ``{"vsi": 1 - VSI, "scielab": mean S-CIELAB dE00, "ms_ssim": 1 - MS-SSIM}``, each (B,) float64.
    """
    return {"vsi": 1.0 - vsi(ref, dist), "scielab": scielab(ref, dist), "ms_ssim": ms_ssim_distortion(ref, dist)}


def teacher_distortion(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """The teacher's distortion ``D``: the sum of the three measures, each divided by its spread (:data:`SPREADS`).

    Args:
        ref: (B, 3, H, W) float RGB in [0, 1] (or (1, 3, H, W), compared with every image of ``dist``).
        dist: (B, 3, H, W) float RGB in [0, 1], same device.

    Returns:
        (B,) float64 >= 0: 0 = identical, higher = worse.

    Example:
        >>> ref = torch.rand(1, 3, 64, 64, dtype=torch.float64)
        >>> teacher_distortion(ref, ref)
        tensor([0.], dtype=torch.float64)
    """
    parts = teacher_components(ref, dist)
    return sum(parts[name].clamp_min(0.0) / SPREADS[name] for name in SPREADS)  # type: ignore[return-value]


def teacher(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """The teacher as a label: the similarity ``1 / (1 + D)`` in (0, 1], 1 = identical (higher is better).

    Args:
        ref: (B, 3, H, W) float RGB in [0, 1] (or (1, 3, H, W)).
        dist: (B, 3, H, W) float RGB in [0, 1], same device.

    Returns:
        (B,) float64 similarity; see :func:`teacher_distortion` for ``D``.
    """
    return 1.0 / (1.0 + teacher_distortion(ref, dist))
