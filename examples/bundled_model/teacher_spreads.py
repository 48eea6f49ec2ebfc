"""Measure the spreads of the teacher's three measures (``vtamiq_metric.training.labels.teacher.SPREADS``).

Draws ``--pairs`` KADIS-style pairs from the training crops (a seeded reference, one of the 24 types the bundled model
uses, a level 1-5), computes ``1 - VSI``, the mean S-CIELAB difference and ``1 - MS-SSIM`` of each, and prints their
standard deviations as JSON. The teacher divides each measure by its spread so that the three carry the same weight over
the data the model learns from; the values were measured once with this script and frozen in ``SPREADS``::

    python examples/bundled_model/teacher_spreads.py --refs DATA/ref_imgs --pairs 1200 --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from vtamiq_metric.training.acceptance import load_images
from vtamiq_metric.training.distortions import DISTORTIONS, apply_distortion
from vtamiq_metric.training.labels.teacher import teacher_components


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refs", type=Path, required=True, help="folder of training crops (PNG)")
    parser.add_argument("--pairs", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    refs = sorted(args.refs.glob("*.png"))
    if not refs:
        parser.error(f"no PNG files in {args.refs}")
    rng = np.random.default_rng(args.seed)
    types = [t for t in DISTORTIONS if t != 15]
    values: dict[str, list[float]] = {}
    for index in range(args.pairs):
        path = refs[int(rng.integers(len(refs)))]
        ref = load_images([path])[0]  # (3, H, W) float32 in [0, 1]
        array = (ref.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        dist_array = apply_distortion(array, int(rng.choice(types)), int(rng.integers(1, 6)), seed=index)
        dist = torch.from_numpy(dist_array).permute(2, 0, 1).float()[None] / 255
        for name, value in teacher_components(ref[None], dist).items():
            values.setdefault(name, []).append(float(value[0]))
    result = {name: {"std": float(np.std(v)), "median": float(np.median(v)), "mean": float(np.mean(v))}
              for name, v in values.items()}
    print(json.dumps({"pairs": args.pairs, "seed": args.seed, "measures": result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
