"""Tests for the distortion types (vtamiq_metric.training.distortions): the 25 KADID-10k / KADIS-700k types and ours
(26 and up; their colour-specific checks are in ``test_colour_cast.py``)."""

from __future__ import annotations

import io
import itertools
import logging
import math
import pickle

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin
from scipy import ndimage

from vtamiq_metric.training.distortions import (
    DISTORTION_TYPES,
    DISTORTIONS,
    EXTRA_DISTORTIONS,
    DistortionType,
    apply_distortion,
    get_distortion,
    load_dncnn,
)
from vtamiq_metric.training.distortions import denoise as denoise_module
from vtamiq_metric.training.distortions._matlab import (
    curves,
    fspecial_disk,
    fspecial_gaussian,
    fspecial_motion,
    gaussian_kernel1d,
    hsv2rgb,
    imfilter,
    imresize_nearest,
    mapmm,
    rgb2hsv,
    rgb2lab,
    rgb2ycbcr,
    round_half_away,
    to_uint8,
    truncate,
    ycbcr2rgb,
)
from vtamiq_metric.training.distortions.compression import encode_jpeg, encode_jpeg2000
from vtamiq_metric.training.distortions.denoise import DnCNN
from vtamiq_metric.training.distortions.quantization import imquantize, multithresh, wu_palette
from vtamiq_metric.training.distortions.spatial import cubic_convolution_warp
from vtamiq_metric.training.seeds import KADIS_TYPE_IDS

ALL_TYPES = sorted(DISTORTION_TYPES)
RANDOM_TYPES = {3, 5, 11, 12, 13, 14, 15, 19, 20, 23, 26, 27, 28, 29, 30, 32}

# (type, level) pairs where the MATLAB original is the identity (up to float rounding).
IDENTITY_LEVELS = {
    (1, 1): "Gaussian sigma 0.1: off-centre taps weigh exp(-50)",
    (3, 1): "motion length 1: the 1x1 kernel",
    (8, 1): "Lab chroma factor 1: only the Lab round trip",
    (18, 3): "mean shift offset 0",
}

# Types whose MATLAB level order is not monotone in severity (KADID labels keep this order).
NON_MONOTONIC = {
    18: "offsets +0.15, +0.08, 0, -0.08, -0.15: level 3 is the identity, levels 1 and 5 the strongest",
    25: "contrast +0.3, +0.15, 0, -0.4, -0.6: level 3 (k = 0) is the mildest curve, both ends are stronger",
    21: "MATLAB's two nearest-neighbour resizes (scale z down, then back to [H W] with scale H/ceil(zH)) drift out of "
    "phase, so the share of displaced pixels at levels 1-4 depends on the image size rather than on z "
    "(e.g. 384 rows: 28 %, 53 %, 50 %, 48 %, 74 %); only level 5 is reliably the worst",
}
# Types whose count of random 16x16 / 32x32 patches saturates small images; checked on larger ones.
NEEDS_LARGE_IMAGES = {20, 23}


