"""Patch footprints over cells, in memory linear in the pixels.

A patch whose top-left corner is the candidate ``(r, c)`` covers the pixels ``[r, r + P) x [c, c + P)``. Two sums over
footprints are needed, one the transpose of the other:

- the **mass** of a cell of a per-pixel map (the difference map): the sum, over the cell's candidates, of the map over
  each candidate's footprint (:class:`CellMasses`);
- the **coverage** of a pixel by a per-candidate density (``sampling_density``): the sum of the density over the
  candidates whose footprint covers the pixel (:func:`footprint_coverage`).

Both are separable: per axis, a sum over a sliding window of ``P`` entries (:func:`window_sums`) and, for masses, a sum
over each cell's run of candidates (:func:`run_sums`). Each works in place on a copy of its input's size, so the
memory is linear in the pixels whatever the image's shape. Every output is a sum of its terms in one fixed order
(``t = 0, 1, ...`` along each axis), so a cell's mass does not depend on how the map was cut into row strips.
"""

from __future__ import annotations

import bisect

import torch
import torch.nn.functional as F
from torch import Tensor

from .pyramid import Level

__all__ = ["CellMasses", "footprint_coverage", "run_sums", "window_sums"]


def window_sums(x: Tensor, size: int, dim: int) -> Tensor:
    """Sums of ``size`` consecutive entries along ``dim``: ``out[c] = x[c] + x[c + 1] + ... + x[c + size - 1]``.

    Args:
        x: a tensor with at least ``size`` entries along ``dim``.
        size: window length, >= 1.
        dim: the axis.

    Returns:
        A new tensor with ``x.shape[dim] - size + 1`` entries along ``dim``, the terms added in order.
    """
    length = x.shape[dim] - size + 1
    out = x.narrow(dim, 0, length).clone()
    for t in range(1, size):
        out += x.narrow(dim, t, length)
    return out


def run_sums(x: Tensor, edges: Tensor, dim: int) -> Tensor:
    """Sums of ``x`` over the runs ``[edges[k], edges[k + 1])`` along ``dim``.

    Args:
        x: a tensor with ``edges[-1]`` entries along ``dim``.
        edges: (K + 1,) long increasing boundaries on ``x``'s device, starting at 0, whose runs differ in length by
            at most one (:attr:`Level.edges`).
        dim: the axis.

    Returns:
        A new tensor with K entries along ``dim``, the terms of each run added in order.
    """
    starts = edges[:-1]
    lengths = edges[1:] - starts
    short, long = int(lengths.min()), int(lengths.max())
    out = x.index_select(dim, starts)
    for t in range(1, short):
        out += x.index_select(dim, starts + t)
    if long > short:  # the runs of length short + 1 get their last term; the others get + 0.0
        last = x.index_select(dim, (starts + short).clamp(max=x.shape[dim] - 1))
        shape = [1] * x.ndim
        shape[dim] = -1
        out += torch.where((lengths == long).view(shape), last, 0.0)
    return out


class CellMasses:
    """The masses of one level's cells of a per-pixel map that arrives in row strips.

    ``mass[i, j] = sum over the candidates (r, c) of cell (i, j) of sum(map[r : r + P, c : c + P])``. Each strip is
    reduced along its columns at once; the rows of a cell are reduced as soon as the rows under all of its candidates'
    footprints have arrived, and only the rows of the cells still open are kept (fewer than ``2 * P`` rows). The
    masses are the same, bit for bit, however the map is cut into strips.

    Args:
        level: the level's geometry.
        device: where the map and the masses live.
    """

    def __init__(self, level: Level, device: torch.device) -> None:
        self._level = level
        row_edges, col_edges = level.edges
        self._row_edges = row_edges.tolist()
        self._col_edges = col_edges.to(device)
        self._pending: list[Tensor] = []  # column-reduced rows from self._first_row on, (B, h, gw) each
        self._first_row = 0
        self._rows = 0  # rows received
        self._done = 0  # cell rows reduced
        self._parts: list[Tensor] = []  # (B, rows of cells, gw) each

    def add_rows(self, strip: Tensor) -> None:
        """Take the next rows of the level's map.

        Args:
            strip: (B, h, W_s) the map's rows ``[received, received + h)``.
        """
        patch = self._level.patch_size
        self._pending.append(run_sums(window_sums(strip, patch, -1), self._col_edges, -1))  # (B, h, gw)
        self._rows += strip.shape[1]
        # Cell row i is complete when the rows under its last candidate's footprint have arrived.
        edges = self._row_edges
        done = bisect.bisect_right(edges, self._rows - patch + 1, lo=self._done + 1) - 1
        if done <= self._done:
            return
        rows = torch.cat(self._pending, dim=1) if len(self._pending) > 1 else self._pending[0]  # (B, h', gw)
        start, stop = edges[self._done] - self._first_row, edges[done] - self._first_row
        windows = window_sums(rows[:, start : stop + patch - 1], patch, 1)  # (B, stop - start, gw)
        runs = torch.tensor(edges[self._done : done + 1], device=windows.device) - edges[self._done]
        self._parts.append(run_sums(windows, runs, 1))  # (B, done - self._done, gw)
        self._pending = [rows[:, stop:]]
        self._first_row, self._done = edges[done], done

    def masses(self) -> Tensor:
        """(B, gh * gw) masses, cells in raster order.

        Raises:
            RuntimeError: the map's rows have not all arrived.
        """
        if self._rows != self._level.height:
            raise RuntimeError(f"CellMasses: {self._rows} of the level's {self._level.height} rows were added")
        return torch.cat(self._parts, dim=1).flatten(1)


def footprint_coverage(density: Tensor, patch_size: int) -> Tensor:
    """Per-pixel sums of a per-candidate density over the footprints that cover each pixel.

    Args:
        density: (B, H - P + 1, W - P + 1) values per top-left candidate.
        patch_size: P.

    Returns:
        (B, H, W): at each pixel, the sum of ``density`` over the candidates whose P x P patch contains it.
    """
    pad = patch_size - 1
    rows = window_sums(F.pad(density, (0, 0, pad, pad)), patch_size, -2)  # (B, H, W - P + 1)
    return window_sums(F.pad(rows, (pad, pad)), patch_size, -1)
