"""Input coercion and checks: turn what a user passes to :func:`vtamiq_metric.score` into image batches.

Every public entry point calls :func:`prepare_pair` (or :func:`to_batch`) first. The result is a
``(B, 3, H, W)`` floating-point RGB tensor with values in ``[0, 1]``. Bad input raises ``TypeError`` (wrong kind
or dtype), ``ValueError`` (wrong shape, size or values) or ``FileNotFoundError`` (missing file), and the message
says what was expected and what was received. Nothing is ever resized, and nothing is clamped or rescaled beyond
the rules below.

Accepted inputs and the rules applied to each:

* **Paths** (``str`` or ``os.PathLike``) are decoded with Pillow, then follow the PIL rules below. Only the raster
  formats of :data:`IMAGE_FORMATS` are opened (PNG, JPEG, BMP, TIFF, WebP, PPM/PGM/PBM, TGA, GIF), whatever the file's
  suffix: a file in any other format Pillow knows (EPS, which would start Ghostscript, PDF, DDS, PSD, ...) is refused
  from its first bytes, before any of its plugins runs. A missing path raises ``FileNotFoundError`` naming it; an
  empty path, a directory, anything that is not a regular file (or a symlink to one: FIFOs, sockets and devices are
  refused before opening, so nothing blocks), a file in another format, or a file Pillow cannot decode (truncated or
  corrupt data, whatever exception the decoder raises), raises ``ValueError`` naming the file and the reason; only
  ``MemoryError`` and ``PermissionError`` pass through as they are. Only the first frame of a multi-frame file is
  used. EXIF orientation and ICC profiles are ignored: pixels are used as stored.
* **PIL images**, by mode:

  - ``RGB`` and ``L`` (8 bit): divided by 255. ``1`` (bilevel): 0 or 1 (read as 8-bit 0 or 255 when 8-bit sources
    stay 8-bit, below, so a bilevel image costs what an 8-bit one does).
  - ``RGBA``, ``LA``, ``RGBX``: the extra channel is dropped, not composited over a background
    (``RGBa``/``La``, premultiplied, are un-premultiplied first).
  - ``P`` and ``PA`` (palette): converted to 8-bit RGB through the palette (through RGBA, alpha then dropped, for a
    ``P`` image whose transparency is given per palette entry), so palette transparency is ignored.
  - ``I;16``, ``I;16L``, ``I;16B``, ``I;16N`` (16 bit): divided by 65535. ``I`` (32-bit integer, which Pillow uses
    for some 16-bit files) is read as 16-bit data: values must lie in ``[0, 65535]`` and are divided by 65535.
  - ``F`` (32-bit float): used as is, so values must already lie in ``[0, 1]``.
  - Any other mode (``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ...) is converted with Pillow's ``convert("RGB")``,
    with a ``UserWarning``, because that conversion is not colour-managed.

  Note that Pillow decodes 16-bit-per-channel RGB files to 8 bits per channel.
* **numpy arrays** are channel-last: ``(H, W)``, ``(H, W, C)`` or a batch ``(B, H, W, C)``, with ``C`` in
  ``{1, 2, 3, 4}`` (1 = gray, 2 = gray + alpha, 3 = RGB, 4 = RGBA; alpha is dropped). By dtype: ``uint8`` is
  divided by 255, ``uint16`` by 65535, ``bool`` gives 0 or 1, and ``float16``/``float32``/``float64`` must already
  lie in ``[0, 1]``. Any other dtype (signed integers, ``uint32``, complex, object, ...) raises ``TypeError``.
  A 3-D array whose last axis is not a channel axis (e.g. ``(3, H, W)``) raises ``ValueError`` suggesting HWC.
* **torch tensors** are channel-first: ``(C, H, W)`` or ``(B, C, H, W)`` with ``C`` in ``{1, 3}``. They are
  floating point (``float16``, ``bfloat16``, ``float32`` or ``float64``) with values in ``[0, 1]``, or ``uint8``
  (0-255, divided by 255 like uint8 arrays, as torchvision's ``read_image`` returns them); other integer and bool
  tensors raise ``TypeError`` and 4-channel tensors raise ``ValueError`` (drop or composite the alpha
  yourself). A tensor keeps its dtype, its device and its autograd graph: nothing is detached or modified in
  place, so gradients flow back to a tensor that requires grad. The result may share memory with the input.
* **Lists and tuples** of any of the above form one batch, in order (a batched array or tensor contributes all
  its images). All images must have the same height and width; a mismatch raises ``ValueError`` naming the index.
  Tensors in one list must share a device, and the batch takes their common dtype (``torch.promote_types``).
  An empty list raises ``ValueError``.

Everything that is not a tensor (paths, PIL images, numpy arrays) becomes ``float32`` on the CPU.

Grayscale becomes RGB by replicating the channel. Values may exceed ``[0, 1]`` by at most
``max(1e-6, torch.finfo(dtype).eps)`` (rounding slack: 1e-6 for float32 and float64, 2**-10 for float16, 2**-7 for
bfloat16); such values are clamped to ``[0, 1]``. Anything further out raises ``ValueError`` reporting the observed
minimum and maximum, with a hint only when one fits: 0-255 data (maximum above 1.1 up to 255, minimum >= 0), 16-bit data
(maximum up to 65535), [-1, 1] data (minimum below 0 down to -1, maximum <= 1) or resampling overshoot (within 0.1 of
[0, 1]). NaN or infinite values raise ``ValueError``. The loss's mode (``prepare_pair(..., clamp=True)``, used by
:class:`vtamiq_metric.VTAMIQLoss`) accepts any finite float value and clamps it to ``[0, 1]`` with a straight-through
gradient, since a network's output is rarely inside ``[0, 1]``.

:func:`prepare_pair` then checks the pair: the same number of images, the same height and width (no resizing is ever
done), both sides at least ``patch_size`` pixels high and wide, and one device. One reference image against ``B``
distorted images is broadcast (expanded to ``B``, as lpips broadcasts); any other count mismatch raises. A side that
came from paths, PIL images or numpy arrays moves to the device of the other side when that side is made of tensors; two
tensors on different devices raise ``ValueError``. If the two sides' dtypes differ, both take the common dtype.

**Pixel limit.** ``prepare_pair(..., max_pixels=M)`` refuses (``ValueError``) any image of more than ``M`` pixels
before decoding it (a file's size is read from its header), the way Pillow's decompression-bomb check does; a
6.5 KB PNG can hold a 12000x12000 image. ``score()`` passes ``max_pixels=150_000_000`` by default. Files are also
subject to Pillow's own limit (``PIL.Image.MAX_IMAGE_PIXELS``: a warning above 89.5 million pixels, an error above
twice that).

**8-bit sources stay 8-bit for scoring.** ``prepare_pair(..., keep_uint8=True)`` (used by ``score()``) returns ``uint8``
``(B, 3, H, W)`` tensors when both sides come from 8-bit files (bilevel and palette files included), 8-bit PIL images or
``uint8`` arrays: 3 bytes per pixel instead of 12. :func:`vtamiq_metric.sampling.sample_patches` reads them as
``v / 255``, bit-identical to the float32 conversion. Mixed sides (one float, one 8-bit) are both float32.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import stat
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias, TypeGuard

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ._checks import check_bool, check_optional_positive_int, check_positive_int

__all__ = ["IMAGE_FORMATS", "ImageLike", "decoded_bytes", "image_size", "is_single_image", "load_image", "prepare_pair",
           "to_batch"]

_logger = logging.getLogger(__name__)

ImageLike: TypeAlias = str | os.PathLike[str] | Image.Image | np.ndarray | torch.Tensor

# Peak memory of scoring one pair of 8-bit images, per pixel of one image (measured: benchmarks/bench_score.py).
_BYTES_PER_PAIR_PIXEL = 16
_ACCEPTED_IMAGE = "a path (str or os.PathLike), a PIL image, a numpy array or a torch tensor"
_ACCEPTED_KINDS = f"{_ACCEPTED_IMAGE}, or a list/tuple of them"
_FLOAT_TENSOR_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_ACCEPTED_NUMPY_DTYPES = "uint8 (0-255), uint16 (0-65535), bool (0/1), or float16/float32/float64 in [0, 1]"
_ACCEPTED_TENSOR_DTYPES = "float16, bfloat16, float32 or float64 with values in [0, 1]"

#: The Pillow formats image files are opened as (``Image.open(path, formats=IMAGE_FORMATS)``): raster formats whose
#: decoders run inside Pillow and its bundled C libraries. Everything else Pillow can open is refused, among them EPS
#: and PostScript (Pillow starts Ghostscript on them), PDF, DDS, PSD, ICO and the scientific formats (FITS, GRIB, HDF5).
#: PPM covers PBM, PGM, PPM, PNM and PFM; JPEG covers camera files with several pictures (MPO).
IMAGE_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "PPM", "TGA", "GIF")

# PIL modes whose pixels numpy reads directly (np.asarray gives uint8, bool, uint16, int32 or float32).
_PIL_DIRECT_MODES = frozenset({"1", "L", "LA", "RGB", "RGBA", "RGBX", "I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
# PIL modes converted losslessly by Pillow before reading: palettes keep their colours, premultiplied alpha is undone.
# A palette becomes RGB (3 bytes a pixel, no alpha to drop); see _pil_target_mode for palettes with transparency.
_PIL_LOSSLESS_CONVERSIONS = {"P": "RGB", "PA": "RGB", "RGBa": "RGBA", "La": "LA"}
# warnings.catch_warnings() swaps process-wide state: threads that decode at once (the decode threads of
# `vtamiq score`) take this lock around it, so that none restores a filter list another one changed.
_WARNINGS_LOCK = threading.Lock()


def to_batch(images: ImageLike | Sequence[ImageLike], *, name: str = "ref", max_pixels: int | None = None,
             keep_uint8: bool = False) -> torch.Tensor:
    """Coerce one image, a batch, or a list of images into a ``(B, 3, H, W)`` RGB tensor in ``[0, 1]``.

    The rules for every accepted kind (paths, PIL images, numpy arrays, tensors, lists of them) are listed in the
    module docstring of :mod:`vtamiq_metric._validation`.

    Args:
        images: a path, PIL image, channel-last numpy array ``(H, W)``, ``(H, W, C)`` or ``(B, H, W, C)``,
            channel-first tensor ``(C, H, W)`` or ``(B, C, H, W)``, or a list/tuple of those (all the same size).
        name: what to call the input in error messages, e.g. ``"ref"`` or ``"dist"``.
        max_pixels: refuse images of more pixels than this, before decoding them (None: no limit).
        keep_uint8: give 8-bit sources as ``uint8`` 0-255 (see :func:`prepare_pair`).

    Returns:
        ``(B, 3, H, W)`` tensor with values in ``[0, 1]`` (``uint8`` 0-255 for 8-bit sources with ``keep_uint8``).
        Float tensor inputs keep their dtype, device and autograd graph (the result may share memory with them;
        treat it as read-only); uint8 tensors give ``float32`` on their device; everything else ``float32`` on the
        CPU.

    Raises:
        TypeError: unsupported input kind or dtype.
        ValueError: bad shape or channel count, empty input, mixed sizes in a list, NaN/inf, values outside
            ``[0, 1]``, or a file that cannot be decoded.
        FileNotFoundError: a path that does not exist.

    Example:
        >>> import numpy as np
        >>> to_batch(np.full((4, 5, 3), 255, dtype=np.uint8)).shape
        torch.Size([1, 3, 4, 5])
    """
    check_optional_positive_int("max_pixels", max_pixels)
    batch, _ = _to_batch(images, name, max_pixels=max_pixels, keep_uint8=keep_uint8)
    return batch


def is_single_image(item: object) -> TypeGuard[ImageLike]:
    """Whether ``item`` is one image (not a batch): a path, a PIL image, an (H, W[, C]) array, a (C, H, W) or
    (1, C, H, W) tensor. ``score()`` decodes lists of such items lazily, batch by batch."""
    if isinstance(item, (str, os.PathLike, Image.Image)):
        return True
    if isinstance(item, np.ndarray):
        return item.ndim in (2, 3)
    if isinstance(item, torch.Tensor):
        return item.ndim == 3 or (item.ndim == 4 and item.shape[0] == 1)
    return False


def image_size(item: object) -> tuple[int, int] | None:
    """``(height, width)`` of one image without decoding it (a file's header is read), or None if unknown.

    Never raises: an unreadable file or an unsupported input gives None (decoding it reports the problem).
    """
    header = _header(item)
    return None if header is None else (header[0], header[1])


def decoded_bytes(item: object) -> int | None:
    """The bytes of one image as :func:`prepare_pair` with ``keep_uint8=True`` holds it, from its header: 3 a pixel
    for 8-bit sources (bilevel, palette, gray, RGB, RGBA, CMYK... files, 8-bit PIL images, uint8 arrays), 12 (float32
    RGB) for the others. None if unknown (an unreadable file: decoding it reports the problem). Never raises."""
    header = _header(item)
    if header is None:
        return None
    height, width, eight_bit = header
    return height * width * (3 if eight_bit else 12)


def _header(item: object) -> tuple[int, int, bool] | None:
    """``(height, width, 8-bit source)`` of one image without decoding it, or None if unknown; never raises."""
    try:
        if isinstance(item, Image.Image):
            return item.height, item.width, _eight_bit_mode(item.mode)
        if isinstance(item, np.ndarray) and item.ndim >= 2:
            size = (item.shape[0], item.shape[1]) if item.ndim in (2, 3) else (item.shape[1], item.shape[2])
            return int(size[0]), int(size[1]), item.dtype == np.uint8
        if isinstance(item, torch.Tensor) and item.ndim >= 2:
            return int(item.shape[-2]), int(item.shape[-1]), False
        if isinstance(item, (str, os.PathLike)):
            file = Path(os.fspath(item))
            if not file.is_file():  # follows symlinks; refuses FIFOs and devices without opening them
                return None
            with _WARNINGS_LOCK, warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(file, formats=IMAGE_FORMATS) as image:  # reads the header only
                    return image.height, image.width, _eight_bit_mode(image.mode)
    except Exception:  # noqa: BLE001 - a size we cannot read is "unknown"; decoding reports why
        return None
    return None


def _eight_bit_mode(mode: str) -> bool:
    """Whether a PIL image of this mode is read as 8-bit data (everything but 16-bit, 32-bit integer and float)."""
    return not (mode in ("I", "F") or mode.startswith(("I;16", "I;32", "F;")))


def _as_float(batch: torch.Tensor) -> torch.Tensor:
    """A uint8 batch as float32 ``v / 255`` (bit-identical to numpy's float32 division); float batches unchanged."""
    return batch.to(torch.float32).div_(255.0) if batch.dtype == torch.uint8 else batch


def _check_pixels(item: object, max_pixels: int | None, name: str) -> None:
    """Raise ``ValueError`` if the image ``item`` has more than ``max_pixels`` pixels (checked before decoding)."""
    if max_pixels is None:
        return
    size = image_size(item)
    if size is None:
        return
    height, width = size
    if height * width > max_pixels:
        raise ValueError(
            f"{name}: expected at most max_pixels={max_pixels:,} pixels, got a {width}x{height} image "
            f"({height * width:,} pixels; scoring a pair of this size needs about "
            f"{_BYTES_PER_PAIR_PIXEL * height * width / 2**30:.1f} GiB). This limit guards against decompression "
            f"bombs and running out of memory: downscale the image, or pass max_pixels=None (score()) / "
            f"--max-pixels 0 (vtamiq score) to score it anyway"
        )


def prepare_pair(ref: ImageLike | Sequence[ImageLike], dist: ImageLike | Sequence[ImageLike], *,
                 patch_size: int = 16, max_pixels: int | None = None, keep_uint8: bool = False,
                 start: int = 0, indices: Sequence[int] | None = None,
                 clamp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Coerce and check a (reference, distorted) pair of image batches.

    Both sides go through :func:`to_batch`. Then the pair must hold the same number of images with the same height and
    width (nothing is resized), at least ``patch_size`` pixels in each direction; one reference image against ``B``
    distorted images is broadcast (the reference is expanded to ``B``, a view, as lpips broadcasts). A side built from
    paths, PIL images or numpy arrays moves to the other side's device when the other side is made of tensors; differing
    dtypes are promoted to the common one (``torch.promote_types``), keeping autograd.

    Args:
        ref: the reference image(s); any input :func:`to_batch` accepts.
        dist: the distorted image(s), aligned with ``ref``; any input :func:`to_batch` accepts.
        patch_size: the model's patch size; both images must be at least this many pixels high and wide.
        max_pixels: refuse images of more pixels than this, before decoding them (None: no limit).
        keep_uint8: return ``uint8`` tensors (values 0-255, meaning ``v / 255``) when both sides are 8-bit
            sources (see the module docstring); otherwise, or when False, float.
        start: the index of the first image in the caller's list (error messages name ``ref[start + i]``).
        indices: the caller's index of each image of a list, when they are not consecutive (error messages name
            ``ref[indices[i]]``; ``score()`` groups the pairs of a list by image size).
        clamp: the loss's mode: accept float values outside ``[0, 1]`` (any finite value, as a network emits them)
            and clamp them to ``[0, 1]`` with a straight-through gradient (the gradient reaches the input as if the
            clamp were not there; see :class:`vtamiq_metric.VTAMIQLoss`). NaN and infinite values still raise.

    Returns:
        ``(ref, dist)``, each ``(B, 3, H, W)`` with values in ``[0, 1]`` (or ``uint8`` 0-255 with ``keep_uint8``),
        on one device and of one dtype.

    Raises:
        TypeError: unsupported input kind or dtype, or a non-integer ``patch_size`` or ``max_pixels``.
        ValueError: any :func:`to_batch` error, different batch lengths or sizes, images smaller than
            ``patch_size``, or two tensors on different devices.
        FileNotFoundError: a path that does not exist.

    Example:
        >>> import torch
        >>> ref, dist = prepare_pair(torch.rand(2, 3, 32, 48), torch.rand(2, 1, 32, 48))
        >>> dist.shape
        torch.Size([2, 3, 32, 48])
    """
    check_positive_int("patch_size", patch_size)
    check_optional_positive_int("max_pixels", max_pixels)
    check_bool("clamp", clamp)
    coerce = functools.partial(_to_batch, max_pixels=max_pixels, keep_uint8=keep_uint8, start=start, indices=indices,
                               clamp=clamp)
    ref_batch, ref_from_tensor = coerce(ref, "ref")
    dist_batch, dist_from_tensor = coerce(dist, "dist")
    if (ref_batch.dtype == torch.uint8) != (dist_batch.dtype == torch.uint8):  # one side is float: both float
        ref_batch, dist_batch = _as_float(ref_batch), _as_float(dist_batch)

    if ref_batch.shape[0] == 1 and dist_batch.shape[0] > 1:  # one reference, B distorted images: broadcast
        ref_batch = ref_batch.expand(dist_batch.shape[0], -1, -1, -1)
    if ref_batch.shape[0] != dist_batch.shape[0]:
        raise ValueError(
            f"ref and dist must hold the same number of images, got {ref_batch.shape[0]} ref and "
            f"{dist_batch.shape[0]} dist (one reference image against any number of dist images is broadcast)"
        )
    ref_size, dist_size = tuple(ref_batch.shape[-2:]), tuple(dist_batch.shape[-2:])
    if ref_size != dist_size:
        raise ValueError(
            f"ref and dist must have the same size, got ref {ref_size} and dist {dist_size} (height, width); "
            f"images are never resized here, so crop or resize one of them first"
        )
    if min(ref_size) < patch_size:
        raise ValueError(
            f"ref and dist must be at least {patch_size}x{patch_size} pixels (the patch size), "
            f"got {ref_size} (height, width)"
        )

    if ref_batch.device != dist_batch.device:
        if ref_from_tensor and dist_from_tensor:
            raise ValueError(
                f"ref and dist must be on the same device, got ref on {ref_batch.device} and dist on "
                f"{dist_batch.device}"
            )
        if ref_from_tensor:
            dist_batch = dist_batch.to(ref_batch.device)
        else:
            ref_batch = ref_batch.to(dist_batch.device)

    if ref_batch.dtype != dist_batch.dtype:
        common = torch.promote_types(ref_batch.dtype, dist_batch.dtype)
        _logger.debug("promoting ref (%s) and dist (%s) to %s", ref_batch.dtype, dist_batch.dtype, common)
        ref_batch, dist_batch = ref_batch.to(common), dist_batch.to(common)
    return ref_batch, dist_batch


def _to_batch(images: object, name: str, *, max_pixels: int | None = None, keep_uint8: bool = False,
              start: int = 0, indices: Sequence[int] | None = None,
              clamp: bool = False) -> tuple[torch.Tensor, bool]:
    """:func:`to_batch`, also telling whether the batch came from tensors (and so is bound to their device).

    ``max_pixels``, ``keep_uint8``, ``start``, ``indices`` and ``clamp`` are those of :func:`prepare_pair`.
    """
    if not isinstance(images, (list, tuple)):
        _check_pixels(images, max_pixels, name)
        batch = _single_to_batch(images, name, keep_uint8=keep_uint8, clamp=clamp)
        return batch, isinstance(images, torch.Tensor)
    if len(images) == 0:
        raise ValueError(f"{name} must hold at least one image, got an empty {type(images).__name__}")

    parts: list[torch.Tensor] = []
    tensor_device: torch.device | None = None
    tensor_index = 0
    if indices is not None and len(indices) != len(images):
        raise ValueError(f"indices must name every image of {name}: got {len(indices)} for {len(images)} images")
    numbers = list(indices) if indices is not None else range(start, start + len(images))
    for index, item in zip(numbers, images, strict=True):
        item_name = f"{name}[{index}]"
        if isinstance(item, (list, tuple)):
            raise TypeError(f"{item_name}: expected {_ACCEPTED_IMAGE}, got a nested {type(item).__name__}")
        _check_pixels(item, max_pixels, item_name)
        part = _single_to_batch(item, item_name, keep_uint8=keep_uint8, clamp=clamp)
        if parts and part.shape[-2:] != parts[0].shape[-2:]:
            raise ValueError(
                f"all images in {name} must have the same size, got {tuple(part.shape[-2:])} at {item_name} and "
                f"{tuple(parts[0].shape[-2:])} at {name}[{numbers[0]}] (height, width)"
            )
        if isinstance(item, torch.Tensor):
            if tensor_device is None:
                tensor_device, tensor_index = part.device, index
            elif part.device != tensor_device:
                raise ValueError(
                    f"all tensors in {name} must be on the same device, got {part.device} at {item_name} and "
                    f"{tensor_device} at {name}[{tensor_index}]"
                )
        parts.append(part)

    if any(part.dtype == torch.uint8 for part in parts) and not all(part.dtype == torch.uint8 for part in parts):
        parts = [_as_float(part) for part in parts]  # 8-bit and float sources mixed: all float
    dtype = parts[0].dtype
    for part in parts[1:]:
        dtype = torch.promote_types(dtype, part.dtype)
    device = tensor_device if tensor_device is not None else torch.device("cpu")
    if len(parts) == 1:
        return parts[0].to(device=device, dtype=dtype), tensor_device is not None  # no copy of a large image
    batch = torch.cat([part.to(device=device, dtype=dtype) for part in parts])  # (B, 3, H, W)
    return batch, tensor_device is not None


def _single_to_batch(image: object, name: str, *, keep_uint8: bool = False, clamp: bool = False) -> torch.Tensor:
    """One input (not a list) to ``(b, 3, H, W)`` (uint8 for 8-bit sources when ``keep_uint8``)."""
    if isinstance(image, torch.Tensor):
        return _tensor_to_batch(image, name, keep_uint8=keep_uint8, clamp=clamp)
    if isinstance(image, np.ndarray):
        return _array_to_batch(image, name, keep_uint8=keep_uint8, clamp=clamp)
    if isinstance(image, Image.Image):
        return _pil_to_batch(image, name, keep_uint8=keep_uint8, clamp=clamp)
    if isinstance(image, (str, os.PathLike)):
        return _decode_file(image, name, keep_uint8=keep_uint8)[None]
    kind = type(image)
    kind_name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    raise TypeError(f"{name}: expected {_ACCEPTED_KINDS}, got {kind_name}")


def _tensor_to_batch(image: torch.Tensor, name: str, *, keep_uint8: bool = False, clamp: bool = False) -> torch.Tensor:
    """A channel-first float or uint8 tensor ``(C, H, W)`` or ``(B, C, H, W)`` to ``(B, 3, H, W)``, keeping autograd.

    uint8 tensors are 0-255 data: divided by 255 (float32), or kept uint8 with ``keep_uint8``.
    """
    if image.dtype not in _FLOAT_TENSOR_DTYPES and image.dtype != torch.uint8:
        hint = (" (convert with x.float() / 65535 for 16-bit data)" if image.dtype in (torch.int32, torch.uint16)
                else "")
        raise TypeError(f"{name}: expected a tensor of dtype {_ACCEPTED_TENSOR_DTYPES}, got {image.dtype}{hint}")
    shape = tuple(image.shape)
    if image.ndim == 3:
        layout = "(C, H, W)"
        image = image.unsqueeze(0)  # (1, C, H, W)
    elif image.ndim == 4:
        layout = "(B, C, H, W)"
    else:
        hint = "; add a channel axis with x[None] for a grayscale (H, W) tensor" if image.ndim == 2 else ""
        raise ValueError(f"{name}: expected a tensor of shape (C, H, W) or (B, C, H, W), got shape {shape}{hint}")

    channels = image.shape[1]
    if channels not in (1, 3):
        if channels == 4:
            reason = "4 channels (RGBA?); drop or composite the alpha channel first, e.g. x[..., :3, :, :]"
        elif shape[-1] in (1, 3):
            order = "(2, 0, 1)" if len(shape) == 3 else "(0, 3, 1, 2)"
            reason = f"{channels} channels; this looks channel-last, use x.permute{order}"
        else:
            reason = f"{channels} channels"
        raise ValueError(f"{name}: expected a tensor of shape {layout} with C in {{1, 3}}, got shape {shape}: {reason}")
    if image.shape[0] == 0 or image.shape[2] == 0 or image.shape[3] == 0:
        raise ValueError(f"{name}: expected a non-empty tensor, got shape {shape}")

    if image.dtype == torch.uint8:
        image = image if keep_uint8 else _as_float(image)  # 0-255 -> [0, 1], bit-identical to the array path
    else:
        image = _check_range(image, name, clamp=clamp)
    if channels == 1:
        image = image.repeat(1, 3, 1, 1)  # (B, 3, H, W), gray replicated
    return image


def _array_to_batch(array: np.ndarray, name: str, *, what: str = "numpy array",
                    keep_uint8: bool = False, clamp: bool = False) -> torch.Tensor:
    """A channel-last numpy array ``(H, W)``, ``(H, W, C)`` or ``(B, H, W, C)`` to float32 ``(B, 3, H, W)``."""
    kind, itemsize = array.dtype.kind, array.dtype.itemsize
    if kind == "u" and itemsize in (1, 2):
        scale: float | None = 255.0 if itemsize == 1 else 65535.0
    elif kind == "b" or (kind == "f" and itemsize in (2, 4, 8)):
        scale = None
    else:
        raise TypeError(f"{name}: expected a {what} of dtype {_ACCEPTED_NUMPY_DTYPES}, got dtype {array.dtype}")

    shape = array.shape
    if array.ndim == 2:
        array = array[None, :, :, None]  # (1, H, W, 1)
    elif array.ndim in (3, 4) and shape[-1] in (1, 2, 3, 4):
        array = array if array.ndim == 4 else array[None]  # (B, H, W, C)
    elif array.ndim == 3:
        hint = "; this looks channel-first, use arr.transpose(1, 2, 0)" if shape[0] in (1, 3, 4) else ""
        raise ValueError(f"{name}: expected a {what} of shape (H, W) or (H, W, C) with C in {{1, 2, 3, 4}} "
                         f"(channel-last), got shape {shape}{hint}")
    elif array.ndim == 4:
        hint = "; this looks channel-first, use arr.transpose(0, 2, 3, 1)" if shape[1] in (1, 3, 4) else ""
        raise ValueError(f"{name}: expected a batched {what} of shape (B, H, W, C) with C in {{1, 2, 3, 4}} "
                         f"(channel-last), got shape {shape}{hint}")
    else:
        raise ValueError(f"{name}: expected a {what} of shape (H, W), (H, W, C) or (B, H, W, C), got shape {shape}")
    if 0 in array.shape:
        raise ValueError(f"{name}: expected a non-empty {what}, got shape {shape}")

    channels = array.shape[-1]
    array = array[..., :3] if channels >= 3 else array[..., :1]  # alpha dropped, (B, H, W, 3 or 1)
    if keep_uint8 and array.dtype == np.uint8:
        if any(stride < 0 for stride in array.strides):
            # A flipped or rotated view (np.flipud, np.fliplr, np.rot90): torch.from_numpy refuses negative strides,
            # so such a view is copied once here (the float path below always copies anyway).
            array = np.ascontiguousarray(array)
        # A read-only array (e.g. from PIL) is only read here: .contiguous() copies it.
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            pixels = torch.from_numpy(array).permute(0, 3, 1, 2)  # (B, C, H, W) view
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)  # (B, 3, H, W), gray replicated
        return pixels.contiguous()
    if kind == "f":
        _check_finite_and_range(float(array.min()), float(array.max()), name, float(np.finfo(array.dtype).eps),
                                clamp=clamp)
    values = array.astype(np.float32)  # always a fresh, writable, native-order copy
    if scale is not None:
        values /= np.float32(scale)
    if kind == "f":
        np.clip(values, 0.0, 1.0, out=values)  # the rounding slack (or, with clamp, anything outside [0, 1])
    batch = torch.from_numpy(values).permute(0, 3, 1, 2)  # (B, C, H, W)
    if batch.shape[1] == 1:
        batch = batch.expand(-1, 3, -1, -1)  # (B, 3, H, W), gray replicated
    return batch.contiguous()


def _pil_to_batch(image: Image.Image, name: str, *, keep_uint8: bool = False, clamp: bool = False) -> torch.Tensor:
    """A PIL image of any mode to float32 ``(1, 3, H, W)``, following the mode rules in the module docstring."""
    mode = image.mode
    try:
        image.load()
        target = _pil_target_mode(image, keep_uint8=keep_uint8)
        if target is None:
            warnings.warn(f"{name}: converting a PIL image of mode {mode!r} to RGB with Pillow's convert('RGB'), "
                          f"which is not colour-managed", UserWarning, stacklevel=4)
            image = image.convert("RGB")
        elif target != mode:
            image = image.convert(target)
        array = np.asarray(image)
    except MemoryError:
        raise
    except Exception as error:  # whatever a Pillow plugin raises, the documented error is ValueError
        raise ValueError(f"{name}: cannot read PIL image of mode {mode!r}: {type(error).__name__}: {error}") from error

    if mode == "I":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 65535:
            raise ValueError(f"{name}: a PIL image of mode 'I' is read as 16-bit data and must hold values in "
                             f"[0, 65535], got min {low} and max {high}")
        array = array.astype(np.uint16)
    return _array_to_batch(array, name, what=f"PIL image (mode {mode!r})", keep_uint8=keep_uint8, clamp=clamp)


def load_image(path: str | os.PathLike[str], *, name: str = "image") -> torch.Tensor:
    """Decode an image file: the package's one image decoder (scoring, training data, KADIS references).

    Pillow opens the file and the PIL rules of the module docstring apply: 8-bit data is divided by 255, 16-bit by
    65535, grayscale is replicated to RGB, alpha is dropped, palettes are expanded, only the first frame is used.

    Args:
        path: the image file (a regular file, or a symlink to one).
        name: what to call it in error messages, e.g. ``"ref"``.

    Returns:
        ``(3, H, W)`` float32 RGB tensor with values in ``[0, 1]``, on the CPU.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an empty path, a directory, a FIFO, socket or device (refused without opening it, so nothing
            blocks), a file in a format outside :data:`IMAGE_FORMATS` (refused from its signature, so no plugin of
            another format runs), or a file Pillow cannot decode (the decoder's reason is quoted, whatever it raised).
        MemoryError: the machine has no memory for the decoded image.
    """
    return _decode_file(path, name)


def _decode_file(path: str | os.PathLike[str], name: str, *, keep_uint8: bool = False) -> torch.Tensor:
    """:func:`load_image`; with ``keep_uint8``, 8-bit files give a uint8 ``(3, H, W)`` tensor (0-255)."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text == "":
        raise ValueError(f"{name}: expected an image file path, got an empty path")
    file = Path(text)
    try:
        mode = file.stat().st_mode  # follows symlinks
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: image file not found: {text!r}") from None
    except OSError as error:
        raise ValueError(f"{name}: cannot access image file {text!r}: {error}") from error
    if stat.S_ISDIR(mode):
        raise ValueError(f"{name}: expected an image file, got the directory {text!r}")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise ValueError(f"{name}: expected a regular image file (or a symlink to one), got {kind}: {text!r}")
    try:
        with Image.open(file, formats=IMAGE_FORMATS) as image:
            image.load()
            return _pil_to_batch(image, f"{name} ({text!r})", keep_uint8=keep_uint8)[0]  # (3, H, W)
    except (PermissionError, MemoryError):
        raise
    except UnidentifiedImageError as error:
        other = _sniff_format(file)
        if other is not None:
            raise ValueError(f"{name}: cannot decode image file {text!r}: it is in the {other} format, which is not "
                             f"one of the supported formats ({', '.join(IMAGE_FORMATS)}); convert it to PNG "
                             f"first") from None
        raise ValueError(f"{name}: cannot decode image file {text!r}: cannot identify it as one of the supported "
                         f"formats ({', '.join(IMAGE_FORMATS)}): it is damaged or in another format") from error
    except ValueError as error:
        if str(error).startswith(f"{name} ("):  # ours, from _pil_to_batch: it names the file already
            raise
        raise ValueError(f"{name}: cannot decode image file {text!r}: {error}") from error
    except Exception as error:
        # A damaged file may make a decoder raise anything (NotImplementedError, struct.error, IndexError,
        # ZeroDivisionError, ...): one bad file is a ValueError, never a crash of a batch.
        reason = str(error) if isinstance(error, (OSError, SyntaxError)) else f"{type(error).__name__}: {error}"
        raise ValueError(f"{name}: cannot decode image file {text!r}: {reason}") from error


def _pil_target_mode(image: Image.Image, *, keep_uint8: bool) -> str | None:
    """The mode to convert ``image`` to before reading its pixels (its own mode for none); None for a mode read
    through the warned, colour-unmanaged ``convert("RGB")``."""
    mode = image.mode
    if mode == "1" and keep_uint8:
        return "L"  # 0/255 in 1 byte a pixel, read as v / 255: the same 0.0/1.0 as the 4-byte float path
    if mode == "P" and isinstance(image.info.get("transparency"), bytes):
        return "RGBA"  # per-entry transparency: Pillow's own route (RGB would warn); alpha is dropped afterwards
    if mode in _PIL_LOSSLESS_CONVERSIONS:
        return _PIL_LOSSLESS_CONVERSIONS[mode]
    return mode if mode in _PIL_DIRECT_MODES else None


def _sniff_format(file: Path) -> str | None:
    """The Pillow format outside :data:`IMAGE_FORMATS` whose signature the file's first bytes match, or None.

    Only the plugins' signature checks run on the first 16 bytes (no plugin opens the file), so naming the format is
    as safe as refusing it.
    """
    try:
        with open(file, "rb") as handle:
            prefix = handle.read(16)
        Image.init()
        for fmt, (_, accept) in Image.OPEN.items():
            if fmt not in IMAGE_FORMATS and accept is not None and accept(prefix):
                return fmt
    except Exception:  # noqa: BLE001 - naming the format is a courtesy; the file is refused either way
        return None
    return None


def _check_range(image: torch.Tensor, name: str, *, clamp: bool = False) -> torch.Tensor:
    """Reject NaN/inf and values outside ``[0, 1]`` beyond the rounding slack (unless ``clamp``); clamp what is
    accepted (autograd-safe: within the slack an ordinary clamp, with ``clamp`` a straight-through one)."""
    low, high = torch.aminmax(image.detach())
    low_value, high_value = float(low), float(high)
    eps = torch.finfo(image.dtype).eps
    _check_finite_and_range(low_value, high_value, name, eps, clamp=clamp)
    if low_value < 0.0 or high_value > 1.0:
        if clamp:
            # Straight-through: the forward value is clamped, the gradient passes to the input unchanged.
            image = image + (image.clamp(0.0, 1.0) - image).detach()
        else:
            image = image.clamp(0.0, 1.0)
    return image


def _check_finite_and_range(low: float, high: float, name: str, eps: float, *, clamp: bool = False) -> None:
    """Raise ``ValueError`` if ``low``/``high`` (the data's min and max) show NaN, inf or (unless ``clamp``) values
    outside [0, 1], with a hint where one fits."""
    if math.isnan(low) or math.isnan(high):
        raise ValueError(f"{name}: expected values in [0, 1], but the input contains NaN")
    if math.isinf(low) or math.isinf(high):
        raise ValueError(f"{name}: expected values in [0, 1], but the input contains infinite values "
                         f"(min {low}, max {high})")
    tolerance = max(1e-6, eps)
    if clamp or (low >= -tolerance and high <= 1.0 + tolerance):
        return
    raise ValueError(f"{name}: expected values in [0, 1], got min {low:.6g} and max {high:.6g}"
                     f"{_range_hint(low, high, tolerance)}")


def _range_hint(low: float, high: float, tolerance: float) -> str:
    """What the out-of-range data probably is, and how to map it to [0, 1] ("" when nothing fits)."""
    if low >= -0.1 and high <= 1.1:
        return ("; clamp slightly out-of-range values (e.g. after resampling) with x.clamp(0, 1) or "
                "np.clip(x, 0, 1)")
    if low >= -tolerance and high <= 255.0 + tolerance:
        return ("; did you pass 0-255 values? divide by 255 (a network's outputs: clamp them with x.clamp(0, 1); "
                "VTAMIQLoss clamps by itself)")
    if low >= -tolerance and high <= 65535.0 + tolerance:
        return "; did you pass 16-bit values (0-65535)? divide by 65535"
    if low >= -1.0 - tolerance and high <= 1.0 + tolerance:
        return "; did you pass values in [-1, 1]? map them with (x + 1) / 2"
    return ""
