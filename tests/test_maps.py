"""damage_map(): where the score comes from. Localisation with the bundled model, completeness, zeros, invariances."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import vtamiq_metric
from vtamiq_metric import VTAMIQ, damage_map, score

IMAGES = Path(__file__).resolve().parents[1] / "examples" / "images"


def _photo(size: int = 128) -> torch.Tensor:
    """A (1, 3, size, size) centre crop of the coffee example photograph (a synthetic texture without it)."""
    path = IMAGES / "coffee_ref.png"
    if not path.is_file():
        yy, xx = torch.meshgrid(torch.linspace(0, 6, size), torch.linspace(0, 6, size), indexing="ij")
        return torch.stack([torch.sin(xx * yy) * 0.4 + 0.5, torch.cos(3 * xx) * 0.3 + 0.5, yy / 6])[None]
    image = np.asarray(Image.open(path).convert("RGB"))
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    crop = image[top:top + size, left:left + size].copy()
    return torch.from_numpy(crop).permute(2, 0, 1).float().div(255)[None]


def _blur(x: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    radius = int(3 * sigma)
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).to(x.dtype)
    flat = F.pad(x.reshape(-1, 1, *x.shape[-2:]), (radius,) * 4, mode="reflect")
    flat = F.conv2d(F.conv2d(flat, taps.view(1, 1, 1, -1)), taps.view(1, 1, -1, 1))
    return flat.reshape(x.shape)


def _noise(x: torch.Tensor) -> torch.Tensor:
    return (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)


def _jpeg(x: torch.Tensor) -> torch.Tensor:
    array = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=10)
    buffer.seek(0)
    decoded = np.asarray(Image.open(buffer).convert("RGB")).copy()
    return torch.from_numpy(decoded).permute(2, 0, 1).float().div(255)[None]


@pytest.fixture(scope="module")
def bundled():
    """The package's default model, whichever file is bundled (the test must hold for any of them)."""
    from vtamiq_metric.api import default_model_name

    return vtamiq_metric.load_model(default_model_name()).eval()


@pytest.mark.parametrize("distortion", [_blur, _noise, _jpeg], ids=["blur", "noise", "jpeg"])
def test_one_distorted_quadrant_holds_most_of_the_map(bundled, distortion):
    ref = _photo(128)
    dist = ref.clone()
    dist[..., :64, 64:] = distortion(ref)[..., :64, 64:]  # top-right quadrant only
    heat = damage_map(ref, dist, model=bundled, num_patches=256, num_repeats=2)
    assert heat.shape == (1, 128, 128) and bool((heat >= 0).all()) and heat.sum() > 0
    assert heat[..., :64, 64:].sum() >= 0.8 * heat.sum()


def test_the_map_weighs_a_strong_distortion_above_a_weak_one(bundled):
    ref = _photo(128)
    noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    dist = ref.clone()
    dist[..., :64, :64] = (ref + 0.15 * noise).clamp(0, 1)[..., :64, :64]
    dist[..., 64:, 64:] = (ref + 0.03 * noise).clamp(0, 1)[..., 64:, 64:]
    heat = damage_map(ref, dist, model=bundled, num_patches=256, num_repeats=2)
    # Measured about 10x with the first bundled model; any sensible metric counts 5x stronger noise more.
    assert heat[..., :64, :64].sum() > 3 * heat[..., 64:, 64:].sum()


def test_identical_pairs_give_an_all_zero_map(bundled, tiny_model):
    ref = _photo(64)
    assert torch.equal(damage_map(ref, ref.clone(), model=bundled, num_patches=64, num_repeats=1),
                       torch.zeros(1, 64, 64))
    assert not damage_map(ref, ref, model=tiny_model, num_patches=16, signed=True).any()


def test_the_map_is_exactly_zero_where_nothing_changed(tiny_model):
    ref = _photo(64)
    dist = ref.clone()
    dist[..., 10:30, 20:50] = (dist[..., 10:30, 20:50] * 0.5 + 0.2)
    heat = damage_map(ref, dist, model=tiny_model, num_patches=32, num_repeats=3, signed=True)
    changed = (dist != ref).any(1)  # (1, H, W)
    assert not heat[~changed].any()
    assert heat[changed].abs().sum() > 0


