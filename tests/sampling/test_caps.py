"""CAPS draws (vtamiq_metric.sampling.caps): determinism, allocation, placement, patches, scales and checks."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import CAPS_DIFF, CAPS_PAPER, CAPS_RELEASE, CAPS_UNIFORM, caps_pair, check_sample, quadrant_pair
from vtamiq_metric.sampling import SamplingConfig, effective_num_scales, extract_patches, sample_patches, scale_counts
from vtamiq_metric.sampling.caps import _allocate


def test_same_seed_gives_identical_positions_and_patches() -> None:
    ref, dist = caps_pair()
    first = sample_patches(ref, dist, 50, config=CAPS_RELEASE, seed=7)
    second = sample_patches(ref, dist, 50, config=CAPS_RELEASE, seed=7)
    assert torch.equal(first.top_left, second.top_left)
    assert torch.equal(first.pos, second.pos)
    assert torch.equal(first.scale, second.scale)
    assert torch.equal(first.ref, second.ref) and torch.equal(first.dist, second.dist)


def test_different_seeds_give_different_positions() -> None:
    ref, dist = caps_pair()
    first = sample_patches(ref, dist, 50, config=CAPS_PAPER, seed=0)
    second = sample_patches(ref, dist, 50, config=CAPS_PAPER, seed=1)
    assert not torch.equal(first.top_left, second.top_left)


def test_generator_takes_precedence_over_seed_and_advances() -> None:
    ref, dist = caps_pair()
    from_seed = sample_patches(ref, dist, 40, seed=3)
    from_generator = sample_patches(ref, dist, 40, seed=99, generator=torch.Generator().manual_seed(3))
    assert torch.equal(from_seed.top_left, from_generator.top_left)
    gen = torch.Generator().manual_seed(3)
    sample_patches(ref, dist, 40, generator=gen)
    again = sample_patches(ref, dist, 40, generator=gen)
    assert not torch.equal(again.top_left, from_seed.top_left)


def test_global_rng_state_is_untouched() -> None:
    ref, dist = caps_pair()
    torch_state = torch.get_rng_state()
    np_state = np.random.get_state()
    py_state = random.getstate()
    sample_patches(ref, dist, 64, config=CAPS_RELEASE, seed=5)
    sample_patches(ref, dist, 64, config=SamplingConfig(diff_type="ssim"), seed=None)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert random.getstate() == py_state


def test_seed_none_is_not_reproducible() -> None:
    ref, dist = caps_pair()
    first = sample_patches(ref, dist, 64, seed=None)
    second = sample_patches(ref, dist, 64, seed=None)
    assert not torch.equal(first.top_left, second.top_left)


@pytest.mark.parametrize(("height", "width", "count", "patch", "batch"), [(40, 53, 37, 16, 512), (28, 41, 300, 4, 512)])
def test_uniform_sampling_is_unbiased_over_candidates(
    height: int, width: int, count: int, patch: int, batch: int
) -> None:
    ref = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(2))
    sample = sample_patches(ref, ref, count, patch_size=patch, config=CAPS_UNIFORM, seed=0, per_image_draws=True)
    hist = torch.zeros(height - patch + 1, width - patch + 1, dtype=torch.float64)
    flat = sample.top_left.reshape(-1, 2)
    hist.index_put_((flat[:, 0], flat[:, 1]), torch.ones(flat.shape[0], dtype=torch.float64), accumulate=True)
    expected = batch * count / hist.numel()
    chi2_per_dof = (((hist - expected) ** 2) / expected).sum().item() / (hist.numel() - 1)
    # Images are independent draws, so chi2/dof ~ 1 (sd < 0.05); stratification only lowers it.
    assert 0.6 < chi2_per_dof < 1.2
    for totals in (hist.sum(1), hist.sum(0)):
        # Unequal node sizes inside a cell would show up as rows/cols over- or under-sampled by 10-100%.
        share = totals / totals.mean()
        tolerance = 5 / math.sqrt(totals.mean().item())
        assert float((share - 1).abs().max()) < tolerance


@pytest.mark.parametrize(
    ("height", "width", "count"),
    [(16, 16, 1), (16, 16, 7), (17, 17, 300), (16, 300, 5), (300, 16, 64), (33, 47, 100), (65, 31, 13)],
)
def test_exact_counts_and_bounds_for_awkward_sizes(height: int, width: int, count: int) -> None:
    ref, dist = caps_pair(batch=2, height=height, width=width)
    for config in (CAPS_UNIFORM, CAPS_PAPER, CAPS_RELEASE):
        sample = sample_patches(ref, dist, count, config=config, seed=1)
        check_sample(sample, 2, count, height, width, 16)


def test_patches_are_distinct_when_there_is_room() -> None:
    ref, dist = quadrant_pair(64)
    sample = sample_patches(ref, dist, 400, config=CAPS_DIFF, seed=0)  # concentrated in one quadrant, 2401 candidates
    for image in sample.top_left:
        assert len({tuple(p) for p in image.tolist()}) == 400


def test_patch_pixels_equal_image_crops_at_every_scale() -> None:
    ref, dist = caps_pair(batch=2, height=64, width=96)
    sample = sample_patches(ref, dist, 120, config=CAPS_RELEASE, seed=2)
    assert sample.scale is not None and int(sample.scale.max()) == 2
    pyramid = {0: (ref, dist)}
    for s in (1, 2):
        pyramid[s] = (F.avg_pool2d(pyramid[s - 1][0], 2), F.avg_pool2d(pyramid[s - 1][1], 2))
    for b in range(2):
        for n in range(120):
            s = int(sample.scale[b, n])
            top, left = sample.top_left[b, n].tolist()
            ref_s, dist_s = pyramid[s]
            torch.testing.assert_close(sample.ref[b, n], ref_s[b, :, top : top + 16, left : left + 16], rtol=0, atol=0)
            torch.testing.assert_close(
                sample.dist[b, n], dist_s[b, :, top : top + 16, left : left + 16], rtol=0, atol=0
            )


def test_pos_is_float32_in_unit_range_and_matches_top_left() -> None:
    ref, dist = caps_pair(batch=2, height=64, width=96)
    sample = sample_patches(ref, dist, 80, config=CAPS_RELEASE, seed=3)
    sizes = torch.tensor([[64 // 2**s, 96 // 2**s] for s in range(3)], dtype=torch.float64)[sample.scale]
    expected = ((sample.top_left.double() + 8) / sizes).float()
    assert torch.equal(sample.pos, expected)
    assert sample.pos.dtype == torch.float32 and sample.pos.shape == (2, 80, 2)
    assert bool((sample.pos > 0).all()) and bool((sample.pos < 1).all())


def test_gradients_flow_from_patches_to_the_images() -> None:
    ref, dist = caps_pair(batch=2, height=40, width=48)
    dist = dist.clone().requires_grad_(True)
    ref = ref.clone().requires_grad_(True)
    sample = sample_patches(ref, dist, 30, config=CAPS_PAPER, seed=0)
    (sample.dist.sum() + 2 * sample.ref.sum()).backward()
    coverage = torch.zeros(2, 40, 48)
    for b in range(2):
        for top, left in sample.top_left[b].tolist():
            coverage[b, top : top + 16, left : left + 16] += 1
    torch.testing.assert_close(dist.grad, coverage[:, None].expand(2, 3, 40, 48), rtol=0, atol=0)
    torch.testing.assert_close(ref.grad, 2 * coverage[:, None].expand(2, 3, 40, 48), rtol=0, atol=0)


def test_gradients_flow_through_the_pyramid() -> None:
    ref, dist = caps_pair(batch=1, height=64, width=64)
    dist = dist.clone().requires_grad_(True)
    sample = sample_patches(ref, dist, 40, config=SamplingConfig(num_scales=3, scale_ratio=0.5), seed=0)
    assert int(sample.scale.max()) == 2
    sample.dist[sample.scale == 2].sum().backward()
    assert dist.grad is not None and float(dist.grad.abs().sum()) > 0


def test_output_keeps_input_dtype_and_device() -> None:
    ref, dist = caps_pair(batch=1, height=32, width=32)
    sample = sample_patches(ref.double(), dist.double(), 5, seed=0)
    assert sample.ref.dtype == torch.float64 and sample.dist.dtype == torch.float64
    assert sample.pos.dtype == torch.float32 and sample.top_left.device == ref.device


def test_image_positions_do_not_depend_on_other_images_content() -> None:
    ref, dist = caps_pair(batch=2)
    base = sample_patches(ref, dist, 50, config=CAPS_PAPER, seed=0)
    changed_ref, changed_dist = ref.clone(), dist.clone()
    changed_dist[0] = 1 - changed_dist[0]
    other = sample_patches(changed_ref, changed_dist, 50, config=CAPS_PAPER, seed=0)
    assert torch.equal(base.top_left[1], other.top_left[1])
    assert not torch.equal(base.top_left[0], other.top_left[0])


def test_an_image_gets_the_same_positions_alone_and_in_any_batch() -> None:
    ref, dist = caps_pair(batch=3)
    batch = sample_patches(ref, dist, 50, config=CAPS_RELEASE, seed=9)
    for b in range(3):
        alone = sample_patches(ref[b : b + 1], dist[b : b + 1], 50, config=CAPS_RELEASE, seed=9)
        assert torch.equal(alone.top_left[0], batch.top_left[b])
        assert torch.equal(alone.dist[0], batch.dist[b])


def test_per_image_draws_give_identical_images_different_positions() -> None:
    ref, _ = caps_pair(batch=1)
    twins = ref.expand(2, -1, -1, -1)
    shared = sample_patches(twins, twins, 40, config=CAPS_UNIFORM, seed=0)
    assert torch.equal(shared.top_left[0], shared.top_left[1])
    independent = sample_patches(twins, twins, 40, config=CAPS_UNIFORM, seed=0, per_image_draws=True)
    assert not torch.equal(independent.top_left[0], independent.top_left[1])


def test_extract_patches_reuses_positions_and_scales() -> None:
    ref, dist = caps_pair(batch=2, height=64, width=96)
    other = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(5), requires_grad=True)
    for config in (CAPS_PAPER, CAPS_RELEASE):
        sample = sample_patches(ref, dist, 60, config=config, seed=1)
        assert torch.equal(extract_patches(dist, sample), sample.dist)
        assert torch.equal(extract_patches(ref, sample, patch_size=16), sample.ref)
    patches = extract_patches(other, sample)
    assert patches.shape == (2, 60, 3, 16, 16)
    patches.sum().backward()
    assert other.grad is not None and float(other.grad.sum()) == pytest.approx(2 * 60 * 3 * 256, rel=1e-6)
    with pytest.raises(ValueError, match=r"images: expected size \(64, 96\) \(the sample's\), got \(64, 95\)"):
        extract_patches(other[..., :95], sample)
    with pytest.raises(ValueError, match=r"images: expected a batch of 2 \(the sample's\), got 1"):
        extract_patches(other[:1], sample)
    with pytest.raises(ValueError, match=r"patch_size: expected 16 \(the sample's patch size\), got 8"):
        extract_patches(other, sample, patch_size=8)
    with pytest.raises(TypeError, match=r"sample: expected a PatchSample, got dict"):
        extract_patches(other, {})


def test_allocation_is_exact_and_within_one_of_expectation() -> None:
    gen = torch.Generator().manual_seed(0)
    prob = torch.rand(50, 37, generator=gen, dtype=torch.float64) ** 3
    prob[:, 5] = 0
    for count in (1, 10, 37, 100, 1000):
        keys = torch.rand(50, 37, generator=gen, dtype=torch.float64)
        offsets = torch.randint(0, 2**32, (50, 1), generator=gen)
        counts = _allocate(prob, count, keys, offsets)
        expected = count * prob / prob.sum(dim=1, keepdim=True)
        assert bool((counts.sum(dim=1) == count).all())
        assert bool((counts >= expected.floor() - 1e-9).all()) and bool((counts <= expected.ceil() + 1e-9).all())
        assert bool((counts[:, 5] == 0).all())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ref": torch.rand(3, 32, 32)}, ValueError, r"ref: expected shape \(B, 3, H, W\), got \(3, 32, 32\)"),
        ({"ref": torch.rand(1, 1, 32, 32)}, ValueError, r"ref: expected shape \(B, 3, H, W\)"),
        ({"dist": torch.rand(1, 3, 32, 33)}, ValueError, r"expected the same shape, got \(1, 3, 32, 32\)"),
        ({"ref": torch.zeros(1, 3, 32, 32, dtype=torch.int64)}, TypeError,
         r"ref: expected a floating-point or uint8 tensor, got dtype torch.int64"),
        ({"ref": torch.zeros(1, 3, 32, 32, dtype=torch.uint8)}, TypeError,
         r"ref and dist: expected both uint8 or both floating point, got torch.uint8 and torch.float32"),
        ({"dist": np.zeros((1, 3, 32, 32))}, TypeError, r"dist: expected a torch.Tensor, got ndarray"),
        ({"ref": torch.rand(0, 3, 32, 32), "dist": torch.rand(0, 3, 32, 32)}, ValueError, r"at least 1 image"),
        ({"ref": torch.rand(1, 3, 15, 32), "dist": torch.rand(1, 3, 15, 32)}, ValueError, r"smaller than a patch"),
        ({"num_patches": 0}, ValueError, r"num_patches: expected an int >= 1, got 0"),
        ({"num_patches": 2.0}, TypeError, r"num_patches: expected an int, got float"),
        ({"num_patches": 2**21}, ValueError, r"num_patches: expected an int <= 1048576"),
        ({"patch_size": 0}, ValueError, r"patch_size: expected an int >= 1, got 0"),
        ({"config": {"centre_weight": 1}}, TypeError, r"config: expected a SamplingConfig or None, got dict"),
        ({"seed": -1}, ValueError, r"seed: expected an int in \[0, 2\*\*64\), got -1"),
        ({"seed": "0"}, TypeError, r"seed: expected an int or None, got str"),
        ({"generator": 3}, TypeError, r"generator: expected a torch.Generator or None, got int"),
        ({"per_image_draws": 1}, TypeError, r"per_image_draws: expected a bool, got int"),
    ],
)
def test_bad_inputs_raise_with_clear_messages(kwargs: dict, error: type, match: str) -> None:
    args = {"ref": torch.rand(1, 3, 32, 32), "dist": torch.rand(1, 3, 32, 32), "num_patches": 8, **kwargs}
    with pytest.raises(error, match=match):
        sample_patches(args.pop("ref"), args.pop("dist"), args.pop("num_patches"), **args)


class _CudaLikeGenerator(torch.Generator):
    """Reports a CUDA device without needing a GPU."""

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", 0)


def test_non_cpu_generator_is_rejected() -> None:
    gen = _CudaLikeGenerator()
    with pytest.raises(ValueError, match=r"generator: expected a CPU torch.Generator, got one on cuda:0"):
        sample_patches(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), 4, generator=gen)


def test_mismatched_devices_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"expected the same device, got cpu and meta"):
        sample_patches(torch.rand(1, 3, 32, 32), torch.empty(1, 3, 32, 32, device="meta"), 4)


@pytest.mark.cuda
def test_cuda_positions_equal_cpu_positions() -> None:
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    ref, dist = caps_pair(batch=3, height=96, width=128)
    for config in (CAPS_RELEASE, CAPS_PAPER, SamplingConfig(diff_type="ssim", num_scales=2)):
        cpu = sample_patches(ref, dist, 300, config=config, seed=11)
        gpu = sample_patches(ref.cuda(), dist.cuda(), 300, config=config, seed=11)
        assert gpu.ref.is_cuda and gpu.pos.is_cuda and gpu.top_left.is_cuda
        assert torch.equal(gpu.top_left.cpu(), cpu.top_left)
        assert torch.equal(gpu.pos.cpu(), cpu.pos)
        assert (gpu.scale is None) == (cpu.scale is None)
        if cpu.scale is not None:
            assert torch.equal(gpu.scale.cpu(), cpu.scale)
        torch.testing.assert_close(gpu.dist.cpu(), cpu.dist, rtol=0, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(8, 80),
    width=st.integers(8, 80),
    count=st.integers(1, 300),
    num_scales=st.integers(1, 4),
    batch=st.integers(1, 2),
    patch=st.sampled_from([8, 16]),
    seed=st.integers(0, 2**32),
)
def test_property_exact_counts_in_bounds_or_value_error(
    height: int, width: int, count: int, num_scales: int, batch: int, patch: int, seed: int
) -> None:
    ref, dist = caps_pair(batch=batch, height=height, width=width, seed=seed % 1000)
    config = SamplingConfig(centre_weight=1, diff_weight=2, uniform_weight=0.5, num_scales=num_scales)
    if height < patch or width < patch:
        with pytest.raises(ValueError, match="smaller than a patch"):
            sample_patches(ref, dist, count, patch_size=patch, config=config, seed=seed)
        return
    sample = sample_patches(ref, dist, count, patch_size=patch, config=config, seed=seed)
    check_sample(sample, batch, count, height, width, patch)
    levels = effective_num_scales(height, width, patch, num_scales)
    assert (sample.scale is None) == (levels == 1)
    if sample.scale is not None:
        for b in range(batch):
            assert sample.scale[b].bincount(minlength=levels).tolist() == scale_counts(count, levels, 1.5)
