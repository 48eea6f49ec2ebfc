"""Compression distortions: KADID types 9 (JPEG2000) and 10 (JPEG).

Both MATLAB originals write the image with ``imwrite`` (after 8-bit conversion ``round(255 I)``) and read it back
(``docs/background/distortions.md``, types 9, 10). MATLAB's codecs are not available, so both use Pillow:

- Type 9, ``imcompressjp2k``: MATLAB's Kakadu-based writer with ``'CompressionRatio', r``. Substitute: OpenJPEG
  through Pillow, rate mode with ratio ``r`` (uncompressed 24 bit/pixel size over code-stream size), one quality
  layer, irreversible 9/7 wavelet with the irreversible colour transform (``irreversible=True, mct=1``; Pillow's
  defaults, reversible 5/3 without colour transform, would be wrong), LRCP, no tiling, and 4 decomposition levels
  (MATLAB's ``ReductionLevels`` default as we understand it [unverified]; fewer for images smaller than 16 pixels on
  a side, which OpenJPEG cannot decompose further). Not bit-exact: rate allocation and artefact layout differ;
  file sizes and artefact kind match.
- Type 10, ``imcompressjpeg``: MATLAB's bundled IJG libjpeg with ``'Quality', q``. Substitute: Pillow's libjpeg
  (libjpeg-turbo) with the same IJG quality scaling, baseline, 4:2:0 chroma subsampling, no optimisation.
  Expect differences of 1-2 grey levels (library version, DCT and upsampling implementations).
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from ._matlab import to_uint8

__all__ = ["encode_jpeg", "encode_jpeg2000", "jpeg", "jpeg2000"]

_JP2K_DECOMPOSITION_LEVELS = 4


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float64) / 255.0


def encode_jpeg2000(image: np.ndarray, ratio: float) -> bytes:
    """Encode as MATLAB ``imwrite(I, f, 'jp2', 'CompressionRatio', ratio)`` would, with OpenJPEG (a J2K code-stream).

    Args:
        image: (H, W, 3) float in [0, 1] (converted with ``round(255 I)``) or uint8.
        ratio: uncompressed / compressed size (> 1).

    Returns:
        The JPEG 2000 code-stream.
    """
    rgb8 = image if image.dtype == np.uint8 else to_uint8(image)
    h, w = rgb8.shape[:2]
    levels = min(_JP2K_DECOMPOSITION_LEVELS, int(math.floor(math.log2(min(h, w)))))
    buffer = io.BytesIO()
    Image.fromarray(rgb8).save(
        buffer,
        format="JPEG2000",
        no_jp2=True,
        quality_mode="rates",
        quality_layers=[float(ratio)],
        irreversible=True,
        mct=1,
        num_resolutions=levels + 1,
        progression="LRCP",
    )
    return buffer.getvalue()


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """Encode as MATLAB ``imwrite(I, f, 'jpg', 'Quality', quality)`` would: baseline IJG JPEG, 4:2:0 chroma.

    Args:
        image: (H, W, 3) float in [0, 1] (converted with ``round(255 I)``) or uint8.
        quality: IJG quality 1..100 (tables scaled by ``5000 / q`` below 50, ``200 - 2 q`` above).

    Returns:
        The JPEG file bytes.
    """
    rgb8 = image if image.dtype == np.uint8 else to_uint8(image)
    buffer = io.BytesIO()
    Image.fromarray(rgb8).save(
        buffer, format="JPEG", quality=int(quality), subsampling="4:2:0", optimize=False, progressive=False
    )
    return buffer.getvalue()


def jpeg2000(image: np.ndarray, ratio: float) -> np.ndarray:
    """Type 9, ``imcompressjp2k``: JPEG 2000 round trip at compression ratio ``ratio`` (OpenJPEG substitute).

    Args:
        image: (H, W, 3) float64 in [0, 1].
        ratio: uncompressed / compressed size (KADIS 16, 32, 45, 120, 400; 24/ratio bits per pixel).

    Returns:
        (H, W, 3) float64 in [0, 1], multiples of 1/255.
    """
    return _decode(encode_jpeg2000(image, ratio))


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Type 10, ``imcompressjpeg``: baseline JPEG round trip at IJG quality ``quality`` with 4:2:0 chroma.

    Args:
        image: (H, W, 3) float64 in [0, 1].
        quality: IJG quality 1..100 (KADIS 43, 36, 24, 7, 4).

    Returns:
        (H, W, 3) float64 in [0, 1], multiples of 1/255.
    """
    return _decode(encode_jpeg(image, quality))
