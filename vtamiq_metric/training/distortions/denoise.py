"""Denoising distortion: KADID type 15 (``imdenoise``), with a DnCNN substitute and a classical fallback.

MATLAB (``docs/background/distortions.md``, type 15): ``noisy = imnoise(I, 'gaussian', 0, v)`` (clipped to [0, 1]), then
each of R, G and B is denoised separately with ``denoiseImage(channel, denoisingNetwork('DnCNN'))``, MATLAB's pretrained
20-layer grayscale blind DnCNN; the result is not clipped before the generator's final ``mapmm``.

MATLAB's weights are not redistributable and cannot be reproduced, so two substitutes are offered:

1. **DnCNN-B (the closest substitute).** :class:`DnCNN` is the 20-layer, 64-feature, grayscale residual
   network of Zhang et al. (2017) in the layout of the KAIR release file ``dncnn_gray_blind.pth`` (blind,
   sigma in [0, 55] / 255, batch norm merged into the convolutions). :func:`load_dncnn` loads that file (strict keys,
   ``weights_only``) and returns a plane denoiser to pass as ``denoiser=`` to ``apply_distortion``. Differences
   from MATLAB: other training data and noise range; levels 3-5 (sigma 57-99 grey levels) exceed DnCNN-B's training
   range, so residual noise and over-smoothing differ there. The weights are not shipped and never downloaded.
2. **Non-local means fallback (default when no denoiser is given).** Pixelwise non-local means (Buades, Coll and
   Morel) on each channel separately: 5x5 patches, a 9x9 search window, weights
   ``exp(-max(d2 - 2 sigma**2, 0) / (0.4 sigma)**2)`` with ``d2`` the mean squared patch difference, the centre pixel
   weighted like its best neighbour, and ``sigma = sqrt(v)``, the known noise level (DnCNN is blind instead). It
   reproduces the kind of artefact (smoothed texture, residual blotchy noise at high levels) but not DnCNN's
   output. A warning is logged once per process when the fallback is used.

VTAMIQ itself skipped this type for KADIS-700k; keep it opt-in in generators.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from ._matlab import imnoise_gaussian

__all__ = ["DnCNN", "PlaneDenoiser", "denoise", "load_dncnn", "nonlocal_means"]

_logger = logging.getLogger(__name__)

PlaneDenoiser = Callable[[np.ndarray], np.ndarray]
"""A denoiser of one plane: (H, W) float64 noisy values (nominally [0, 1]) -> (H, W) float64 estimate."""

_NLM_PATCH_RADIUS = 2
_NLM_SEARCH_RADIUS = 4
_NLM_H_FACTOR = 0.4
_fallback_warned = False


def nonlocal_means(planes: np.ndarray, sigma: float) -> np.ndarray:
    """Pixelwise non-local means, each plane (last axis) denoised independently.

    Args:
        planes: (H, W) or (H, W, C) float array.
        sigma: noise standard deviation in the same units (> 0).

    Returns:
        float64 array of the same shape.

    Raises:
        ValueError: if ``sigma`` is not positive.
    """
    if not sigma > 0:
        raise ValueError(f"nonlocal_means: expected sigma > 0, got {sigma}")
    x = np.asarray(planes, dtype=np.float64)
    planar = x.ndim == 2
    if planar:
        x = x[..., None]
    h, w = x.shape[:2]
    sr, pr = _NLM_SEARCH_RADIUS, _NLM_PATCH_RADIUS
    patch = 2 * pr + 1
    # Distances are computed on a region R enlarged by m = sr + pr so that the distance map of offset o also
    # serves offset -o: d_{-o}(p) = d_o(p - o). P holds the image padded by 2m for the shifted reads.
    m = sr + pr
    padded = np.pad(x.astype(np.float32), ((2 * m, 2 * m), (2 * m, 2 * m), (0, 0)), mode="symmetric")
    region = padded[m : m + h + 2 * m, m : m + w + 2 * m]  # (H + 2m, W + 2m, C), R
    inv_h2 = np.float32(1.0 / (_NLM_H_FACTOR * sigma) ** 2)
    floor = np.float32(2.0 * sigma * sigma)
    centre = padded[2 * m : 2 * m + h, 2 * m : 2 * m + w]  # (H, W, C), the image itself
    acc = np.zeros(centre.shape, dtype=np.float32)
    total = np.zeros(centre.shape, dtype=np.float32)
    best = np.zeros(centre.shape, dtype=np.float32)
    offsets = [(dy, dx) for dy in range(0, sr + 1) for dx in range(-sr, sr + 1) if dy > 0 or dx > 0]
    for dy, dx in offsets:
        moved = padded[m + dy : m + dy + h + 2 * m, m + dx : m + dx + w + 2 * m]  # R shifted by +o
        d2 = ndimage.uniform_filter1d((region - moved) ** 2, patch, axis=0, mode="reflect")
        d2 = ndimage.uniform_filter1d(d2, patch, axis=1, mode="reflect")
        weight = np.exp(-np.maximum(d2 - floor, 0) * inv_h2)  # (H + 2m, W + 2m, C), weight of p -> p + o
        w_plus = weight[m : m + h, m : m + w]
        w_minus = weight[m - dy : m - dy + h, m - dx : m - dx + w]  # weight of p -> p - o
        acc += w_plus * padded[2 * m + dy : 2 * m + dy + h, 2 * m + dx : 2 * m + dx + w]
        acc += w_minus * padded[2 * m - dy : 2 * m - dy + h, 2 * m - dx : 2 * m - dx + w]
        total += w_plus + w_minus
        np.maximum(best, np.maximum(w_plus, w_minus), out=best)
    best = np.where(best > 0, best, np.float32(1.0))
    out = ((acc + best * centre) / (total + best)).astype(np.float64)
    return out[..., 0] if planar else out


class DnCNN(nn.Module):
    """DnCNN (Zhang et al., TIP 2017): ``depth`` 3x3 convolutions with ReLUs between them, residual output.

    The layer indices match KAIR's ``dncnn_gray_blind.pth``: ``model.0`` (1 -> 64, ReLU at ``model.1``),
    ``model.2 ... model.36`` (64 -> 64, each followed by a ReLU), ``model.38`` (64 -> 1) for depth 20.
    ``forward`` returns ``x - model(x)`` (the network predicts the noise).

    Args:
        in_channels: image channels (1 for the grayscale blind model).
        num_features: feature channels of the hidden layers.
        depth: number of convolutions (20 for DnCNN-B), >= 2.
    """

    def __init__(self, in_channels: int = 1, num_features: int = 64, depth: int = 20) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"DnCNN: expected depth >= 2, got {depth}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, num_features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(num_features, num_features, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(num_features, in_channels, 3, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise ``x`` of shape (B, C, H, W), values nominally in [0, 1]; returns the same shape."""
        return x - self.model(x)


