"""Throughput of the KADIS-700k generator (distortion + PNG + label) on the CPU, with an extrapolation to 700k pairs.

Builds synthetic 512 x 384 references (smooth colour gradients, texture and noise), assigns all non-skipped types
round-robin (type i goes to reference i mod R), and runs :func:`vtamiq_metric.training.kadis.generate_kadis` at every
level into a temporary folder:

1. in-process with one worker (one thread) and no label: distortion + PNG writing only;
2. the same with each requested label (default VSI): the label cost is the difference;
3. optionally with ``--workers N`` spawned processes (wall time includes the process start-up).

The per-pair CPU time of (2) (``time.process_time``, which is robust to other processes sharing the cores; wall
times are printed too) is the cost on one core. Extrapolations assume linear scaling over cores (the work is
embarrassingly parallel per reference; file I/O and memory bandwidth are ignored), and are given both for all
700,000 KADIS pairs and for the 671,300 pairs left without type 15. Prints one JSON object.

Usage:
    python benchmarks/bench_kadis.py [--refs 4] [--labels vsi] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vtamiq_metric.training.distortions import DISTORTIONS
from vtamiq_metric.training.kadis import DEFAULT_SKIP_TYPES, generate_kadis

KADIS_PAIRS = 700_000
KADIS_PAIRS_NO_DENOISE = 671_300


def _make_refs(folder: Path, count: int, height: int, width: int) -> list[str]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    names = []
    for i in range(count):
        image = np.stack(
            [
                0.5 + 0.35 * np.sin(5 * xx + 3 * yy + i) + 0.08 * np.sin(60 * xx),
                0.3 + 0.5 * xx * yy + 0.06 * np.sin(45 * yy + i),
                0.5 + 0.3 * np.cos(7 * yy - i) * np.cos(3 * xx),
            ],
            axis=-1,
        )
        image = np.clip(image + 0.03 * rng.standard_normal(image.shape), 0, 1)
        name = f"ref{i:03d}.png"
        Image.fromarray((image * 255).astype(np.uint8)).save(folder / name)
        names.append(name)
    return names


def _run(refs: Path, out: Path, ref_csv: Path, labels: list[str], workers: int) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of this process, and number of pairs of one generation run."""
    start, start_cpu = time.perf_counter(), time.process_time()
    path = generate_kadis(refs, out, ref_csv=ref_csv, labels=labels, workers=workers, progress=False)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    with path.open(newline="") as handle:
        pairs = sum(1 for _ in csv.DictReader(handle))
    return elapsed, cpu, pairs


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON report; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=int, default=4, help="number of synthetic references (default 4)")
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--labels", default="vsi", help="comma-separated labels to time (default vsi)")
    parser.add_argument("--workers", type=int, default=0, help="also time N spawned workers (0: skip)")
    args = parser.parse_args(argv)
    labels = [name for name in args.labels.split(",") if name]

    types = [t for t in DISTORTIONS if t not in DEFAULT_SKIP_TYPES]
    result: dict = {
        "cpu": platform.processor() or platform.machine(),
        "os_cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "image": f"{args.width}x{args.height}",
        "refs": args.refs,
        "types": len(types),
        "levels": 5,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "refs").mkdir()
        names = _make_refs(root / "refs", args.refs, args.height, args.width)
        ref_csv = root / "types.csv"
        rows = ["ref_im,dist_type_1,dist_type_2"] + [f"{names[i % len(names)]},{t}," for i, t in enumerate(types)]
        ref_csv.write_text("\n".join(rows) + "\n")

        seconds, cpu, pairs = _run(root / "refs", root / "out_nolabel", ref_csv, [], workers=1)
        per_pair_base = cpu / pairs
        result["pairs"] = pairs
        result["distort_png_wall_ms_per_pair_1core"] = round(1000 * seconds / pairs, 2)
        result["distort_png_cpu_ms_per_pair"] = round(1000 * per_pair_base, 2)
        for label in labels:
            seconds, cpu, _ = _run(root / "refs", root / f"out_{label}", ref_csv, [label], workers=1)
            per_pair = cpu / pairs  # CPU time: robust to other processes sharing the cores
            result[f"{label}_total_wall_ms_per_pair_1core"] = round(1000 * seconds / pairs, 2)
            result[f"{label}_total_cpu_ms_per_pair"] = round(1000 * per_pair, 2)
            result[f"{label}_label_cpu_ms_per_pair"] = round(1000 * (per_pair - per_pair_base), 2)
            result[f"{label}_pairs_per_s_per_core"] = round(1 / per_pair, 2)
            for cores in (2, 16):
                hours = KADIS_PAIRS * per_pair / cores / 3600
                hours_no15 = KADIS_PAIRS_NO_DENOISE * per_pair / cores / 3600
                result[f"{label}_hours_700k_{cores}cores"] = round(hours, 2)
                result[f"{label}_hours_671k_no_denoise_{cores}cores"] = round(hours_no15, 2)
        if args.workers > 1 and labels:
            seconds, _, _ = _run(root / "refs", root / "out_parallel", ref_csv, labels[:1], workers=args.workers)
            result[f"{labels[0]}_pairs_per_s_{args.workers}workers_incl_startup"] = round(pairs / seconds, 2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
