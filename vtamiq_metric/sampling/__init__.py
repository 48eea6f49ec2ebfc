"""Context-aware patch sampling (CAPS).

VTAMIQ (Chubarau & Clark, 2021, https://arxiv.org/abs/2110.01655, §3.2) encodes a sparse set of N aligned P×P patches
drawn from the reference and the distorted image. CAPS biases where the patches go: towards the image centre (the
centre bias of human attention), towards regions where the two images differ, and uniformly everywhere else.

How a draw works, per image and per pyramid level (all coordinates are patch **top-left** corners; the candidates are
the integer positions ``[0, H - P] x [0, W - P]``), and where each step lives:

1. **Probability map** over candidates, ``w_c * C + w_d * D + w_u * U``, summed per cell
   (:mod:`~vtamiq_metric.sampling.probability`; the difference ``D`` in :mod:`~vtamiq_metric.sampling.difference`,
   its sums over patch footprints in :mod:`~vtamiq_metric.sampling.footprint`).
2. **Cells** of at most one patch side, and the **scales** of the pyramid (:mod:`~vtamiq_metric.sampling.pyramid`).
3. **Allocation** of the level's patches to cells and 4. **placement** inside each cell
   (:mod:`~vtamiq_metric.sampling.caps`, with the rules of randomness and determinism).

:func:`sampling_density` (:mod:`~vtamiq_metric.sampling.density`) is the exact expected coverage of a draw, from the
same per-level probabilities; :func:`viewing_downsample` (:mod:`~vtamiq_metric.sampling.viewing`) is the
viewing-distance pooling that callers apply before drawing. :class:`SamplingConfig`
(:mod:`~vtamiq_metric.sampling.config`) holds the weights and scales.

**Memory on large images.** :func:`sample_patches` also takes ``uint8`` images (values ``v`` read as ``v / 255`` in
float32, exactly what decoding to float gives), which ``score()`` uses for 8-bit files: 3 bytes per pixel instead of
12. Every working buffer of the sampler is linear in the pixels, whatever the image's shape: patch footprints are
summed per axis (:mod:`~vtamiq_metric.sampling.footprint`), so a 16 x 1,000,000 pair costs what a 4000 x 4000 pair
costs. The ``"mse"`` difference is computed in row strips of at most ``_STRIP_PIXELS`` pixels, so its float64 working
set stays a few hundred MB whatever the image size, with the same cell masses, bit for bit, as from the whole image.
Pyramid levels above 0 of a ``uint8`` image are pooled strip by strip from float32 strips (the same values as pooling
the float image). The ``"ssim"`` difference (about a dozen float64 maps per pixel) is computed in row strips of an
eighth of that size, with the rows its blur reads around each. :func:`vtamiq_metric.sampling.memory.sampler_bytes`
bounds the peak.
"""

from __future__ import annotations

from .caps import PatchSample, extract_patches, sample_patches
from .config import SamplingConfig
from .density import sampling_density
from .difference import difference_map
from .probability import centre_bias
from .pyramid import effective_num_scales, scale_counts
from .viewing import viewing_downsample, viewing_factor

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