def test_signed_map_sums_to_the_score_difference(tiny_model):
    """Completeness of integrated gradients, on a fine path grid in float64.

    The midpoint rule is the only error. It shrinks like 1 / points here, because ReLU-type kinks make the path
    derivative only piecewise smooth: measured 1-4% at 32 points, 0.5-1% at 64 and 128.
    """
    model = tiny_model.double()
    gen = torch.Generator().manual_seed(0)
    ref = torch.rand(1, 3, 48, 64, generator=gen, dtype=torch.float64)
    dist = (ref + 0.2 * torch.randn(ref.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    options = {"model": model, "num_patches": 32, "seed": 0}
    heat = damage_map(ref, dist, num_repeats=1, steps=64, signed=True, **options)
    expected = score(ref, dist, precision="fp32", **options) - score(ref, ref, precision="fp32", **options)
    torch.testing.assert_close(heat.sum((1, 2)), expected, rtol=0.02, atol=0.0)
    assert heat.min() < 0  # this random model lowers its score for some patches: the signed map keeps them
    torch.testing.assert_close(damage_map(ref, dist, num_repeats=1, steps=64, **options), heat.clamp(min=0))


@pytest.mark.slow
def test_defaults_with_the_bundled_model_approximately_split_the_score(bundled):
    ref = _photo(128)
    dist = _jpeg(ref)
    heat = damage_map(ref, dist, model=bundled, num_patches=256, signed=True)
    options = {"model": bundled, "num_patches": 256, "num_repeats": 4, "precision": "fp32"}
    difference = float(score(ref, dist, **options) - score(ref, ref, **options))
    # Four draws x one step is a 4-point midpoint rule: measured within 10% of the score difference.
    assert float(heat.sum()) == pytest.approx(difference, rel=0.3)


def test_a_pair_in_a_batch_gets_the_map_it_gets_alone(tiny_model):
    gen = torch.Generator().manual_seed(2)
    ref = torch.rand(3, 3, 40, 48, generator=gen)
    dist = (ref + 0.1 * torch.randn(ref.shape, generator=gen)).clamp(0, 1)
    together = damage_map(ref, dist, model=tiny_model, num_patches=16, num_repeats=2, steps=2)
    alone = damage_map(ref[1:2], dist[1:2], model=tiny_model, num_patches=16, num_repeats=2, steps=2)
    torch.testing.assert_close(together[1:2], alone, rtol=1e-4, atol=1e-9)


def test_model_mode_rng_and_parameters_are_left_alone(image_pair):
    torch.manual_seed(0)
    model = VTAMIQ("tiny").train()
    state = torch.get_rng_state()
    ref, dist = image_pair
    first = damage_map(ref, dist, model=model, num_patches=16, num_repeats=2)
    assert model.training  # restored
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), state)
    # dropout off
    torch.testing.assert_close(damage_map(ref, dist, model=model.eval(), num_patches=16, num_repeats=2), first)


def test_inputs_accepted_as_score_accepts_them(tiny_model, tmp_path):
    ref = _photo(48)
    dist = _blur(ref)
    paths = []
    for name, image in (("ref.png", ref), ("dist.png", dist)):
        array = (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(array).save(tmp_path / name)
        paths.append(tmp_path / name)
    from_files = damage_map(str(paths[0]), paths[1], model=tiny_model, num_patches=16)
    assert from_files.shape == (1, 48, 48) and from_files.dtype == torch.float32
    assert damage_map(ref[0], dist[0], model=tiny_model, num_patches=16).shape == (1, 48, 48)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"num_repeats": 0}, ValueError, "num_repeats must be an int >= 1, got 0"),
    ({"steps": 1.5}, TypeError, "steps must be an int, got float"),
    ({"signed": 1}, TypeError, "signed must be a bool, got int"),
    ({"num_patches": 0}, ValueError, "num_patches must be an int >= 1, got 0"),
    ({"seed": "0"}, TypeError, "seed must be an int, got str"),
])
def test_bad_arguments_raise_with_expected_and_got(tiny_model, image_pair, kwargs, error, message):
    ref, dist = image_pair
    with pytest.raises(error, match=message):
        damage_map(ref, dist, model=tiny_model, **kwargs)


def test_bad_images_raise_like_score(tiny_model, image_pair):
    ref, dist = image_pair
    with pytest.raises(ValueError, match="same"):
        damage_map(ref, dist[..., :-8], model=tiny_model)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        damage_map(ref * 255, dist, model=tiny_model)


@pytest.mark.cuda
def test_cuda_map_matches_the_cpu_map(tiny_model, image_pair):
    ref, dist = image_pair
    cpu = damage_map(ref, dist, model=tiny_model, num_patches=16, num_repeats=2, signed=True)
    gpu = damage_map(ref.cuda(), dist.cuda(), model=tiny_model.cuda(), num_patches=16, num_repeats=2, signed=True)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-6)  # same positions, float rounding only


def test_the_map_refuses_images_over_max_pixels_before_decoding(tiny_model, tmp_path):
    # Issue 23 item 9: damage_map had no pixel limit (`vtamiq map` died in a 3.2 GiB allocation with a traceback).
    from tests.helpers import write_png_header

    huge = write_png_header(tmp_path / "huge.png", 16_000, 10_000)  # 160 million pixels claimed in 57 bytes
    with pytest.raises(ValueError, match="ref: expected at most max_pixels=150,000,000 pixels, got a 16000x10000"):
        damage_map(huge, huge, model=tiny_model, num_patches=8)
    image = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="expected at most max_pixels=1,000 pixels, got a 40x32 image"):
        damage_map(image, image.flip(-1), model=tiny_model, num_patches=8, max_pixels=1000)
    assert damage_map(image, image.flip(-1), model=tiny_model, num_patches=8, max_pixels=None).shape == (1, 32, 40)
