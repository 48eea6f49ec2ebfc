"""Throughput of ``vtamiq score`` on a folder of small pairs: the old per-pair command against the batched one.

It writes ``--pairs`` pairs of ``--size`` PNGs (random references, noisy copies) to a temporary folder and times, in
one process and **interleaved** (after one untimed warm-up of each, every round runs each variant once, in reverse
order on odd rounds, so that a busy machine slows them alike):

* ``old-per-pair`` -- the **baseline**: a faithful copy of ``vtamiq score --ref-dir R --dist-dir D --output F`` before
  batching (``cli.py`` as of commit 9e9f4f6): the model resolved once, then one
  ``vtamiq_metric.score(ref_path, dist_path, model=model, ..., return_std=True)`` call per pair, rows collected, and
  the CSV written at the end;
* ``cli-auto`` and ``cli-<B>`` -- today's command, ``vtamiq_metric.cli.main(["score", "--ref-dir", ..., "--output",
  F, "--no-progress"])`` in-process, with its automatic batch size and with each ``--batch-sizes`` value.

Both sides use the same cached model instance (the warm-up loads it), so model loading is left out of both. Each
variant's scores are checked against the baseline's (``max_abs_diff`` in the JSON). The figures are pairs per second
(median and best round), the ratio of medians against the baseline, and the per-round ratios (baseline time over the
variant's time in the same round, whose median is the steadier figure on a machine whose load changes). The load
average before and after the run is recorded, since a shared machine changes the absolute figures (the ratios less
so)::

    python benchmarks/bench_cli.py --pairs 48 --size 128 128 --iters 3 --json cli.json
    python benchmarks/bench_cli.py --batch-sizes 1 2 4 8 16 32 --threads 1
    python benchmarks/bench_cli.py --quick --model path/to/tiny_model_dir --patches 16

``--threads N`` sets ``torch.set_num_threads(N)`` for the whole run (both sides).
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import vtamiq_metric
from vtamiq_metric import cli, score
from vtamiq_metric._io import atomic_write_text
from vtamiq_metric._precision import uses_bf16, uses_half
from vtamiq_metric.api import auto_batch_size, resolve_model

_FIELDS = ["ref", "dist", "score", "std", "error"]


def write_pairs(folder: Path, count: int, height: int, width: int, seed: int = 0) -> None:
    """``count`` pairs ``refs/pNNNN.png`` and ``dists/pNNNN.png``: random references and noisy copies."""
    rng = np.random.default_rng(seed)
    for name in ("refs", "dists"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        ref = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        noise = rng.integers(-40, 41, ref.shape)
        dist = np.clip(ref.astype(np.int64) + noise * (i % 4 + 1) // 4, 0, 255).astype(np.uint8)
        Image.fromarray(ref).save(folder / "refs" / f"p{i:04d}.png")
        Image.fromarray(dist).save(folder / "dists" / f"p{i:04d}.png")


def old_per_pair_cli(ref_dir: Path, dist_dir: Path, output: Path, *, model: str | None, patches: int | None,
                     repeats: int, seed: int, device: str, precision: str) -> None:
    """What ``vtamiq score --ref-dir --dist-dir --output --no-progress`` did before batching, in one process."""
    model_instance = resolve_model(model, torch.device(device))
    refs = {p.name: p for p in sorted(ref_dir.iterdir()) if p.suffix.lower() == ".png"}
    dists = {p.name: p for p in sorted(dist_dir.iterdir()) if p.suffix.lower() == ".png"}
    options = {"model": model_instance, "num_patches": patches, "num_repeats": repeats, "seed": seed,
               "precision": precision, "return_std": True}
    rows = []
    for name in sorted(set(refs) & set(dists)):
        ref, dist = refs[name], dists[name]
        row = {"ref": str(ref), "dist": str(dist), "score": None, "std": None, "error": None}
        try:
            mean, std = score(str(ref), str(dist), **options)
            row["score"], row["std"] = float(mean[0]), float(std[0])
        except (OSError, ValueError, TypeError) as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
            print(f"vtamiq: skipping {ref} / {dist}: {row['error']}", file=sys.stderr)
        rows.append(row)
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(output, table.getvalue(), newline="")


def read_scores(path: Path) -> list[float]:
    with open(path, newline="") as handle:
        return [float(row["score"]) for row in csv.DictReader(handle)]


def variants(args: argparse.Namespace, folder: Path) -> dict[str, tuple[Callable[[], None], Path]]:
    """Each variant by name: (a call that scores the whole folder, the CSV it writes)."""
    common = {"model": args.model, "patches": args.patches, "repeats": 1, "seed": 0, "device": args.device,
              "precision": args.precision}
    out: dict[str, tuple[Callable[[], None], Path]] = {}
    base = folder / "old.csv"
    out["old-per-pair"] = (lambda: old_per_pair_cli(folder / "refs", folder / "dists", base, **common), base)
    argv = ["score", "--ref-dir", str(folder / "refs"), "--dist-dir", str(folder / "dists"), "--no-progress",
            "--device", args.device, "--precision", args.precision]
    if args.model is not None:
        argv += ["--model", args.model]
    if args.patches is not None:
        argv += ["--patches", str(args.patches)]
    for batch in ["auto", *map(str, args.batch_sizes)]:
        path = folder / f"cli-{batch}.csv"
        extra = [] if batch == "auto" else ["--batch-size", batch]

        out[f"cli-{batch}"] = (functools.partial(_run_cli, [*argv, *extra, "--output", str(path)]), path)
    return out


def _run_cli(argv: list[str]) -> None:
    code = cli.main(argv)
    if code != 0:
        raise RuntimeError(f"vtamiq score exited with {code}")


def measure(calls: dict[str, tuple[Callable[[], None], Path]], iters: int) -> dict[str, list[float]]:
    for fn, _ in calls.values():  # warm-up: loads the model, fills caches
        fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for round_ in range(iters):
        for name in names if round_ % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            calls[name][0]()
            times[name].append(time.perf_counter() - start)
            print(f"round {round_ + 1}/{iters} {name}: {times[name][-1]:.2f} s", flush=True)
    return times


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    height, width = args.size
    with tempfile.TemporaryDirectory(prefix="bench_cli_") as tmp:
        folder = Path(tmp)
        write_pairs(folder, args.pairs, height, width)
        calls = variants(args, folder)
        times = measure(calls, args.iters)
        baseline_scores = read_scores(calls["old-per-pair"][1])
        diffs = {name: max(abs(a - b) for a, b in zip(read_scores(path), baseline_scores, strict=True))
                 for name, (_, path) in calls.items()}
    device = torch.device(args.device)
    model = resolve_model(args.model, device)
    patches = model.config.num_patches if args.patches is None else args.patches
    auto = auto_batch_size(model.config, patches, height, width, args.pairs, device,
                           half_precision=uses_half(device, args.precision))
    base = statistics.median(times["old-per-pair"])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append({"variant": name, "batch_size": auto if name == "cli-auto" else
                     None if name == "old-per-pair" else int(name.split("-")[1]),
                     "median_s": median, "min_s": min(values), "times_s": values,
                     "pairs_per_s": args.pairs / median, "best_pairs_per_s": args.pairs / min(values),
                     "speedup_vs_old": base / median,
                     "round_speedups": [old / new for old, new in zip(times["old-per-pair"], values, strict=True)],
                     "max_abs_diff": diffs[name]})
        rows[-1]["round_speedup_median"] = statistics.median(rows[-1]["round_speedups"])
    return {"benchmark": "bench_cli", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command, "vtamiq_metric_version": vtamiq_metric.__version__,
            "torch_version": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "num_threads": torch.get_num_threads(), "device": args.device,
            "precision": args.precision, "bf16": uses_bf16(device, args.precision), "model": args.model,
            "num_patches": patches, "pairs": args.pairs, "image_size": [height, width], "iters": args.iters,
            "interleaved": True, "auto_batch_size": auto, "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()), "measurements": rows}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=48, help="number of pairs (default 48)")
    parser.add_argument("--size", type=int, nargs=2, default=[128, 128], metavar=("H", "W"),
                        help="image height and width (default 128 128)")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[1, 4, 16],
                        help="explicit --batch-size values to time besides the automatic one (default 1 4 16)")
    parser.add_argument("--iters", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--model", default=None, help="as vtamiq score --model (default: the bundled model)")
    parser.add_argument("--patches", type=int, default=None, help="patches per image (default: the model's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for this run")
    parser.add_argument("--quick", action="store_true", help="8 pairs of 64x64, batch sizes 2, one round")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.size, args.batch_sizes, args.iters = 8, [64, 64], [2], 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    command = shlex.join(["python", "benchmarks/bench_cli.py", *argv])
    result = run(args, command)
    print(f"\n{args.pairs} pairs of {args.size[0]}x{args.size[1]}, {result['num_patches']} patches, "
          f"{result['num_threads']} threads, bf16 {result['bf16']}, load average {result['load_average_before'][0]:.1f}"
          f" before / {result['load_average_after'][0]:.1f} after")
    for row in result["measurements"]:
        batch = "" if row["batch_size"] is None else f" (batch {row['batch_size']})"
        print(f"{row['variant']:>14}{batch:<11} {row['pairs_per_s']:7.2f} pairs/s median, "
              f"{row['best_pairs_per_s']:7.2f} best, {row['speedup_vs_old']:.2f}x old (per round: median "
              f"{row['round_speedup_median']:.2f}x, {min(row['round_speedups']):.2f}-{max(row['round_speedups']):.2f}),"
              f" max |diff| {row['max_abs_diff']:.1e}")
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
