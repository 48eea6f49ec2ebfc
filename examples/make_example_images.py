"""Regenerate the example image pairs in ``examples/images/`` from scikit-image's bundled photographs.

Needs scikit-image, which is *not* a dependency of vtamiq-metric. A throwaway install is enough::

    pip install --target /tmp/skimg scikit-image
    PYTHONPATH=/tmp/skimg python examples/make_example_images.py

The photographs, their licences and every distortion are described in ``examples/images/SOURCES.md``. Each
reference is a centre crop of a ``skimage.data`` photograph; each distorted image is derived from its reference:

* ``jpeg10``: JPEG at quality 10 with Pillow (4:2:0 chroma subsampling, baseline, no optimisation), decoded again.
* ``blur2``: Gaussian blur with sigma = 2 pixels (separable kernel cut at 3 sigma, symmetric edges), in float64.
* ``noise005``: additive white Gaussian noise with sigma = 0.05 of the [0, 1] range, from ``numpy.random``'s
  PCG64 seeded per image, clipped to [0, 1].

Everything is quantised back to 8 bits (round half to even) and written as PNG. The blur and noise images are
bit-identical across platforms for a given numpy version; the JPEG image depends on the libjpeg build behind
Pillow. ``--check`` regenerates everything in memory and reports which files on disk differ.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

_logger = logging.getLogger("make_example_images")

OUT_DIR = Path(__file__).resolve().parent / "images"

# name -> (skimage.data loader name, crop height, crop width); crops are centred.
REFERENCES: dict[str, tuple[str, int, int]] = {
    "coffee": ("coffee", 384, 512),  # 400 x 600 source, landscape crop
    "astronaut": ("astronaut", 512, 384),  # 512 x 512 source, portrait crop
}
NOISE_SEEDS = {"coffee": 20210, "astronaut": 20211}


def centre_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Cut the centred ``(height, width)`` window out of an ``(H, W, 3)`` array."""
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    if top < 0 or left < 0:
        raise ValueError(f"cannot crop {(height, width)} out of an image of shape {image.shape[:2]}")
    return image[top : top + height, left : left + width]


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode ``(H, W, 3)`` uint8 as baseline JPEG with Pillow at ``quality`` (4:2:0) and decode it again."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=2, optimize=False)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB")).copy()


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Blur ``(H, W, 3)`` uint8 with a separable Gaussian, kernel radius ceil(3 sigma), symmetric padding."""
    radius = math.ceil(3 * sigma)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    values = np.pad(image.astype(np.float64), ((radius, radius), (radius, radius), (0, 0)), mode="symmetric")
    height, width = image.shape[:2]
    rows = sum(weight * values[i : i + height] for i, weight in enumerate(kernel))  # (H, W + 2r, 3)
    blurred = sum(weight * rows[:, i : i + width] for i, weight in enumerate(kernel))  # (H, W, 3)
    return _quantise(blurred / 255.0)


def gaussian_noise(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Add white Gaussian noise of std ``sigma`` (on the [0, 1] scale) to ``(H, W, 3)`` uint8, clipped to [0, 1]."""
    noise = np.random.Generator(np.random.PCG64(seed)).normal(0.0, sigma, size=image.shape)
    return _quantise(image.astype(np.float64) / 255.0 + noise)


def _quantise(values: np.ndarray) -> np.ndarray:
    """[0, 1] float64 -> uint8, clipping first and rounding half to even."""
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def build_images() -> dict[str, np.ndarray]:
    """All reference and distorted images, keyed by file name."""
    try:
        from skimage import data
    except ImportError as error:
        raise SystemExit(
            "this script needs scikit-image (not a dependency of vtamiq-metric): "
            "pip install --target /tmp/skimg scikit-image && PYTHONPATH=/tmp/skimg python " + " ".join(sys.argv)
        ) from error

    images: dict[str, np.ndarray] = {}
    for name, (loader, height, width) in REFERENCES.items():
        source = np.asarray(getattr(data, loader)())
        reference = np.ascontiguousarray(centre_crop(source, height, width))
        distortions: dict[str, Callable[[np.ndarray], np.ndarray]] = {
            "ref": lambda image: image,
            "jpeg10": lambda image: jpeg(image, 10),
            "blur2": lambda image: gaussian_blur(image, 2.0),
            "noise005": lambda image, seed=NOISE_SEEDS[name]: gaussian_noise(image, 0.05, seed),
        }
        for tag, distort in distortions.items():
            images[f"{name}_{tag}.png"] = distort(reference)
    return images


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check``, compare) the example images; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output folder (default: {OUT_DIR})")
    parser.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    images = build_images()
    if args.check:
        differ = []
        for file_name, image in images.items():
            path = args.out / file_name
            if not path.exists():
                differ.append(f"{file_name} (missing)")
                continue
            with Image.open(path) as stored:
                if not np.array_equal(np.asarray(stored), image):
                    differ.append(file_name)
        for file_name in differ:
            _logger.info("differs: %s", file_name)
        _logger.info("%d of %d files match", len(images) - len(differ), len(images))
        return 1 if differ else 0

    args.out.mkdir(parents=True, exist_ok=True)
    for file_name, image in images.items():
        path = args.out / file_name
        Image.fromarray(image).save(path, format="PNG", optimize=True)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        _logger.info("%s  %dx%d  %6.1f KiB  sha256 %s", file_name, image.shape[1], image.shape[0],
                     path.stat().st_size / 1024, digest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
