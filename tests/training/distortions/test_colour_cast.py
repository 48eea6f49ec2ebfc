"""Tests of our distortion types beyond KADID's (26 and up): colour casts, hue rotation and stacks.

Each must make the image measurably worse as the level rises, in PSNR and in mean CIEDE2000, and a cast must survive
the generator's pipeline (no final min-max normalisation).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vtamiq_metric.training.distortions import EXTRA_DISTORTIONS, apply_distortion, get_distortion
from vtamiq_metric.training.distortions._matlab import linear_to_srgb, mapmm, rgb2lab, srgb_to_linear
from vtamiq_metric.training.distortions.colour_cast import (
    REFERENCE_KELVIN,
    channel_gain_cast,
    hue_rotation,
    planckian_xy,
    white_balance_cast,
    white_balance_matrix,
)

PHOTO = Path(__file__).resolve().parents[3] / "examples" / "images" / "coffee_ref.png"


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005; kL = kC = kH = 1) of (..., 3) L*a*b* arrays."""
    l1, a1, b1 = np.moveaxis(np.asarray(lab1, dtype=np.float64), -1, 0)
    l2, a2, b2 = np.moveaxis(np.asarray(lab2, dtype=np.float64), -1, 0)
    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_mean**7 / (c_mean**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p, h2p = np.degrees(np.arctan2(b1, a1p)) % 360, np.degrees(np.arctan2(b2, a2p)) % 360
    achromatic = c1p * c2p == 0
    dh = h2p - h1p
    dh = np.where(achromatic, 0.0, np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh)))
    dl, dc, dhp = l2 - l1, c2p - c1p, 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2)
    l_mean, c_mean_p, h_sum = (l1 + l2) / 2, (c1p + c2p) / 2, h1p + h2p
    h_mean = np.where(np.abs(h1p - h2p) > 180, np.where(h_sum < 360, h_sum + 360, h_sum - 360) / 2, h_sum / 2)
    h_mean = np.where(achromatic, h_sum, h_mean)
    t = (1 - 0.17 * np.cos(np.radians(h_mean - 30)) + 0.24 * np.cos(np.radians(2 * h_mean))
         + 0.32 * np.cos(np.radians(3 * h_mean + 6)) - 0.20 * np.cos(np.radians(4 * h_mean - 63)))
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / np.sqrt(20 + (l_mean - 50) ** 2)
    s_c, s_h = 1 + 0.045 * c_mean_p, 1 + 0.015 * c_mean_p * t
    r_t = -2 * np.sqrt(c_mean_p**7 / (c_mean_p**7 + 25.0**7)) * np.sin(
        np.radians(60 * np.exp(-(((h_mean - 275) / 25) ** 2))))
    return np.sqrt((dl / s_l) ** 2 + (dc / s_c) ** 2 + (dhp / s_h) ** 2 + r_t * (dc / s_c) * (dhp / s_h))


def _psnr(ref: np.ndarray, dist: np.ndarray) -> float:
    return 10 * math.log10(1.0 / float(np.mean((ref - dist) ** 2)))


