"""Training items: CAPS patches drawn in DataLoader workers, fresh per epoch, shared by PieAPP triplets."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from vtamiq_metric.training.data import PairPatches, TripletPatches
from vtamiq_metric.training.seeds import derive_seed


def test_fresh_positions_each_epoch_and_reproducible(kadid):
    from vtamiq_metric.sampling import SamplingConfig
    from vtamiq_metric.training.datasets import get_dataset

    records = get_dataset("kadid10k", kadid).records
    items = PairPatches(records, 8, 16, SamplingConfig(), seed=0)
    items.set_epoch(0)
    a = items[3]["pos"]
    items.set_epoch(1)
    b = items[3]["pos"]
    items.set_epoch(0)
    assert torch.equal(a, items[3]["pos"]) and not torch.equal(a, b)
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2) != derive_seed(0, 2, 1)


def test_triplets_share_positions(tmp_path):
    from vtamiq_metric.sampling import SamplingConfig
    from vtamiq_metric.training.datasets.base import PairwiseRecord

    rng = np.random.default_rng(0)
    paths = []
    for name in ("r", "a", "b"):
        path = tmp_path / f"{name}.png"
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    record = PairwiseRecord(ref=paths[0], dist_a=paths[1], dist_b=paths[2], prob_a=0.7, ref_id="r")
    item = TripletPatches([record], 6, 16, SamplingConfig(), seed=0)[0]
    b = torch.from_numpy(np.asarray(Image.open(paths[2]), dtype=np.float32) / 255).permute(2, 0, 1)
    top = (item["pos"] * 40 - 8).round().long()
    for k in range(6):
        r, c = top[k].tolist()
        assert torch.allclose(item["dist_b"][k], b[:, r:r + 16, c:c + 16])
