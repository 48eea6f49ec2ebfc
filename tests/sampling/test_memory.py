"""The sampler's memory is linear in the pixels, and ``sampler_bytes`` / ``estimate_pair_bytes`` bound the real peak.

Peaks are the largest total of live torch CPU allocations during a call, replayed from the allocation and free events
that ``torch.profiler`` records with ``profile_memory=True`` (what a device allocator holds; the C library's heap may
keep a little more resident). Before the sampler became linear, a 16 x 20,000 pair built int64 tables of
1,250 x 20,000 entries per axis and peaked at about 1.4 GB (4,500 bytes per pixel); a 16 x 1,000,000 pair asked for
500 GB.
"""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from vtamiq_metric import VTAMIQ, score
from vtamiq_metric.api import estimate_pair_bytes
from vtamiq_metric.model.config import get_preset
from vtamiq_metric.sampling import SamplingConfig, _common, sample_patches
from vtamiq_metric.sampling.memory import sampler_bytes


def _peak_bytes(run) -> int:
    """The largest number of bytes of torch CPU allocations alive at once while ``run()`` executes (0 at the start)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = sorted((event.start_ns(), event.nbytes()) for event in prof.profiler.kineto_results.events()
                    if event.name() == "[memory]")
    assert events, "the profiler recorded no allocation"
    live = peak = 0
    for _, change in events:
        live += change
        peak = max(peak, live)
    return peak


def _pair(height: int, width: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    if dtype == torch.uint8:
        ref = torch.randint(0, 256, (1, 3, height, width), generator=gen, dtype=torch.uint8)
    else:
        ref = torch.rand(1, 3, height, width, generator=gen, dtype=dtype)
    return ref, ref.flip(-1).contiguous()


@pytest.mark.parametrize(("height", "width"), [(16, 20_000), (20_000, 16), (17, 12_345)])
def test_long_thin_images_need_memory_linear_in_their_pixels(height, width):
    config = SamplingConfig(1.0, 2.0, 0.5)  # the bundled model's
    ref, dist = _pair(height, width)
    peak = _peak_bytes(lambda: sample_patches(ref, dist, 1024, config=config, seed=0))
    bound = sampler_bytes(height, width, 1024, config=config)
    assert peak <= bound, f"{height}x{width}: the draw peaked at {peak / 2**20:.1f} MiB, above {bound / 2**20:.1f}"
    assert bound <= 128 * height * width + 8 * 2**20  # about 100 bytes per pixel, whatever the shape


@pytest.mark.parametrize(("height", "width", "dtype", "patches", "config", "patch_size", "strip"), [
    (1000, 1000, torch.uint8, 1024, SamplingConfig(1.0, 2.0, 0.5), 16, None),
    (700, 900, torch.float32, 256, SamplingConfig(2, 2, 0.5, num_scales=5), 16, 900 * 64),  # many strips
    (600, 500, torch.uint8, 256, SamplingConfig(2, 2, 0.5, num_scales=3), 16, 500 * 32),
    (300, 400, torch.float32, 200, SamplingConfig(diff_type="ssim", num_scales=2), 16, None),
    (128, 128, torch.float32, 100_000, SamplingConfig(), 16, None),  # the patches dominate
    (300, 300, torch.float64, 20_000, SamplingConfig(num_scales=3), 8, None),
], ids=["uint8", "float-strips-pyramid", "uint8-strips-pyramid", "ssim", "dense", "float64-p8"])
def test_sampler_bytes_bounds_the_measured_peak(height, width, dtype, patches, config, patch_size, strip,
                                                monkeypatch):
    if strip is not None:
        monkeypatch.setattr(_common, "_STRIP_PIXELS", strip)
    ref, dist = _pair(height, width, dtype)
    peak = _peak_bytes(lambda: sample_patches(ref, dist, patches, patch_size=patch_size, config=config, seed=1))
    bound = sampler_bytes(height, width, patches, patch_size=patch_size, config=config,
                          itemsize=ref.element_size())
    assert peak <= bound <= 2 * peak, f"peak {peak / 2**20:.1f} MiB, bound {bound / 2**20:.1f} MiB"


def test_sampler_bytes_grows_with_the_pixels_not_their_shape():
    config = SamplingConfig(1.0, 2.0, 0.5)
    square = sampler_bytes(4000, 4000, 1024, config=config)
    assert square < 2**30  # the "mse" difference is bounded by one strip of 2**22 pixels
    ssim = SamplingConfig(diff_type="ssim", num_scales=5)
    assert sampler_bytes(4000, 4000, 1024, config=ssim) < 2**30  # and "ssim" by one of 2**19 (with its halo)
    assert sampler_bytes(1_000_000, 16, 1024, config=ssim) < 2**30
    assert sampler_bytes(16, 1_000_000, 1024, config=config) <= 1.01 * square  # strips of 1,048 and 262,144 rows
    assert sampler_bytes(1_000_000, 16, 1024, config=config) <= 1.01 * square
    # Without the difference, only the cells, the placement and the patches remain.
    assert sampler_bytes(16, 1_000_000, 1024, config=SamplingConfig(1.0, 0.0, 0.5)) < 64 * 2**20
    with pytest.raises(TypeError, match="expected a SamplingConfig or None, got dict"):
        sampler_bytes(64, 64, 16, config={})
    with pytest.raises(ValueError, match="smaller than a patch"):
        sampler_bytes(15, 64, 16)


@pytest.mark.parametrize(("preset", "height", "width"), [("tiny", 16, 20_000), ("tiny", 700, 500),
                                                        ("vtamiq_tiny_patch16", 600, 800),
                                                        ("vtamiq_tiny_patch16+patch_fidelity", 600, 800)])
def test_estimate_pair_bytes_bounds_what_score_needs(preset, height, width):
    torch.manual_seed(0)
    name, _, switch = preset.partition("+")
    config = get_preset(name).replace(**{switch: True}) if switch else get_preset(name)
    model = VTAMIQ(config).eval()

    def run():
        ref, dist = _pair(height, width)  # the pair's images count: the estimate includes them
        score(ref, dist, model=model, precision="fp32")

    peak = _peak_bytes(run)
    estimate = estimate_pair_bytes(model.config, model.config.num_patches, height, width, half_precision=False)
    assert peak <= estimate <= 2 * peak, (peak / 2**20, estimate / 2**20)


def test_estimate_pair_bytes_follows_the_viewing_distance_and_the_sampling():
    config = get_preset("vtamiq_tiny_patch16")  # downsample_side 256: a 4000 x 6000 photograph is seen at 250 x 375
    seen = estimate_pair_bytes(config, 1024, 4000, 6000, half_precision=False)
    native = estimate_pair_bytes(config.replace(downsample_side=None), 1024, 4000, 6000, half_precision=False)
    assert 2 * 3 * 4 * 4000 * 6000 < seen < native
    ssim = estimate_pair_bytes(config.replace(downsample_side=None), 1024, 4000, 6000, half_precision=False,
                               sampling=SamplingConfig(diff_type="ssim"))
    assert 2 * 3 * 4 * 4000 * 6000 < ssim < native + 2**30  # "ssim" needs more per pixel, but of a smaller strip