def _mean_ciede2000(ref: np.ndarray, dist: np.ndarray) -> float:
    return float(ciede2000(rgb2lab(ref), rgb2lab(dist)).mean())


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 192 x 256 crop of the coffee photograph, float64 in [0, 1]."""
    with Image.open(PHOTO) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)[96:288, 128:384] / 255.0


def test_ciede2000_helper_matches_sharma_test_data() -> None:
    pairs = [  # Sharma, Wu & Dalal (2005), Table 1: pairs 1, 7, 17, 25 and two hue-wrap cases
        ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
        ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
        ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
        ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
        ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0011), 7.2195),
        ((50.0, -0.001, 2.49), (50.0, 0.0009, -2.49), 4.8045),
    ]
    for lab1, lab2, expected in pairs:
        assert float(ciede2000(np.array(lab1), np.array(lab2))) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize("type_id", sorted(EXTRA_DISTORTIONS))
def test_every_new_type_gets_worse_with_the_level(type_id: int, photo: np.ndarray) -> None:
    seeds = range(3)
    psnr = [np.mean([_psnr(photo, apply_distortion(photo, type_id, lv, seed=s)) for s in seeds]) for lv in range(1, 6)]
    delta_e = [np.mean([_mean_ciede2000(photo, apply_distortion(photo, type_id, lv, seed=s)) for s in seeds])
               for lv in range(1, 6)]
    assert all(b < a for a, b in itertools.pairwise(psnr)), f"PSNR per level not decreasing: {psnr}"
    assert all(b > a for a, b in itertools.pairwise(delta_e)), f"CIEDE2000 per level not increasing: {delta_e}"
    assert delta_e[0] > 0.3  # level 1 is visible in colour, not a rounding error


def test_the_levels_and_parameters_are_documented() -> None:
    assert (get_distortion(26).name, get_distortion(26).levels) == ("wbcast", (10.0, 20.0, 35.0, 60.0, 100.0))
    assert (get_distortion(27).name, get_distortion(27).levels) == ("gaincast", (0.05, 0.1, 0.2, 0.4, 0.8))
    assert (get_distortion(28).name, get_distortion(28).levels) == ("huerotate", (4.0, 8.0, 15.0, 25.0, 40.0))
    assert [get_distortion(t).name for t in (29, 30, 31, 32)] == ["noise_gaincast", "jpeg_wbcast", "lblur_jpeg",
                                                                 "lblur_noise"]
    assert get_distortion(29).parameter == ("level L applies type 11 (noisegauss) at level L, then type 27 (gaincast) "
                                            "at level L")


def test_casts_survive_the_pipeline_without_the_final_normalisation(photo: np.ndarray) -> None:
    for type_id, cast in ((26, white_balance_cast), (27, channel_gain_cast), (28, hue_rotation)):
        value = get_distortion(type_id).levels[4]
        direct = cast(photo, value, np.random.default_rng(3))
        np.testing.assert_array_equal(apply_distortion(photo, type_id, 5, seed=3), direct)
    # A bluish picture whose brightest values are blue: a warm cast lowers them, so the global maximum drops below 1.
    # The generator's final mapmm would stretch the result back, putting the blue the cast took out of the highlights
    # back in (and adding a contrast change of its own).
    bluish = photo * np.array([0.6, 0.8, 1.0])
    warm_seed = next(s for s in range(20) if np.random.default_rng(s).random() < 0.5)
    warm = apply_distortion(bluish, 26, 5, seed=warm_seed)
    assert warm.max() < 0.95 and warm[..., 2].max() < 0.9
    assert mapmm(warm)[..., 2].max() > warm[..., 2].max() + 0.05


def test_white_balance_cast_is_a_planckian_von_kries_shift() -> None:
    x, y = planckian_xy(REFERENCE_KELVIN)
    assert (x, y) == pytest.approx((0.3135, 0.3236), abs=5e-4)  # the Planckian point near D65 (0.3127, 0.3290)
    assert planckian_xy(2856.0) == pytest.approx((0.4476, 0.4074), abs=1e-3)  # illuminant A
    np.testing.assert_allclose(white_balance_matrix(0.0), np.eye(3), atol=1e-12)
    grey = np.full((4, 4, 3), 0.5)
    warm = next(s for s in range(20) if np.random.default_rng(s).random() < 0.5)
    cool = next(s for s in range(20) if np.random.default_rng(s).random() >= 0.5)
    warm_out = white_balance_cast(grey, 60.0, np.random.default_rng(warm))[0, 0]
    cool_out = white_balance_cast(grey, 60.0, np.random.default_rng(cool))[0, 0]
    assert warm_out[0] > warm_out[1] > warm_out[2]  # orange
    assert cool_out[2] > cool_out[1] > cool_out[0]  # blue
    # the luminance of a grey is kept (the target white has Y = 1)
    luminance = srgb_to_linear(np.stack([warm_out, cool_out])) @ np.array([0.2126729, 0.7151522, 0.0721750])
    np.testing.assert_allclose(luminance, srgb_to_linear(np.array(0.5)), rtol=2e-3)
    with pytest.raises(ValueError, match=r"colour temperature in 1667..25000 K, got 1000.0"):
        planckian_xy(1000.0)


def test_channel_gain_cast_has_the_level_magnitude_and_unit_geometric_mean() -> None:
    grey = np.full((4, 4, 3), float(linear_to_srgb(np.array(0.18))))
    for magnitude in (0.05, 0.4, 0.8):
        out = channel_gain_cast(grey, magnitude, np.random.default_rng(11))
        log_gains = np.log(srgb_to_linear(out[0, 0]) / 0.18)
        assert float(np.linalg.norm(log_gains)) == pytest.approx(magnitude, rel=1e-9)
        assert float(log_gains.sum()) == pytest.approx(0.0, abs=1e-12)


def test_hue_rotation_keeps_lightness_and_chroma_and_turns_the_hue() -> None:
    patch = np.tile(np.array([0.55, 0.45, 0.35]), (4, 4, 1))  # an in-gamut brown, far from the gamut border
    lab = rgb2lab(patch)[0, 0]
    for seed in range(4):
        sign = 1.0 if np.random.default_rng(seed).random() < 0.5 else -1.0
        out = rgb2lab(hue_rotation(patch, 15.0, np.random.default_rng(seed)))[0, 0]
        assert out[0] == pytest.approx(lab[0], abs=1e-9)
        assert math.hypot(out[1], out[2]) == pytest.approx(math.hypot(lab[1], lab[2]), abs=1e-9)
        turned = math.degrees(math.atan2(out[2], out[1]) - math.atan2(lab[2], lab[1]))
        assert turned == pytest.approx(15.0 * sign, abs=1e-9)
    grey = np.full((4, 4, 3), 0.4)
    np.testing.assert_allclose(hue_rotation(grey, 40.0, np.random.default_rng(0)), grey, atol=1e-6)  # Lab round trip


def test_a_cast_on_top_of_noise_is_worse_than_the_noise_alone(photo: np.ndarray) -> None:
    # The blind spot of issue 20: noise, then a colour cast, must be further from the reference than the noise.
    for level in (2, 4):
        noise = apply_distortion(photo, 11, level, seed=4)
        stacked = apply_distortion(photo, 29, level, seed=4)  # the same noise draws, then the gains
        assert _psnr(photo, stacked) < _psnr(photo, noise)
        assert _mean_ciede2000(photo, stacked) > _mean_ciede2000(photo, noise)
