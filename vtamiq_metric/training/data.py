"""Torch datasets that decode image pairs and draw CAPS patches inside DataLoader workers.

Every item's patch positions come from a seed derived from ``(run seed, epoch, item index)``: each epoch sees fresh
positions for every image (the paper's "fresh CAPS draws every time an image is seen"), and a resumed run draws
exactly what the uninterrupted run would have drawn, whatever the number of workers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..sampling import SamplingConfig, extract_patches, sample_patches
from .datasets.base import IQARecord, PairwiseRecord

__all__ = ["PairPatches", "TripletPatches", "derive_seed", "load_image", "collate"]


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (stable across processes and Python versions)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def load_image(path: Path) -> torch.Tensor:
    """Decode an image file to a (3, H, W) float32 tensor in [0, 1] (RGB; grayscale replicated, alpha dropped)."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot decode image {path}: {exc}") from exc
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255)  # (3, H, W)


def _check_same_size(paths: Sequence[Path], images: Sequence[torch.Tensor]) -> None:
    if any(img.shape != images[0].shape for img in images[1:]):
        sizes = ", ".join(f"{p.name} {tuple(i.shape[1:])}" for p, i in zip(paths, images))
        raise ValueError(f"images of one pair must have the same size, got {sizes}")


class _Epoched(Dataset):
    def __init__(self, num_patches: int, patch_size: int, sampling: SamplingConfig, seed: int) -> None:
        self.num_patches = num_patches
        self.patch_size = patch_size
        self.sampling = sampling
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Positions drawn in ``epoch`` (validation passes a fixed pseudo-epoch such as ``"val-0"``)."""
        self.epoch = epoch


class PairPatches(_Epoched):
    """(ref, dist, target) items with aligned CAPS patches.

    Items are dicts: ``ref``/``dist`` (N, 3, P, P) float in [0, 1] (un-normalised), ``pos`` (N, 2), ``scale`` (N,)
    long (-1 when single-scale), ``target`` float, ``index`` int.
    """

    def __init__(self, records: Sequence[IQARecord], num_patches: int, patch_size: int, sampling: SamplingConfig,
                 seed: int) -> None:
        super().__init__(num_patches, patch_size, sampling, seed)
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        ref, dist = load_image(record.ref), load_image(record.dist)
        _check_same_size((record.ref, record.dist), (ref, dist))
        sample = sample_patches(ref[None], dist[None], self.num_patches, patch_size=self.patch_size,
                                config=self.sampling, seed=derive_seed(self.seed, self.epoch, index))
        scale = sample.scale[0] if sample.scale is not None else torch.full((self.num_patches,), -1)
        return {"ref": sample.ref[0], "dist": sample.dist[0], "pos": sample.pos[0], "scale": scale,
                "target": torch.tensor(record.target, dtype=torch.float32), "index": torch.tensor(index)}


class TripletPatches(_Epoched):
    """PieAPP (ref, A, B, P(A preferred)) items; A and B share the positions drawn for (ref, A)."""

    def __init__(self, records: Sequence[PairwiseRecord], num_patches: int, patch_size: int, sampling: SamplingConfig,
                 seed: int) -> None:
        super().__init__(num_patches, patch_size, sampling, seed)
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        paths = (record.ref, record.dist_a, record.dist_b)
        ref, dist_a, dist_b = (load_image(p) for p in paths)
        _check_same_size(paths, (ref, dist_a, dist_b))
        sample = sample_patches(ref[None], dist_a[None], self.num_patches, patch_size=self.patch_size,
                                config=self.sampling, seed=derive_seed(self.seed, self.epoch, index))
        patches_b = extract_patches(dist_b[None], sample, patch_size=self.patch_size)
        scale = sample.scale[0] if sample.scale is not None else torch.full((self.num_patches,), -1)
        return {"ref": sample.ref[0], "dist": sample.dist[0], "dist_b": patches_b[0], "pos": sample.pos[0],
                "scale": scale, "target": torch.tensor(record.prob_a, dtype=torch.float32),
                "index": torch.tensor(index)}


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor | None]:
    """Stack items; ``scale`` becomes None when every patch is single-scale."""
    batch: dict[str, torch.Tensor | None] = {key: torch.stack([item[key] for item in items]) for key in items[0]}
    scale = batch["scale"]
    if scale is not None and bool((scale < 0).all()):
        batch["scale"] = None
    return batch
