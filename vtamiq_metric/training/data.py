"""Torch datasets that decode image pairs and draw CAPS patches inside DataLoader workers.

Every item's patch positions come from a seed derived from ``(run seed, epoch, item index)``
(:func:`.seeds.derive_seed`): each epoch sees fresh positions for every image (the paper's "fresh CAPS draws every time
an image is seen"), and a resumed run draws exactly what the uninterrupted run would have drawn, whatever the number
of workers. Images are decoded with the package's one decoder, :func:`vtamiq_metric._validation.load_image`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Generic, TypeVar

import torch
from torch.utils.data import Dataset

from .._validation import load_image
from ..sampling import PatchSample, SamplingConfig, extract_patches, sample_patches, viewing_downsample
from .datasets.base import IQARecord, PairwiseRecord
from .seeds import derive_seed

# ``derive_seed`` and ``load_image`` are re-exported: they are what a data pipeline needs, defined where they belong
# (:mod:`.seeds`, :mod:`vtamiq_metric._validation`).
__all__ = ["PairPatches", "TripletPatches", "collate", "derive_seed", "load_image"]

R = TypeVar("R", IQARecord, PairwiseRecord)


def _check_same_size(paths: Sequence[Path], images: Sequence[torch.Tensor]) -> None:
    if any(img.shape != images[0].shape for img in images[1:]):
        sizes = ", ".join(f"{p.name} {tuple(i.shape[1:])}" for p, i in zip(paths, images, strict=True))
        raise ValueError(f"images of one pair must have the same size, got {sizes}")


class _Epoched(Dataset[dict[str, torch.Tensor]], Generic[R]):
    """Items of ``records`` with CAPS patches; ``downsample_side`` is the model config's viewing distance (images are
    averaged over ``F x F`` blocks before sampling, as :func:`vtamiq_metric.score` does for that model)."""

    def __init__(self, records: Sequence[R], num_patches: int, patch_size: int,
                 sampling: SamplingConfig, seed: int, *, downsample_side: int | None = None) -> None:
        self.records: list[R] = list(records)
        self.num_patches = num_patches
        self.patch_size = patch_size
        self.sampling = sampling
        self.downsample_side = downsample_side
        self.seed = seed
        self.epoch: int | str = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int | str) -> None:
        """Positions drawn in ``epoch`` (validation passes a fixed pseudo-epoch such as ``"val-0"``)."""
        self.epoch = epoch

    def _draw(self, index: int, paths: tuple[Path, ...]) -> tuple[dict[str, torch.Tensor], list[torch.Tensor],
                                                                  PatchSample]:
        """Decode ``paths`` (ref first, then the distorted images) and draw patches for (ref, first distorted)."""
        images = [load_image(p) for p in paths]
        _check_same_size(paths, images)
        if self.downsample_side is not None:  # the model's viewing distance; a no-op below 1.5 * downsample_side
            pooled, _ = viewing_downsample(*(image[None] for image in images), side=self.downsample_side)
            images = [image[0] for image in pooled]
        sample = sample_patches(images[0][None], images[1][None], self.num_patches, patch_size=self.patch_size,
                                config=self.sampling, seed=derive_seed(self.seed, self.epoch, index))
        scale = sample.scale[0] if sample.scale is not None else torch.full((self.num_patches,), -1)
        item = {"ref": sample.ref[0], "dist": sample.dist[0], "pos": sample.pos[0], "scale": scale,
                "index": torch.tensor(index)}
        return item, images, sample


class PairPatches(_Epoched[IQARecord]):
    """(ref, dist, target) items with aligned CAPS patches.

    Items are dicts: ``ref``/``dist`` (N, 3, P, P) float in [0, 1] (un-normalised), ``pos`` (N, 2), ``scale`` (N,)
    long (-1 when single-scale), ``target`` float, ``index`` int.
    """

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        item, _, _ = self._draw(index, (record.ref, record.dist))
        item["target"] = torch.tensor(record.target, dtype=torch.float32)
        return item


class TripletPatches(_Epoched[PairwiseRecord]):
    """PieAPP (ref, A, B, P(A preferred)) items; B is read at the positions drawn for (ref, A) (key ``dist_b``)."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        item, images, sample = self._draw(index, (record.ref, record.dist_a, record.dist_b))
        item["dist_b"] = extract_patches(images[2][None], sample, patch_size=self.patch_size)[0]
        item["target"] = torch.tensor(record.prob_a, dtype=torch.float32)
        return item


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor | None]:
    """Stack items; ``scale`` becomes None when every patch is single-scale."""
    batch: dict[str, torch.Tensor | None] = {key: torch.stack([item[key] for item in items]) for key in items[0]}
    scale = batch["scale"]
    if scale is not None and bool((scale < 0).all()):
        batch["scale"] = None
    return batch