class _TorchPlaneDenoiser:
    """Runs a (B=1, C=1) torch denoiser on numpy planes."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model = model
        self.device = device

    def __call__(self, plane: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32))[None, None].to(self.device)  # (1,1,H,W)
        with torch.inference_mode():
            y = self.model(x)
        return y[0, 0].to("cpu", torch.float64).numpy()


def load_dncnn(path: str | Path, device: str | None = None) -> PlaneDenoiser:
    """Load KAIR's ``dncnn_gray_blind.pth`` (or any state dict of the same layout) as a plane denoiser.

    Args:
        path: file holding the state dict (keys ``model.{0,2,...,38}.{weight,bias}``).
        device: torch device string; ``None`` picks CUDA when available, else CPU.

    Returns:
        A callable mapping an (H, W) float64 plane to its (H, W) float64 denoised estimate, for
        ``apply_distortion(..., denoiser=...)``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        RuntimeError: if the keys or shapes do not match the 20-layer layout (strict loading).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_dncnn: expected a DnCNN state-dict file, got missing path {str(path)!r}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    model = DnCNN()
    model.load_state_dict(state, strict=True)
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(dev).eval()
    _logger.info("loaded DnCNN weights from %s on %s", path, dev)
    return _TorchPlaneDenoiser(model, dev)


def denoise(
    image: np.ndarray, variance: float, rng: np.random.Generator, denoiser: PlaneDenoiser | None = None
) -> np.ndarray:
    """Type 15, ``imdenoise``: Gaussian noise of ``variance`` (clipped), then per-channel denoising, no clipping.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        variance: noise variance (KADIS 0.01, 0.03, 0.05, 0.1, 0.15).
        rng: generator (H*W*3 normal draws).
        denoiser: plane denoiser (e.g. from :func:`load_dncnn`); ``None`` uses the non-local-means fallback.

    Returns:
        (H, W, 3) float64, roughly in [0, 1] (not clipped, as in MATLAB).

    Raises:
        TypeError: if ``denoiser`` is neither None nor callable.
        ValueError: if the denoiser returns a plane of another shape or non-finite values.
    """
    global _fallback_warned
    noisy = imnoise_gaussian(image, variance, rng)
    if denoiser is None:
        if not _fallback_warned:
            _logger.warning(
                "type 15 (denoise) uses the non-local-means fallback, not DnCNN; pass denoiser=load_dncnn(path) "
                "for the DnCNN substitute"
            )
            _fallback_warned = True
        return nonlocal_means(noisy, math.sqrt(variance))
    if not callable(denoiser):
        raise TypeError(f"denoise: expected a callable denoiser or None, got {type(denoiser).__name__}")
    out = np.empty_like(noisy)
    for ch in range(noisy.shape[2]):
        plane = np.asarray(denoiser(noisy[..., ch].copy()), dtype=np.float64)
        if plane.shape != noisy.shape[:2]:
            raise ValueError(f"denoise: expected the denoiser to return shape {noisy.shape[:2]}, got {plane.shape}")
        if not np.isfinite(plane).all():
            raise ValueError("denoise: expected finite values from the denoiser, got NaN or inf")
        out[..., ch] = plane
    return out