def _natural_image(h: int, w: int, seed: int) -> np.ndarray:
    """Colour gradients, band-limited texture, hard-edged shapes, a noisy half, black and white corners; in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy /= h
    xx /= w
    img = np.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.5 + 0.3 * np.sin(2 * np.pi * (xx + 0.5 * yy))], axis=-1)
    img += ndimage.gaussian_filter(rng.standard_normal((h, w, 3)), (1.2, 1.2, 0)) * 0.25
    disk = (yy - 0.45) ** 2 + ((xx - 0.35) * w / h) ** 2 < 0.08
    img[disk] = (0.85, 0.25, 0.2)
    img[int(0.6 * h) : int(0.85 * h), int(0.6 * w) : int(0.9 * w)] = (0.1, 0.2, 0.6)
    img += 0.05 * rng.standard_normal((h, w, 3)) * (xx[..., None] > 0.5)
    img = mapmm(img)
    # Clipped shadows and highlights, as in most photographs: the global extremes survive smoothing and coding.
    img[: h // 6, : w // 6] = 0.0
    img[-(h // 6) :, : w // 6] = 1.0
    return img


@pytest.fixture(scope="module")
def small_images() -> list[np.ndarray]:
    return [_natural_image(64, 96, 1), _natural_image(72, 80, 2)]


@pytest.fixture(scope="module")
def medium_images() -> list[np.ndarray]:
    return [_natural_image(96, 128, 3), _natural_image(128, 160, 4)]


@pytest.fixture(scope="module")
def large_images() -> list[np.ndarray]:
    return [_natural_image(192, 256, 7), _natural_image(192, 256, 8)]


# ---------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------


def test_registry_has_25_kadid_types_and_ours_in_one_table() -> None:
    assert sorted(DISTORTIONS) == list(range(1, 26)) == list(KADIS_TYPE_IDS)
    assert sorted(DISTORTION_TYPES) == list(range(1, 33))
    assert sorted(EXTRA_DISTORTIONS) == list(range(26, 33))
    assert all(DISTORTION_TYPES[t] is DISTORTIONS[t] for t in DISTORTIONS)
    names = [d.name for d in DISTORTION_TYPES.values()]
    assert len(set(names)) == len(names) == 32
    for type_id, dist in DISTORTION_TYPES.items():
        assert isinstance(dist, DistortionType)
        assert dist.id == type_id
        assert len(dist.levels) == 5
        assert dist.random == (type_id in RANDOM_TYPES)
        assert callable(dist.function)
        assert dist.normalise_output == (type_id not in (26, 27, 28, 29, 30))
        assert get_distortion(dist.name) is dist
        assert get_distortion(type_id) is dist


def test_stacks_are_their_parts_at_the_same_level(small_images: list[np.ndarray]) -> None:
    assert {t: d.parts for t, d in EXTRA_DISTORTIONS.items() if d.parts} == {
        29: (11, 27), 30: (10, 26), 31: (2, 10), 32: (2, 11)}
    img = small_images[0]
    for type_id in (29, 30, 31, 32):
        stack = DISTORTION_TYPES[type_id]
        assert stack.levels == (1.0, 2.0, 3.0, 4.0, 5.0) and stack.level_is_severity
        first, second = (DISTORTION_TYPES[p] for p in stack.parts)
        for level in (1, 4):
            rng = np.random.default_rng(5)
            expected = first.function(mapmm(img), first.levels[level - 1], rng, None)
            expected = second.function(mapmm(expected), second.levels[level - 1], rng, None)
            expected = mapmm(expected) if second.normalise_output else expected
            np.testing.assert_allclose(apply_distortion(img, type_id, level, seed=5), np.clip(expected, 0, 1),
                                       atol=1e-12)


def test_kadid_dataset_type_names_come_from_the_table() -> None:
    from vtamiq_metric.training.datasets.kadid10k import KADID_TYPES

    assert list(KADID_TYPES) == [f"{t:02d}" for t in range(1, 26)]
    assert KADID_TYPES["01"] == "gaussian blur" and KADID_TYPES["20"] == "non-eccentricity patch"
    assert KADID_TYPES["12"] == "white noise in color component" and KADID_TYPES["09"] == "jpeg2000"


def test_registry_levels_match_the_spec() -> None:
    assert get_distortion("gblur").levels == (0.1, 0.5, 1.0, 2.0, 5.0)
    assert get_distortion(9).levels == (16.0, 32.0, 45.0, 120.0, 400.0)
    assert get_distortion("jpeg").levels == (43.0, 36.0, 24.0, 7.0, 4.0)
    assert get_distortion(18).levels == (0.15, 0.08, 0.0, -0.08, -0.15)
    assert get_distortion("noisequantize").levels == (20.0, 16.0, 13.0, 10.0, 7.0)
    assert get_distortion(25).levels == (0.3, 0.15, 0.0, -0.4, -0.6)
    assert get_distortion(7).name == "colorsaturate" and get_distortion(8).name == "saturate"
    assert get_distortion(24).name == "sharpenHi" and get_distortion(24).description == "High sharpen"


def test_registry_is_immutable() -> None:
    with pytest.raises(AttributeError):
        DISTORTIONS[1].sigma = 2.0  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        DISTORTIONS[1].levels = (1.0,) * 5  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(DISTORTION_TYPES[29])) is DISTORTION_TYPES[29]  # by id: the function is a lambda


# ---------------------------------------------------------------------------------------------------------------
# Every type at every level
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("type_id", ALL_TYPES)
def test_every_level_keeps_shape_dtype_and_range(type_id: int, small_images: list[np.ndarray]) -> None:
    img = small_images[0]
    img8 = to_uint8(img)
    for level in range(1, 6):
        out = apply_distortion(img, type_id, level, seed=0)
        assert out.shape == img.shape and out.dtype == np.float64
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
        out32 = apply_distortion(img.astype(np.float32), type_id, level, seed=0)
        assert out32.dtype == np.float32 and out32.shape == img.shape
        assert out32.min() >= 0.0 and out32.max() <= 1.0
        out8 = apply_distortion(img8, type_id, level, seed=0)
        assert out8.dtype == np.uint8 and out8.shape == img.shape


@pytest.mark.parametrize("type_id", ALL_TYPES)
def test_every_level_changes_the_image_unless_matlab_is_identity(type_id: int, small_images: list[np.ndarray]) -> None:
    for img in small_images:
        img8 = to_uint8(img)
        for level in range(1, 6):
            out8 = apply_distortion(img8, type_id, level, seed=0)
            changed = int(np.count_nonzero(out8 != img8))
            if (type_id, level) in IDENTITY_LEVELS:
                assert changed == 0, IDENTITY_LEVELS[(type_id, level)]
            else:
                assert changed > 0, f"type {type_id} level {level} left the image unchanged"


@pytest.mark.parametrize("type_id", ALL_TYPES)
def test_same_seed_gives_identical_output(type_id: int, small_images: list[np.ndarray]) -> None:
    img = small_images[1]
    for level in (2, 5):
        first = apply_distortion(img, type_id, level, seed=7)
        second = apply_distortion(img, type_id, level, seed=7)
        np.testing.assert_array_equal(first, second)
        from_generator = apply_distortion(img, type_id, level, seed=np.random.default_rng(7))
        np.testing.assert_array_equal(first, from_generator)


@pytest.mark.parametrize("type_id", ALL_TYPES)
def test_only_random_types_depend_on_the_seed(type_id: int, small_images: list[np.ndarray]) -> None:
    img = small_images[0]
    a = apply_distortion(img, type_id, 4, seed=1)
    others = [apply_distortion(img, type_id, 4, seed=s) for s in (2, 3, 4, 5)]
    if type_id in RANDOM_TYPES:  # (types 26 and 28 draw one coin: a few seeds share its side)
        assert any(not np.array_equal(a, b) for b in others)
    else:
        for b in others:
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("type_id", [t for t in ALL_TYPES if t not in (20, 23)])
def test_tiny_odd_sized_images_work(type_id: int) -> None:
    img = _natural_image(21, 25, 5)
    for level in (1, 5):
        out = apply_distortion(to_uint8(img), type_id, level, seed=0)
        assert out.shape == (21, 25, 3) and out.dtype == np.uint8


def test_non_eccentricity_and_color_block_need_minimum_sizes() -> None:
    with pytest.raises(ValueError, match="at least 48x48 pixels.*got 40x96"):
        apply_distortion(_natural_image(40, 96, 0), 20, 1)
    with pytest.raises(ValueError, match="at least 32x32 pixels, got 64x31"):
        apply_distortion(_natural_image(64, 31, 0), "colorblock", 1)
    assert apply_distortion(_natural_image(48, 48, 0), 20, 5).shape == (48, 48, 3)
    assert apply_distortion(_natural_image(32, 32, 0), 23, 5).shape == (32, 32, 3)


def _mean_squared_errors(type_id: int, images: list[np.ndarray]) -> list[float]:
    seeds = range(3) if type_id in RANDOM_TYPES else range(1)
    return [
        float(np.mean([np.mean((apply_distortion(x, type_id, lv, seed=s) - x) ** 2) for x in images for s in seeds]))
        for lv in range(1, 6)
    ]


@pytest.mark.parametrize("type_id", [t for t in ALL_TYPES if t not in NON_MONOTONIC])
def test_severity_grows_from_level_1_to_5(
    type_id: int, medium_images: list[np.ndarray], large_images: list[np.ndarray]
) -> None:
    mse = _mean_squared_errors(type_id, large_images if type_id in NEEDS_LARGE_IMAGES else medium_images)
    assert all(b > a for a, b in itertools.pairwise(mse)), f"MSE per level not increasing: {mse}"


def test_non_monotonic_types_follow_the_matlab_level_order(medium_images: list[np.ndarray]) -> None:
    mean_shift = _mean_squared_errors(18, medium_images)
    assert mean_shift[2] == 0.0
    assert mean_shift[0] > mean_shift[1] > 0 and mean_shift[4] > mean_shift[3] > 0
    contrast = _mean_squared_errors(25, medium_images)
    assert contrast[0] > contrast[1] > contrast[2] and contrast[4] > contrast[3]
    pixelate = _mean_squared_errors(21, medium_images)
    assert min(pixelate) > 0 and pixelate[4] > 2 * max(pixelate[:4])


# ---------------------------------------------------------------------------------------------------------------
# Pipeline semantics (mapmm in and out, uint8 rounding)
# ---------------------------------------------------------------------------------------------------------------


def test_input_is_min_max_normalised_before_distorting(small_images: list[np.ndarray]) -> None:
    img = small_images[0]
    squeezed = 0.2 + 0.5 * img  # same picture, smaller range: mapmm undoes the affine change
    for type_id in (2, 10, 11, 22):
        np.testing.assert_allclose(
            apply_distortion(squeezed, type_id, 3, seed=0), apply_distortion(img, type_id, 3, seed=0), atol=1e-9
        )


def test_output_is_min_max_normalised_after_distorting(small_images: list[np.ndarray]) -> None:
    img = small_images[0]
    # Saturation factor -0.4 leaves [0, 1] in MATLAB's hexcone formulas; mean shift clips; both are stretched back.
    for type_id, level in ((7, 5), (18, 1), (18, 5), (1, 5)):
        out = apply_distortion(img, type_id, level)
        assert out.min() == 0.0 and out.max() == 1.0
    brighter = apply_distortion(img, "meanshift", 1)  # min(I / 0.85, 1) after the final mapmm
    np.testing.assert_allclose(brighter, np.minimum(img / 0.85, 1.0), atol=1e-12)


def test_uint8_output_uses_matlab_rounding(small_images: list[np.ndarray]) -> None:
    img = small_images[0]
    np.testing.assert_array_equal(
        apply_distortion(to_uint8(img), 17, 3), to_uint8(apply_distortion(to_uint8(img) / 255.0, 17, 3))
    )


def test_constant_image_is_returned_unchanged_by_mapmm() -> None:
    flat = np.full((24, 32, 3), 0.25)
    np.testing.assert_array_equal(apply_distortion(flat, "gblur", 5), flat)


# ---------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "error", "message"),
    [
        ([[0.0]], TypeError, r"numpy.ndarray of shape \(H, W, 3\), got list"),
        (np.zeros((8, 8)), ValueError, r"shape \(H, W, 3\), got shape \(8, 8\)"),
        (np.zeros((8, 8, 4)), ValueError, r"shape \(H, W, 3\), got shape \(8, 8, 4\)"),
        (np.zeros((1, 8, 3)), ValueError, "at least 2x2 pixels, got 1x8"),
        (np.zeros((8, 8, 3), dtype=np.int16), TypeError, "uint8, float32 or float64, got int16"),
        (np.zeros((8, 8, 3), dtype=bool), TypeError, "uint8, float32 or float64, got bool"),
        (np.full((8, 8, 3), np.nan), ValueError, "finite image values in \\[0, 1\\], got NaN or inf"),
        (np.full((8, 8, 3), 1.5), ValueError, r"values in \[0, 1\], got range \[1.5, 1.5\]"),
        (np.full((8, 8, 3), -0.1, dtype=np.float32), ValueError, r"got range \[-0.1, -0.1\]"),
    ],
)
def test_bad_images_raise(image: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        apply_distortion(image, 1, 1)  # type: ignore[arg-type]


def test_bad_distortion_level_and_seed_raise() -> None:
    img = np.zeros((8, 8, 3))
    with pytest.raises(ValueError, match="distortion id in 1..32, got 33"):
        apply_distortion(img, 33, 1)
    with pytest.raises(ValueError, match="distortion id in 1..32, got 0"):
        get_distortion(0)
    with pytest.raises(ValueError, match="distortion name among .*gblur.*got 'blur'"):
        apply_distortion(img, "blur", 1)
    with pytest.raises(TypeError, match=r"id \(int 1..32\) or name \(str\), got float"):
        apply_distortion(img, 1.0, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got bool"):
        get_distortion(True)
    with pytest.raises(ValueError, match="level in 1..5, got 6"):
        apply_distortion(img, 1, 6)
    with pytest.raises(ValueError, match="level in 1..5, got 0"):
        apply_distortion(img, 1, 0)
    with pytest.raises(TypeError, match="level as an int in 1..5, got float"):
        apply_distortion(img, 1, 2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed as an int, a numpy.random.Generator or None, got str"):
        apply_distortion(img, 11, 1, seed="0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-negative seed, got -1"):
        apply_distortion(img, 11, 1, seed=-1)


# ---------------------------------------------------------------------------------------------------------------
# MATLAB semantics pinned on constructed cases
# ---------------------------------------------------------------------------------------------------------------


def test_mapmm_truncate_and_rounding_follow_matlab() -> None:
    x = np.array([[2.0, 4.0], [6.0, 10.0]])
    np.testing.assert_array_equal(mapmm(x), [[0.0, 0.25], [0.5, 1.0]])
    np.testing.assert_array_equal(mapmm(np.full((2, 2), 3.0)), np.full((2, 2), 3.0))
    np.testing.assert_array_equal(truncate(np.array([-0.5, 0.3, 1.7])), [0.0, 0.3, 1.0])
    np.testing.assert_array_equal(truncate(np.array([0.05, 0.5]), 0.1, 1.0), [0.1, 0.5])
    np.testing.assert_array_equal(round_half_away(np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.49])), [1, 2, 3, -1, -3, 0])
    np.testing.assert_array_equal(to_uint8(np.array([0.5 / 255, 2.5 / 255, 1.2, -0.1])), [1, 3, 255, 0])


def test_fspecial_kernels_match_matlab_test_vectors() -> None:
    disk = fspecial_disk(1)
    np.testing.assert_allclose(
        disk, [[0.0251, 0.1453, 0.0251], [0.1453, 0.3183, 0.1453], [0.0251, 0.1453, 0.0251]], atol=5e-5
    )
    for radius, side in ((1, 3), (2, 5), (4, 9), (6, 13), (8, 17)):
        k = fspecial_disk(radius)
        assert k.shape == (side, side) and math.isclose(k.sum(), 1.0)
    np.testing.assert_allclose(fspecial_motion(4, 0), [[0.125, 0.25, 0.25, 0.25, 0.125]], atol=1e-12)
    np.testing.assert_allclose(fspecial_motion(4, 90), np.array([[0.125, 0.25, 0.25, 0.25, 0.125]]).T, atol=1e-12)
    np.testing.assert_allclose(fspecial_motion(1, 37), [[1.0]], atol=1e-15)
    expected45 = [
        [0, 0, 0, 0.0133, 0],
        [0, 0, 0.0665, 0.2269, 0.0133],
        [0, 0.0665, 0.2269, 0.0665, 0],
        [0.0133, 0.2269, 0.0665, 0, 0],
        [0, 0.0133, 0, 0, 0],
    ]
    np.testing.assert_allclose(fspecial_motion(4, 45), expected45, atol=5e-5)
    np.testing.assert_array_equal(fspecial_motion(10, 0), fspecial_motion(10, 180))
    assert [gaussian_kernel1d(s).size for s in (0.1, 0.5, 1, 2, 5)] == [3, 3, 5, 9, 21]
    g = fspecial_gaussian(13, 3)
    np.testing.assert_allclose(g, np.outer(gaussian_kernel1d(3), gaussian_kernel1d(3)), atol=1e-15)


def test_imfilter_replicates_borders() -> None:
    ramp = np.tile(np.arange(6, dtype=np.float64), (5, 1))
    out = imfilter(ramp, np.full((3, 3), 1 / 9))
    np.testing.assert_allclose(out[:, 0], np.full(5, 1 / 3))  # (0 + 0 + 1) / 3 with the replicated column
    np.testing.assert_allclose(out[:, 2], np.full(5, 2.0))
    big = imfilter(ramp, fspecial_disk(4))  # FFT path
    np.testing.assert_allclose(big[:, 0], ramp[:, 0] + (fspecial_disk(4).sum(0)[5:] * np.arange(1, 5)).sum(), atol=1e-9)


def test_curves_is_the_not_a_knot_spline() -> None:
    x = np.linspace(0, 1, 11)
    for c in (0.3, 0.55, 0.85):
        np.testing.assert_allclose(curves(x, c), np.clip((2 - 4 * c) * x**2 + (4 * c - 1) * x, 0, 1), atol=1e-12)
    over = curves(x, 1.05)  # exceeds 1 for x in (0.455, 1) and is clipped
    assert over.max() == 1.0 and over[5] == 1.0 and over[4] < 1.0
    np.testing.assert_allclose(curves(np.array([0, 0.3, 0.5, 0.7, 1.0]), (0.175, 0.825)), [0, 0.175, 0.5, 0.825, 1])
    with pytest.raises(ValueError, match="one control value or a pair, got 3 values"):
        curves(x, (0.1, 0.2, 0.3))


def test_colour_conversions_match_matlab_constants() -> None:
    lab = rgb2lab(np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(lab[0], [53.2408, 80.0925, 67.2032], atol=1e-4)  # MATLAB doc: rgb2lab([1 0 0])
    np.testing.assert_allclose(lab[1], [100.0, 0.0, 0.0], atol=1e-4)
    ycc = rgb2ycbcr(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(ycc * 255, [[235, 128, 128], [16, 128, 128]], atol=1e-9)
    np.testing.assert_array_equal(ycbcr2rgb(np.array([0.0, 0.5, 0.5])), [0.0, 0.0, 0.0])  # clipped
    rgb = np.random.default_rng(0).random((6, 7, 3))
    np.testing.assert_allclose(hsv2rgb(rgb2hsv(rgb)), rgb, atol=1e-12)
    # Negative saturation: MATLAB divides the whole image by the largest unscaled triple (here 1 + 0.4).
    hsv = np.array([[[0.0, -0.4, 1.0], [0.5, 0.0, 0.5]]])
    np.testing.assert_allclose(hsv2rgb(hsv), [[[1 / 1.4, 1.0, 1.0], [0.5 / 1.4, 0.5 / 1.4, 0.5 / 1.4]]], atol=1e-12)


def test_imresize_nearest_sizes_and_index_rule() -> None:
    img = np.zeros((384, 512, 1))
    sizes = [imresize_nearest(img, scale=0.95 - s**0.6).shape[:2] for s in (0.01, 0.05, 0.1, 0.2, 0.5)]
    assert sizes == [(341, 455), (302, 402), (269, 358), (219, 292), (112, 149)]
    row = np.arange(10, dtype=np.float64)[None, :, None]
    np.testing.assert_array_equal(imresize_nearest(row, scale=0.5)[0, :, 0], [1, 3, 5, 7, 9])
    np.testing.assert_array_equal(imresize_nearest(row[:, :4], size=(1, 8))[0, :, 0], [0, 0, 1, 1, 2, 2, 3, 3])


def test_jpeg_uses_ijg_quality_scaling_and_420_chroma() -> None:
    annex_k_luma = [16, 11, 10, 16, 24, 40, 51, 61]
    img = _natural_image(32, 48, 0)
    for quality in (43, 24, 4):
        with Image.open(io.BytesIO(encode_jpeg(img, quality))) as im:
            scale = 5000 // quality
            expected = [min(max((q * scale + 50) // 100, 1), 255) for q in annex_k_luma]
            assert list(im.quantization[0][:8]) == expected
            assert JpegImagePlugin.get_sampling(im) == 2  # 4:2:0


def test_jpeg2000_meets_the_compression_ratio() -> None:
    img = to_uint8(_natural_image(96, 128, 0))
    raw = img.size
    sizes = [len(encode_jpeg2000(img, ratio)) for ratio in (16, 32, 45)]
    for ratio, size in zip((16, 32, 45), sizes, strict=True):
        assert 0.7 * raw / ratio < size <= 1.02 * raw / ratio
    assert encode_jpeg2000(img, 16)[:2] == b"\xff\x4f"  # J2K SOC marker


def test_multithresh_and_imquantize_semantics() -> None:
    rng = np.random.default_rng(1)
    img = np.concatenate([rng.normal(0.2, 0.03, 4000), rng.normal(0.8, 0.03, 4000)]).clip(0, 1)
    t = multithresh(img, 1)
    assert 0.3 < t[0] < 0.7
    t3 = multithresh(img, 3)
    assert np.all(np.diff(t3) > 0) and np.allclose(t3 * 255, np.round(t3 * 255))
    thresholds = np.array([0.2, 0.5, 0.7])
    values = np.array([0.0, 0.5, 0.7, 1.0])
    a = np.array([0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.71, 1.0])
    np.testing.assert_array_equal(imquantize(a, thresholds, values), [0, 0, 0.5, 0.5, 0.7, 0.7, 1, 1])
    out = apply_distortion(_natural_image(48, 64, 0), "noisequantize", 5)
    assert np.unique(out).size <= 8  # 7 thresholds -> at most 8 levels


def test_wu_palette_finds_well_separated_colours() -> None:
    colours = np.array([[10, 20, 30], [200, 40, 40], [30, 220, 60], [250, 250, 250]], dtype=np.uint8)
    pixels = np.repeat(colours, [50, 70, 30, 90], axis=0)
    palette = wu_palette(pixels, 4)
    assert sorted(map(tuple, palette.tolist())) == sorted(map(tuple, colours.tolist()))
    assert len(wu_palette(pixels, 64)) == 4  # never more colours than occupied histogram cells
    img = _natural_image(48, 64, 0)
    for level, n in enumerate((64, 48, 32, 16, 8), start=1):
        out = apply_distortion(to_uint8(img), "colorquantize", level)
        assert np.unique(out.reshape(-1, 3), axis=0).shape[0] <= n


def test_cubic_convolution_is_keys_a_minus_half() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((12, 14, 2))
    ii, jj = np.meshgrid(np.arange(12.0), np.arange(14.0), indexing="ij")
    np.testing.assert_allclose(cubic_convolution_warp(img, ii, jj), img, atol=1e-6)
    # Keys' kernel reproduces quadratics exactly away from the border.
    quad = (0.01 * ii**2 + 0.02 * jj)[..., None]
    got = cubic_convolution_warp(quad, ii[3:-3, 3:-3] + 0.25, jj[3:-3, 3:-3] - 0.5)
    expected = 0.01 * (ii[3:-3, 3:-3] + 0.25) ** 2 + 0.02 * (jj[3:-3, 3:-3] - 0.5)
    np.testing.assert_allclose(got[..., 0], expected, atol=1e-5)
    # Half-way between two samples the weights are (-1/16, 9/16, 9/16, -1/16).
    spike = np.zeros((1, 8, 1))
    spike[0, 4, 0] = 1.0
    half = cubic_convolution_warp(spike, np.zeros((1, 4)), np.array([[2.5, 3.5, 4.5, 5.5]]))
    np.testing.assert_allclose(half[0, :, 0], [-1 / 16, 9 / 16, 9 / 16, -1 / 16], atol=1e-7)


def test_mean_shift_darken_and_colour_shift_semantics(small_images: list[np.ndarray]) -> None:
    img = small_images[0]
    np.testing.assert_array_equal(apply_distortion(img, "meanshift", 3), img)
    dark = apply_distortion(img, "darken", 5)
    np.testing.assert_allclose(dark, curves(img, 0.1), atol=1e-12)  # endpoints kept: the final mapmm is a no-op
    shifted = apply_distortion(img, "colorshift", 5, seed=3)
    np.testing.assert_array_equal(shifted[..., [0, 2]], img[..., [0, 2]])  # only green moves
    assert not np.array_equal(shifted[..., 1], img[..., 1])


def test_color_block_paints_opaque_32x32_blocks() -> None:
    img = _natural_image(64, 64, 0)
    out = apply_distortion(img, "colorblock", 1, seed=5)  # two blocks
    changed = np.any(out != img, axis=-1)
    assert 32 * 32 <= changed.sum() <= 2 * 32 * 32
    rows = np.flatnonzero(changed.any(axis=1))
    assert rows.size >= 31


# ---------------------------------------------------------------------------------------------------------------
# Type 15: DnCNN substitute and fallback
# ---------------------------------------------------------------------------------------------------------------


def test_dncnn_layout_matches_kair_keys_and_loads_strictly(tmp_path: object) -> None:
    torch.manual_seed(0)
    model = DnCNN()
    keys = list(model.state_dict())
    assert keys[0] == "model.0.weight" and keys[-1] == "model.38.bias" and len(keys) == 40
    path = tmp_path / "dncnn_gray_blind.pth"  # type: ignore[operator]
    torch.save(model.state_dict(), path)
    denoiser = load_dncnn(path, device="cpu")
    img = _natural_image(20, 24, 0)
    out = apply_distortion(img, "denoise", 2, seed=0, denoiser=denoiser)
    assert out.shape == img.shape and out.dtype == np.float64
    np.testing.assert_array_equal(out, apply_distortion(img, "denoise", 2, seed=0, denoiser=denoiser))
    plane = img[..., 0]
    expected = plane - model.model(torch.from_numpy(plane.astype(np.float32))[None, None])[0, 0].detach().numpy()
    np.testing.assert_allclose(denoiser(plane), expected, atol=1e-6)
    bad = {k.replace("model.38", "model.40"): v for k, v in model.state_dict().items()}
    torch.save(bad, tmp_path / "bad.pth")  # type: ignore[operator]
    with pytest.raises(RuntimeError, match="model.40"):
        load_dncnn(tmp_path / "bad.pth")  # type: ignore[operator]
    with pytest.raises(FileNotFoundError, match="missing path"):
        load_dncnn(tmp_path / "absent.pth")  # type: ignore[operator]


def test_denoise_validates_the_denoiser_and_warns_about_the_fallback(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    img = _natural_image(20, 24, 0)
    with pytest.raises(TypeError, match="callable denoiser or None, got int"):
        apply_distortion(img, 15, 1, denoiser=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"return shape \(20, 24\), got \(4, 4\)"):
        apply_distortion(img, 15, 1, denoiser=lambda p: np.zeros((4, 4)))
    monkeypatch.setattr(denoise_module, "_fallback_warned", False)
    with caplog.at_level(logging.WARNING, logger=denoise_module.__name__):
        apply_distortion(img, 15, 1)
        apply_distortion(img, 15, 2)
    assert sum("non-local-means fallback" in r.message for r in caplog.records) == 1
    identity = apply_distortion(img, 15, 1, seed=4, denoiser=lambda p: p)  # no denoising: just the clipped noise
    noisy = np.clip(img + 0.1 * np.random.default_rng(4).standard_normal(img.shape), 0, 1)
    np.testing.assert_allclose(identity, mapmm(noisy), atol=1e-12)
