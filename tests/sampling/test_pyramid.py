"""The pyramid and the cells of a draw (vtamiq_metric.sampling.pyramid)."""

from __future__ import annotations

import pytest

from tests.helpers import caps_pair, check_sample
from vtamiq_metric.sampling import SamplingConfig, effective_num_scales, sample_patches, scale_counts
from vtamiq_metric.sampling.pyramid import plan_levels


def test_multiscale_counts_follow_the_ratio_rule_and_order() -> None:
    ref, dist = caps_pair(batch=2, height=128, width=128)
    config = SamplingConfig(num_scales=4, scale_ratio=1.0)
    sample = sample_patches(ref, dist, 200, config=config, seed=0)
    expected = scale_counts(200, 4, 1.0)
    assert expected == [107, 53, 27, 13]
    for b in range(2):
        assert sample.scale[b].bincount(minlength=4).tolist() == expected
        assert bool((sample.scale[b].diff() >= 0).all())  # ordered by scale
    check_sample(sample, 2, 200, 128, 128, 16)


def test_scale_is_none_for_a_single_usable_scale() -> None:
    ref, dist = caps_pair(batch=1, height=31, width=40)  # level 1 would be 15 px tall
    sample = sample_patches(ref, dist, 10, config=SamplingConfig(num_scales=3), seed=0)
    assert sample.scale is None
    assert sample_patches(ref, dist, 10, seed=0).scale is None


def test_scale_counts_rule() -> None:
    for total, levels, ratio in [(256, 5, 1.5), (512, 4, 1.75), (1, 3, 1.0), (10, 3, 0.0), (1024, 5, 1.5)]:
        counts = scale_counts(total, levels, ratio)
        weights = [2.0 ** (-ratio * s) for s in range(levels)]
        expected = [total * w / sum(weights) for w in weights]
        assert sum(counts) == total
        assert all(abs(c - e) < 1 for c, e in zip(counts, expected, strict=True))
        assert counts == sorted(counts, reverse=True)
    assert scale_counts(256, 5, 1.5) == [166, 59, 21, 7, 3]
    assert scale_counts(10, 3, 0.0) == [4, 3, 3]


def test_effective_num_scales() -> None:
    assert effective_num_scales(384, 512, 16, 5) == 5
    assert effective_num_scales(384, 512, 16, 9) == 5  # 384 -> 192 -> 96 -> 48 -> 24 -> 12
    assert effective_num_scales(64, 96, 16, 5) == 3
    assert effective_num_scales(16, 300, 16, 4) == 1
    assert effective_num_scales(256, 256, 16, 1) == 1


@pytest.mark.parametrize(("height", "width", "count"), [(64, 96, 32), (16, 300, 5), (75, 61, 700), (17, 17, 300)])
def test_cells_split_the_candidates_into_runs_of_at_most_one_patch(height, width, count):
    for level in plan_levels(height, width, count, 16, SamplingConfig(num_scales=3)):
        (rows, cols), (gh, gw) = level.edges, level.grid
        assert rows.tolist()[0] == 0 and rows.tolist()[-1] == level.candidates[0] and len(rows) == gh + 1
        assert cols.tolist()[0] == 0 and cols.tolist()[-1] == level.candidates[1] and len(cols) == gw + 1
        for sides in level.sides:
            assert int(sides.min()) >= 1 and int(sides.max()) - int(sides.min()) <= 1 and int(sides.max()) <= 16
        assert level.cells == gh * gw
