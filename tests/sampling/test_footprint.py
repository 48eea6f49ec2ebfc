"""Footprint sums over cells (vtamiq_metric.sampling.footprint) against the dense integer-weight formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vtamiq_metric.sampling.footprint import CellMasses, footprint_coverage, run_sums, window_sums
from vtamiq_metric.sampling.pyramid import Level


def _level(height: int, width: int, grid: tuple[int, int], patch_size: int) -> Level:
    return Level(index=0, height=height, width=width, count=1, grid=grid, patch_size=patch_size)


def _dense_weights(edges: torch.Tensor, size: int, patch_size: int) -> torch.Tensor:
    """(cells, size): how many of a cell's candidates cover each pixel (the (cells x size) table of the old sampler)."""
    pixel = torch.arange(size)
    first = torch.maximum(edges[:-1, None], pixel[None, :] - patch_size + 1)
    last = torch.minimum(edges[1:, None] - 1, pixel[None, :])
    return (last - first + 1).clamp(min=0).double()


def _masses(level: Level, image: torch.Tensor, strip_rows: int) -> torch.Tensor:
    reducer = CellMasses(level, image.device)
    for top in range(0, image.shape[1], strip_rows):
        reducer.add_rows(image[:, top : top + strip_rows])
    return reducer.masses()


@pytest.mark.parametrize(("height", "width", "grid", "patch_size"), [
    (40, 57, (3, 5), 16), (16, 300, (1, 18), 16), (61, 17, (12, 2), 16), (30, 30, (30, 30), 1), (25, 19, (7, 4), 3),
])
def test_cell_masses_equal_the_dense_footprint_formula_for_any_strips(height, width, grid, patch_size):
    level = _level(height, width, grid, patch_size)
    image = torch.rand(2, height, width, generator=torch.Generator().manual_seed(height), dtype=torch.float64)
    row_edges, col_edges = level.edges
    dense = _dense_weights(row_edges, height, patch_size) @ image @ _dense_weights(col_edges, width, patch_size).T
    whole = _masses(level, image, height)
    torch.testing.assert_close(whole, dense.flatten(1), rtol=1e-13, atol=0)
    for strip in (1, 2, 7, patch_size + 1):
        assert torch.equal(_masses(level, image, strip), whole), f"strips of {strip} rows changed the masses"


def test_window_and_run_sums_add_their_terms_in_order():
    x = torch.arange(10, dtype=torch.float64)[None] ** 2
    assert window_sums(x, 3, -1).tolist() == [[5.0, 14.0, 29.0, 50.0, 77.0, 110.0, 149.0, 194.0]]
    edges = torch.tensor([0, 3, 6, 10])  # runs of 3, 3 and 4
    assert run_sums(x, edges, -1).tolist() == [[5.0, 50.0, 230.0]]


def test_coverage_is_the_transpose_of_the_footprint_sum():
    density = torch.rand(2, 13, 21, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    box = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    expected = F.conv2d(density[:, None], box, padding=3)[:, 0]  # (2, 16, 24): the P x P footprints summed
    torch.testing.assert_close(footprint_coverage(density, 4), expected, rtol=1e-14, atol=0)


def test_masses_before_every_row_has_arrived_raise():
    reducer = CellMasses(_level(40, 40, (2, 2), 16), torch.device("cpu"))
    reducer.add_rows(torch.zeros(1, 30, 40, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="30 of the level's 40 rows"):
        reducer.masses()
