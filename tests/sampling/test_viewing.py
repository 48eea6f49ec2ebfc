"""Viewing distance (``VTAMIQConfig.downsample_side``): large images are scored at the scale of the model's labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import vtamiq_metric
from vtamiq_metric import VTAMIQ, VTAMIQLoss, damage_map, score
from vtamiq_metric.model.config import VTAMIQConfig, get_preset
from vtamiq_metric.sampling import _common, sample_patches, viewing_downsample, viewing_factor
from vtamiq_metric.training.labels.vsi import vsi_downsample_factor


@pytest.fixture
def viewing_model():
    """The seeded `tiny` model with a viewing distance of 64 px (images of 96 px and more are downsampled)."""
    torch.manual_seed(0)
    return VTAMIQ(get_preset("tiny").replace(downsample_side=64)).eval()


def _pair(height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ref = torch.rand(1, 3, height, width, generator=gen)
    dist = (ref + 0.1 * torch.randn(ref.shape, generator=gen)).clamp(0, 1)
    return ref, dist


def _save_png(folder, ref: torch.Tensor, dist: torch.Tensor) -> list:
    """``ref.png`` and ``dist.png`` (8-bit) in ``folder``; returns their paths."""
    paths = []
    for name, image in (("ref", ref), ("dist", dist)):
        array = (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(array).save(folder / f"{name}.png")
        paths.append(folder / f"{name}.png")
    return paths


@pytest.mark.parametrize(("size", "side", "expected"), [
    ((384, 512), 256, 2), ((383, 1000), 256, 1), ((640, 640), 256, 3), ((48, 64), 256, 1), ((1000, 383), 256, 1),
    ((96, 200), 64, 2), ((95, 200), 64, 1), ((160, 160), 64, 3),
])
def test_factor_rounds_halves_up_like_matlab(size, side, expected):
    assert viewing_factor(*size, side) == expected


def test_vsi_uses_the_same_factor():
    for size in [(48, 64), (383, 384), (384, 512), (640, 640), (1200, 900)]:
        assert vsi_downsample_factor(*size) == viewing_factor(*size, 256)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "256"])
def test_factor_rejects_bad_sizes(bad):
    with pytest.raises((TypeError, ValueError), match="side"):
        viewing_factor(100, 100, bad)


def test_downsample_is_block_averaging_and_drops_partial_blocks():
    ref, dist = _pair(101, 67)
    (small_ref, small_dist), factor = viewing_downsample(ref, dist, side=32)
    assert factor == 2
    assert small_ref.shape == (1, 3, 50, 33)
    torch.testing.assert_close(small_ref, F.avg_pool2d(ref[..., :100, :66], 2), rtol=0, atol=0)
    torch.testing.assert_close(small_dist, F.avg_pool2d(dist[..., :100, :66], 2), rtol=0, atol=0)


def test_small_images_and_no_side_are_left_untouched():
    ref, dist = _pair(95, 200)
    (same_ref, same_dist), factor = viewing_downsample(ref, dist, side=64)
    assert same_ref is ref and same_dist is dist and factor == 1
    assert viewing_downsample(ref, dist, side=None) == ((ref, dist), 1)


def test_images_of_different_sizes_are_refused():
    with pytest.raises(ValueError, match="one size"):
        viewing_downsample(torch.rand(1, 3, 400, 400), torch.rand(1, 3, 400, 401), side=128)
    with pytest.raises(ValueError, match="one or more"):
        viewing_downsample(side=128)


def test_uint8_is_pooled_by_strips_exactly_as_its_float_values(monkeypatch):
    ref, dist = _pair(131, 70)
    ref8, dist8 = (ref * 255).round().to(torch.uint8), (dist * 255).round().to(torch.uint8)
    monkeypatch.setattr(_common, "_STRIP_PIXELS", 70 * 8)  # strips of 8 rows: many strips, whole blocks
    (small8, _), factor = viewing_downsample(ref8, dist8, side=16)
    assert factor == 4 and small8.dtype == torch.float32 and small8.shape == (1, 3, 32, 17)
    torch.testing.assert_close(small8, F.avg_pool2d(ref8.float() / 255, 4), rtol=0, atol=0)


def test_score_of_a_large_image_is_the_score_of_its_block_average(viewing_model):
    ref, dist = _pair(130, 200)
    expected = score(F.avg_pool2d(ref, 2), F.avg_pool2d(dist, 2), model=viewing_model, precision="fp32")
    torch.testing.assert_close(score(ref, dist, model=viewing_model, precision="fp32"), expected, rtol=0, atol=0)
    native = VTAMIQ(viewing_model.config.replace(downsample_side=None)).eval()
    native.load_state_dict(viewing_model.state_dict())
    assert not torch.equal(score(ref, dist, model=native, precision="fp32"), expected)


def test_below_one_and_a_half_sides_nothing_changes(viewing_model):
    ref, dist = _pair(95, 140)
    native = VTAMIQ(viewing_model.config.replace(downsample_side=None)).eval()
    native.load_state_dict(viewing_model.state_dict())
    torch.testing.assert_close(score(ref, dist, model=viewing_model, precision="fp32"),
                               score(ref, dist, model=native, precision="fp32"), rtol=0, atol=0)


def test_8bit_files_score_like_their_float_values(viewing_model, tmp_path):
    ref, dist = _pair(130, 200)
    paths = _save_png(tmp_path, ref, dist)
    from_files = score(str(paths[0]), str(paths[1]), model=viewing_model, precision="fp32")
    as_float = [(x * 255).round() / 255 for x in (ref, dist)]
    torch.testing.assert_close(from_files, score(*as_float, model=viewing_model, precision="fp32"),
                               rtol=1e-6, atol=1e-6)


def test_the_loss_backpropagates_through_the_downsampling(viewing_model):
    ref, dist = _pair(128, 160)
    dist.requires_grad_(True)
    loss = VTAMIQLoss(viewing_model, num_patches=16, resample=False)(ref, dist)
    loss.backward()
    assert dist.grad.shape == dist.shape
    assert torch.isfinite(dist.grad).all() and dist.grad.abs().sum() > 0
    blocks = dist.grad[0, 0].unfold(0, 2, 2).unfold(1, 2, 2)  # (64, 80, 2, 2): the gradient is constant per block
    torch.testing.assert_close(blocks, blocks[..., :1, :1].expand_as(blocks), rtol=1e-6, atol=1e-12)


def test_damage_map_is_full_size_zero_where_unchanged_and_complete(viewing_model):
    model = viewing_model.double()
    ref, dist = (x.double() for x in _pair(131, 100))
    dist[..., :, 50:] = ref[..., :, 50:]  # only the left half changes
    heat = damage_map(ref, dist, model=model, num_patches=16, steps=8, signed=True)
    assert heat.shape == (1, 131, 100)
    assert bool(heat[..., 50:].eq(0).all())
    assert bool(heat[..., 130:, :].eq(0).all())  # the row the 2 x 2 blocks drop is never seen
    difference = (score(ref, dist, model=model, num_patches=16, num_repeats=4, precision="fp32")
                  - score(ref, ref, model=model, num_patches=16, num_repeats=4, precision="fp32"))
    assert abs(float(heat.sum()) - float(difference)) <= 0.1 * abs(float(difference)) + 1e-4


def test_training_items_draw_patches_from_the_downsampled_images(tmp_path):
    from vtamiq_metric.training.data import PairPatches
    from vtamiq_metric.training.datasets.base import IQARecord
    from vtamiq_metric.training.seeds import derive_seed

    files = _save_png(tmp_path, *_pair(130, 200))
    record = IQARecord(ref=files[0], dist=files[1], score=0.5, target=0.5, ref_id="ref")
    config = get_preset("tiny")
    item = PairPatches([record], 8, 16, config.sampling, seed=3, downsample_side=64)[0]
    decoded = [vtamiq_metric._validation.load_image(f)[None] for f in files]
    small, _ = viewing_downsample(decoded[0], decoded[1], side=64)
    expected = sample_patches(small[0], small[1], 8, patch_size=16, config=config.sampling, seed=derive_seed(3, 0, 0))
    torch.testing.assert_close(item["ref"], expected.ref[0], rtol=0, atol=0)
    torch.testing.assert_close(item["pos"], expected.pos[0], rtol=0, atol=0)


@pytest.mark.parametrize("bad", [16, 31, True, 256.0, "256"])
def test_config_rejects_a_side_below_two_patches(bad):
    with pytest.raises(ValueError, match="downsample_side"):
        get_preset("tiny").replace(downsample_side=bad)


def test_config_round_trips_and_old_configs_default_to_native():
    config = get_preset("tiny").replace(downsample_side=64)
    assert VTAMIQConfig.from_json(config.to_json()) == config
    data = get_preset("tiny").to_dict()
    del data["downsample_side"]  # a file written before the option existed
    assert VTAMIQConfig.from_dict(data).downsample_side is None
    for era in ("paper2021", "release2022", "head2024"):
        assert get_preset(era).downsample_side is None
    assert get_preset("vtamiq_tiny_patch16").downsample_side == 256
