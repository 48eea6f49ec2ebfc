"""Tests of the weak labels (VSI, MS-SSIM) and their registry.

piq (Apache-2.0) is used only as an independent comparison. Where we follow the MATLAB VSI and piq does not
(docs/background/datasets.md §2: resize to/from 256 x 256, the F x F box grid and border, rounding of F), a test pins
the MATLAB-consistent behaviour of the step directly.
"""

from __future__ import annotations

import importlib
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vtamiq_metric.training.labels import LABELS, compute_label, ms_ssim, sdsp, ssim, vsi

# The package re-exports the function ``vsi``, which shadows the submodule of the same name as an attribute.
vsi_module = importlib.import_module("vtamiq_metric.training.labels.vsi")

piq = pytest.importorskip("piq")


def _natural_like(height: int, width: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    """Smooth colour gradients + oriented texture + a few soft blobs, (batch, 3, H, W) float64 in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.linspace(0, 1, height, dtype=torch.float64),
        torch.linspace(0, 1, width, dtype=torch.float64),
        indexing="ij",
    )
    images = []
    for _ in range(batch):
        phase = torch.rand(6, generator=gen, dtype=torch.float64) * 2 * math.pi
        r = 0.45 + 0.3 * torch.sin(4 * xx + 2 * yy + phase[0]) + 0.1 * torch.sin(37 * xx + 11 * yy + phase[1])
        g = 0.35 + 0.4 * xx * yy + 0.08 * torch.sin(29 * yy + phase[2])
        b = 0.5 + 0.25 * torch.cos(6 * yy + phase[3]) + 0.06 * torch.sin(53 * xx + phase[4])
        image = torch.stack([r, g, b])
        for _ in range(3):
            cy, cx, c = torch.rand(3, generator=gen, dtype=torch.float64)
            blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.01)
            image[int(c * 3)] += 0.3 * blob
        image += 0.02 * torch.randn(image.shape, generator=gen, dtype=torch.float64)
        images.append(image.clamp(0, 1))
    return torch.stack(images)


def _noisy(ref: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (ref + sigma * torch.randn(ref.shape, generator=gen, dtype=ref.dtype)).clamp(0, 1)


# ---------------------------------------------------------------------------------------------------------------
# VSI: basic properties


_LARGE = pytest.mark.slow  # 384 x 512 images: seconds per VSI on 2 cores


@pytest.mark.parametrize("size", [(48, 64), (256, 256), pytest.param((384, 512), marks=_LARGE)])
def test_vsi_identical_is_one(size):
    ref = _natural_like(*size, batch=2)
    out = vsi(ref, ref)
    assert out.shape == (2,) and out.dtype == torch.float64
    torch.testing.assert_close(out, torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("size", [(48, 64), pytest.param((384, 512), marks=_LARGE)])
def test_vsi_decreases_with_noise(size):
    ref = _natural_like(*size, seed=3)
    sigmas = [0.0, 0.01, 0.03, 0.06, 0.12, 0.25]
    scores = [float(vsi(ref, _noisy(ref, s))) for s in sigmas]
    assert scores[0] == pytest.approx(1.0, abs=1e-12)
    assert all(a > b for a, b in itertools.pairwise(scores)), scores
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_vsi_batch_equals_singles_and_broadcast_ref():
    ref = _natural_like(64, 80, seed=5, batch=2)
    dist = _noisy(ref, 0.08)
    batched = vsi(ref, dist)
    singles = torch.cat([vsi(ref[i : i + 1], dist[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(batched, singles, rtol=0, atol=1e-12)
    # one reference compared with a batch of distortions (used by the KADIS generator)
    shared = vsi(ref[:1], dist)
    torch.testing.assert_close(shared, vsi(ref[:1].expand(2, -1, -1, -1), dist), rtol=0, atol=1e-12)


def test_vsi_symmetric_float32_input_and_gray_images():
    ref = _natural_like(40, 56, seed=7)
    dist = _noisy(ref, 0.1)
    torch.testing.assert_close(vsi(ref, dist), vsi(dist, ref), rtol=0, atol=1e-12)
    torch.testing.assert_close(vsi(ref.float(), dist.float()), vsi(ref, dist), rtol=0, atol=1e-6)
    # grey images have constant a*, b*, where MATLAB divides 0 by 0; we return a finite, documented value
    grey = ref.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    score = vsi(grey, _noisy(grey, 0.05).mean(dim=1, keepdim=True).expand(-1, 3, -1, -1))
    assert torch.isfinite(score).all() and 0.0 < float(score) < 1.0
    assert float(vsi(grey, grey)) == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# VSI versus piq


@pytest.mark.slow  # piq in float64
def test_vsi_matches_piq_where_the_steps_coincide():
    # At 256 x 256 every resize is the identity and F = 1, so the only difference left is the D50 white
    # (MATLAB 0.9642 / 0.8251, piq 0.96421 / 0.82519), which moves VSI by about 2e-7 here.
    ref = _natural_like(256, 256, seed=11, batch=2)
    for sigma in (0.02, 0.08, 0.2):
        dist = _noisy(ref, sigma)
        ours = vsi(ref, dist)
        theirs = piq.vsi(ref, dist, data_range=1.0, reduction="none")
        torch.testing.assert_close(ours, theirs.to(ours.dtype), rtol=0, atol=2e-6)


@pytest.mark.parametrize(("size", "atol"), [pytest.param((384, 512), 3e-3, marks=_LARGE),
                                            pytest.param((300, 200), 3e-3, marks=_LARGE), ((48, 64), 2e-2)])
def test_vsi_close_to_piq_elsewhere(size, atol):
    # piq resizes without antialiasing and with align_corners=True on the way back, and shifts the F x F grid
    # (docs/background/datasets.md §2). These mostly change the saliency weights, so VSI moves little: measured
    # differences are <= 5e-4 for 384 x 512 and 300 x 200, and up to 7e-3 for 48 x 64, where the saliency map goes back
    # from 256 x 256 with a 4-5x antialiased shrink in MATLAB but a plain bilinear sample in piq. Tolerances leave a
    # 3-6x margin.
    ref = _natural_like(*size, seed=13)
    for sigma in (0.02, 0.06, 0.15):
        dist = _noisy(ref, sigma)
        ours = float(vsi(ref, dist))
        theirs = float(piq.vsi(ref, dist, data_range=1.0))
        assert ours == pytest.approx(theirs, abs=atol), (size, sigma)


@pytest.mark.slow  # 384 x 512
def test_vsi_differs_from_piq_on_the_f2_path():
    # 384 x 512 takes the F = 2 path; MATLAB's box grid starts at pixel 1, piq's at pixel 0 (replicated).
    ref = _natural_like(384, 512, seed=17)
    dist = _noisy(ref, 0.1)
    assert vsi_module.vsi_downsample_factor(384, 512) == 2
    assert abs(float(vsi(ref, dist)) - float(piq.vsi(ref, dist, data_range=1.0))) > 1e-6


# ---------------------------------------------------------------------------------------------------------------
# VSI: MATLAB-consistent steps pinned on constructed cases


@pytest.mark.parametrize(
    ("size", "expected"),
    [((48, 64), 1), ((383, 384), 1), ((384, 512), 2), ((640, 700), 3), ((1152, 1200), 5), ((2000, 1407), 5)],
)
def test_downsample_factor_uses_matlab_rounding(size, expected):
    # 640/256 = 2.5 and 1152/256 = 4.5: MATLAB rounds half away from zero (3, 5), Python's round gives 2 and 4.
    assert vsi_module.vsi_downsample_factor(*size) == expected


def test_box_downsample_is_conv2_same_then_stride():
    x = torch.arange(1.0, 26.0, dtype=torch.float64).view(1, 1, 5, 5)
    # F = 2: conv2(X, ones(2)/4, 'same') sums X(i:i+1, j:j+1) (zero outside), sampled at 1, 3, 5.
    out2 = vsi_module._box_downsample(x, 2)[0, 0]
    expected2 = torch.tensor(
        [[(1 + 2 + 6 + 7) / 4, (3 + 4 + 8 + 9) / 4, (5 + 10) / 4],
         [(11 + 12 + 16 + 17) / 4, (13 + 14 + 18 + 19) / 4, (15 + 20) / 4],
         [(21 + 22) / 4, (23 + 24) / 4, 25 / 4]],
        dtype=torch.float64,
    )  # fmt: skip
    torch.testing.assert_close(out2, expected2, rtol=0, atol=1e-12)
    # F = 3: the window is X(i-1:i+1, j-1:j+1), sampled at 1 and 4: the first window straddles the zero border.
    out3 = vsi_module._box_downsample(x, 3)[0, 0]
    expected3 = torch.tensor(
        [[(1 + 2 + 6 + 7) / 9, (3 + 4 + 5 + 8 + 9 + 10) / 9],
         [(11 + 12 + 16 + 17 + 21 + 22) / 9, (13 + 14 + 15 + 18 + 19 + 20 + 23 + 24 + 25) / 9]],
        dtype=torch.float64,
    )  # fmt: skip
    torch.testing.assert_close(out3, expected3, rtol=0, atol=1e-12)


def test_lab_conversion_of_known_colours():
    rgb = torch.tensor(
        [[255.0, 255.0, 255.0], [0.0, 0.0, 0.0], [255.0, 0.0, 0.0], [0.0, 0.0, 255.0]], dtype=torch.float64
    )
    lab = vsi_module._rgb_to_lab(rgb.T.reshape(1, 3, 1, 4))[0, :, 0].T  # (4, 3)

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else (903.3 * t + 16) / 116

    # sRGB white has XYZ = row sums of the D65 matrix (Y = 1.0000001); VSI divides by the D50 white, no adaptation.
    x_w, y_w, z_w = (
        0.4124564 + 0.3575761 + 0.1804375,
        0.2126729 + 0.7151522 + 0.0721750,
        0.0193339 + 0.1191920 + 0.9503041,
    )
    white = [116 * f(y_w) - 16, 500 * (f(x_w / 0.9642) - f(y_w)), 200 * (f(y_w) - f(z_w / 0.8251))]
    assert white[1] == pytest.approx(-2.39, abs=0.01) and white[2] == pytest.approx(-19.37, abs=0.02)
    red_y = 0.2126729
    red = [116 * f(red_y) - 16, 500 * (f(0.4124564 / 0.9642) - f(red_y)), 200 * (f(red_y) - f(0.0193339 / 0.8251))]
    assert red[0] == pytest.approx(53.2408, abs=1e-4)  # MATLAB's documented L* of pure red
    blue_y = 0.0721750
    blue = [116 * f(blue_y) - 16, 500 * (f(0.1804375 / 0.9642) - f(blue_y)), 200 * (f(blue_y) - f(0.9503041 / 0.8251))]
    expected = torch.tensor([white, [0.0, 0.0, 0.0], red, blue], dtype=torch.float64)
    torch.testing.assert_close(lab, expected, rtol=0, atol=1e-9)
    # piq's D50 white differs in the 5th digit only, so its L*a*b* agrees to ~1e-2
    piq_lab = piq.functional.rgb2lab(rgb.T.reshape(1, 3, 1, 4), data_range=255)[0, :, 0].T
    torch.testing.assert_close(lab, piq_lab, rtol=0, atol=1e-2)


def test_log_gabor_properties():
    lg = vsi_module._log_gabor(256, 256).numpy()
    assert lg[0, 0] == 0.0  # no DC response
    assert lg[128, 128] == 0.0  # radius sqrt(0.5) > 0.5 is masked
    # even in frequency (so the real part of ifft2(fft2(x) * LG) equals irfft2 of the half spectrum)
    np.testing.assert_array_equal(lg, np.roll(lg[::-1, ::-1], 1, axis=(0, 1)))
    r = 1 / 256
    expected = math.exp(-(math.log(r / 0.021) ** 2) / (2 * 1.34**2))
    assert lg[0, 1] == pytest.approx(expected, rel=1e-12) and lg[1, 0] == pytest.approx(expected, rel=1e-12)
    # radius 5/256 ~ 0.0195 is the grid frequency nearest omega0 = 0.021 on an axis: the axis peak
    assert int(np.argmax(lg[0, :128])) == 5
    assert lg[0, 128] == pytest.approx(math.exp(-(math.log(0.5 / 0.021) ** 2) / (2 * 1.34**2)), rel=1e-12)
    # odd sizes use (n - 1) in the denominator, as MATLAB's logGabor does
    odd = vsi_module._log_gabor(5, 5).numpy()
    assert odd[0, 1] == pytest.approx(math.exp(-(math.log(0.25 / 0.021) ** 2) / (2 * 1.34**2)), rel=1e-12)


def _imresize_matrix(in_len: int, out_len: int) -> np.ndarray:
    """Dense (out_len, in_len) float64 matrix of ``vsi._imresize_taps`` (``resized = M @ signal``)."""
    index, weight = vsi_module._imresize_taps(in_len, out_len)
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.repeat(np.arange(out_len), index.shape[1])
    np.add.at(matrix, (rows, index.numpy().ravel()), weight.numpy().ravel())
    return matrix


def test_imresize_matches_matlab_bilinear_rules():
    # Shrinking with MATLAB's antialiasing: [1 2 3 4] -> 2 samples. Output pixel 1 maps to u = 1.5, the triangle is
    # stretched to width 4 and the tap left of the border is mirrored onto pixel 1: weights (0.5, 0.375, 0.125, 0).
    m = _imresize_matrix(4, 2)
    np.testing.assert_allclose(m @ np.array([1.0, 2.0, 3.0, 4.0]), [1.625, 3.375], rtol=0, atol=1e-12)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # Away from the borders the antialiased triangle equals torch's (PIL-style) antialiased bilinear filter; at the
    # borders MATLAB mirrors the signal where torch renormalises the truncated kernel.
    eye = torch.eye(384, dtype=torch.float64)[None, None]
    torch_down = F.interpolate(eye, size=(256, 384), mode="bilinear", antialias=True, align_corners=False)[0, 0]
    ours_down = _imresize_matrix(384, 256)
    np.testing.assert_allclose(ours_down[3:-3], torch_down.numpy()[3:-3], rtol=0, atol=1e-12)
    assert np.abs(ours_down[0] - torch_down.numpy()[0]).max() > 1e-3
    # Enlarging is plain bilinear with pixel-centre alignment (align_corners=False), also at the borders.
    eye = torch.eye(256, dtype=torch.float64)[None, None]
    torch_up = F.interpolate(eye, size=(384, 256), mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(_imresize_matrix(256, 384), torch_up.numpy(), rtol=0, atol=1e-12)


def test_sdsp_range_and_centre_bias():
    # On stationary noise the frequency and colour priors are flat on average, so the location prior
    # exp(-d^2 / 145^2) on the 256 x 256 grid dominates: the centre is about exp(1.5) ~ 4x as salient as the corners.
    noise = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    saliency = sdsp(noise)
    assert saliency.shape == (1, 96, 128) and saliency.dtype == torch.float64
    assert float(saliency.min()) == 0.0 and float(saliency.max()) == 1.0  # mat2gray
    centre = float(saliency[0, 40:56, 56:72].mean())
    corners = [float(saliency[0, rows, cols].mean()) for rows in (slice(0, 16), slice(-16, None))
               for cols in (slice(0, 16), slice(-16, None))]  # fmt: skip
    assert all(centre > 2 * corner for corner in corners)


# ---------------------------------------------------------------------------------------------------------------
# Input validation


def test_bad_inputs_raise_with_messages():
    good = torch.rand(1, 3, 32, 32)
    with pytest.raises(TypeError, match=r"expected a torch\.Tensor"):
        vsi(np.zeros((1, 3, 32, 32)), good)
    with pytest.raises(TypeError, match=r"floating-point.*got dtype torch\.uint8"):
        vsi(good, (good * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"expected shape \(B, 3, H, W\).*got \(3, 32, 32\)"):
        vsi(good[0], good[0])
    with pytest.raises(ValueError, match=r"got \(1, 1, 32, 32\)"):
        ms_ssim(good[:, :1], good[:, :1])
    with pytest.raises(ValueError, match="same shape"):
        vsi(good, torch.rand(1, 3, 32, 30))
    with pytest.raises(ValueError, match="same shape"):
        vsi(torch.rand(2, 3, 32, 32), torch.rand(3, 3, 32, 32))
    with pytest.raises(ValueError, match=r"values in \[0, 1\], got range"):
        vsi(good, good * 255)
    with pytest.raises(ValueError, match="NaN or infinity"):
        vsi(good, torch.full_like(good, float("nan")))
    with pytest.raises(ValueError, match="at least 11 x 11"):
        ssim(torch.rand(1, 3, 8, 32), torch.rand(1, 3, 8, 32))


# ---------------------------------------------------------------------------------------------------------------
# MS-SSIM / SSIM and the registry


@pytest.mark.slow  # piq in float64
def test_ms_ssim_identical_noise_and_piq():
    ref = _natural_like(192, 176, seed=19, batch=2)
    torch.testing.assert_close(ms_ssim(ref, ref), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)
    scores = [ms_ssim(ref, _noisy(ref, s)) for s in (0.01, 0.04, 0.1, 0.3)]
    assert all(bool((a > b).all()) for a, b in itertools.pairwise(scores))
    # Our labels are piq's MS-SSIM filtered in float32 (measured difference to piq's float64 result: ~2e-6).
    dist = _noisy(ref, 0.1)
    theirs = piq.multi_scale_ssim(ref, dist, data_range=1.0, reduction="none")
    torch.testing.assert_close(ms_ssim(ref, dist), theirs.to(torch.float64), rtol=0, atol=1e-5)
    torch.testing.assert_close(ms_ssim(ref[:1], dist), ms_ssim(ref[:1].expand(2, -1, -1, -1), dist), rtol=0, atol=0)


def test_ms_ssim_small_images_fall_back_to_ssim():
    ref = _natural_like(48, 64, seed=23, batch=2)
    dist = _noisy(ref, 0.08)
    torch.testing.assert_close(ms_ssim(ref, dist), ssim(ref, dist), rtol=0, atol=1e-12)
    theirs = piq.ssim(ref, dist, data_range=1.0, reduction="none", downsample=False)
    torch.testing.assert_close(ssim(ref, dist), theirs.to(torch.float64), rtol=0, atol=1e-5)  # float32 filtering
    assert float(ms_ssim(ref[:1], ref[:1])) == pytest.approx(1.0, abs=1e-12)
    assert bool((ms_ssim(ref, _noisy(ref, 0.2)) < ms_ssim(ref, dist)).all())


@pytest.mark.parametrize("name", sorted(LABELS))
def test_every_registered_label_is_a_similarity_in_unit_range(name):
    ref = _natural_like(48, 64, seed=29, batch=2)
    mild, strong = _noisy(ref, 0.05), _noisy(ref, 0.2)
    same = compute_label(name, ref, ref)
    assert same.dtype == torch.float64 and same.shape == (2,)
    torch.testing.assert_close(same, torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)
    values = compute_label(name, ref, mild)
    assert bool(((values >= 0) & (values < 1)).all()) and bool((compute_label(name, ref, strong) < values).all())
    torch.testing.assert_close(compute_label(name, ref[:1], mild[:1]), values[:1], rtol=0, atol=1e-7)


def test_compute_label_dispatches_by_name_and_names_the_choices():
    ref = _natural_like(48, 64, seed=29)
    dist = _noisy(ref, 0.05)
    torch.testing.assert_close(compute_label("vsi", ref, dist), vsi(ref, dist), rtol=0, atol=0)
    torch.testing.assert_close(compute_label("ms_ssim", ref, dist), ms_ssim(ref, dist), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"unknown label 'fsim'; expected one of \['ms_ssim', 'teacher', 'vsi'\]"):
        compute_label("fsim", ref, dist)
    with pytest.raises(TypeError, match="expected a label name"):
        compute_label(3, ref, dist)


@pytest.mark.cuda
def test_vsi_cuda_matches_cpu():
    ref = _natural_like(384, 512, seed=31, batch=2)
    dist = _noisy(ref, 0.1)
    torch.testing.assert_close(vsi(ref.cuda(), dist.cuda()).cpu(), vsi(ref, dist), rtol=0, atol=1e-10)
    torch.testing.assert_close(ms_ssim(ref.cuda(), dist.cuda()).cpu(), ms_ssim(ref, dist), rtol=0, atol=1e-5)
