"""The Python steps of ``benchmarks/gpu_check.sh``: the CUDA check, two small GPU probes, and the assembly of every
figure into one JSON file.

Subcommands:

* ``require-cuda``: exit 0 when torch sees a CUDA device, else print why on stderr and exit 2.
* ``positions --out F``: CPU/CUDA agreement and CUDA determinism, as figures: CAPS patch positions for the same seed
  on both devices (count of differing positions), the fp32 score difference of a seeded ``tiny`` model on CPU and
  CUDA, and two identical CUDA calls (bitwise equal or not).
* ``train-summary --run DIR --returncode RC --out F``: what a ``vtamiq-train train`` run folder holds.
* ``nccl --out F``: run under ``torchrun`` (one process is enough): create an NCCL process group, all-reduce a tensor
  on the GPU, check the sum, time the call.
* ``assemble --work DIR --out F``: read the pieces that the steps left in ``DIR`` (``steps.tsv``, ``*.json``, the
  pytest JUnit XML, the logs) and write one JSON file with every figure, the targets beside the measured values, and
  ``ok``. Pieces that are missing (a step that failed or ran out of time) appear as null, with the step's exit status
  and the end of its log.

Only ``assemble`` is tested without a GPU (``tests/benchmarks/test_gpu_check.py`` feeds it fixture pieces).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
# Targets of issue 12 on one GPU, model forward and end-to-end score() at 1024 patches per image.
TARGET_FORWARD_PAIRS_PER_S = 1800.0
TARGET_SCORE_PAIRS_PER_S = 1500.0
TARGET_PATCHES = 1024
LOG_TAIL_CHARS = 3000
# The pieces assemble() reads, by step name: the file each step writes in the work folder.
PIECES = {
    "cuda_tests": "cuda_tests.xml",
    "positions": "positions.json",
    "bench_score_eager": "bench_score_eager.json",
    "bench_score_compile": "bench_score_compile.json",
    "bench_train": "bench_train.json",
    "torchrun_train": "torchrun_train.json",
    "nccl": "nccl.json",
}


# ---------------------------------------------------------------------------------------------------------------------
# GPU steps


def require_cuda() -> int:
    """0 when a CUDA device is usable, else a message on stderr and 2."""
    try:
        import torch
    except ImportError as error:
        print(f"gpu_check: cannot import torch ({error})", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device: torch {torch.__version__} reports torch.cuda.is_available() False "
              f"(CUDA build: {torch.version.cuda}); this script only runs the checks that need a GPU. "
              f"Run it on a machine with an NVIDIA GPU, or run the CPU tests with `python -m pytest`.",
              file=sys.stderr)
        return 2
    return 0


def positions() -> dict[str, Any]:
    """CPU/CUDA agreement and CUDA determinism figures (tiny model, seeded)."""
    import torch

    from vtamiq_metric import VTAMIQ, score
    from vtamiq_metric.sampling import SamplingConfig, sample_patches

    gen = torch.Generator().manual_seed(0)
    ref = torch.rand(4, 3, 96, 128, generator=gen)
    dist = (ref + 0.1 * torch.randn(ref.shape, generator=gen)).clamp(0, 1)
    mismatches, compared = 0, 0
    for config in (SamplingConfig(), SamplingConfig(diff_type="ssim", num_scales=2)):
        cpu = sample_patches(ref, dist, 300, config=config, seed=11)
        gpu = sample_patches(ref.cuda(), dist.cuda(), 300, config=config, seed=11)
        mismatches += int((gpu.top_left.cpu() != cpu.top_left).any(-1).sum())
        compared += int(cpu.top_left.shape[0] * cpu.top_left.shape[1])
    torch.manual_seed(0)
    model = VTAMIQ("tiny").eval().requires_grad_(False)
    on_cpu = score(ref, dist, model=model, num_patches=64, precision="fp32")
    model = model.cuda()
    first = score(ref.cuda(), dist.cuda(), model=model, num_patches=64, precision="fp32")
    again = score(ref.cuda(), dist.cuda(), model=model, num_patches=64, precision="fp32")
    return {"positions_compared": compared, "position_mismatches": mismatches,
            "cpu_cuda_max_abs_score_diff_fp32": float((first.cpu() - on_cpu).abs().max()),
            "cuda_repeat_bitwise_equal": bool(torch.equal(first, again)),
            "device_name": torch.cuda.get_device_name(0)}


def nccl() -> dict[str, Any]:
    """An NCCL all-reduce under torchrun; every rank checks the sum, rank 0's figures are returned."""
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl")
    tensor = torch.full((1 << 20,), float(dist.get_rank() + 1), device="cuda")
    dist.all_reduce(tensor)  # the first call sets up the communicator
    torch.cuda.synchronize()
    start = time.perf_counter()
    dist.all_reduce(tensor)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    world = dist.get_world_size()
    expected = world * (world + 1) / 2 * world  # two all-reduces of 1..world
    version = torch.cuda.nccl.version()
    out = {"backend": dist.get_backend(), "world_size": world, "all_reduce_ok": bool((tensor == expected).all()),
           "all_reduce_4mib_s": seconds,
           "nccl_version": ".".join(map(str, version)) if isinstance(version, tuple) else str(version)}
    dist.destroy_process_group()
    return out


def train_summary(run: Path, returncode: int) -> dict[str, Any]:
    """What a ``vtamiq-train train`` run under torchrun left: its exit status, epochs logged, the last metrics row."""
    rows = []
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return {"returncode": returncode, "epochs_logged": len(rows), "last_metrics": rows[-1] if rows else None,
            "files": sorted(p.name for p in run.iterdir()) if run.is_dir() else []}


# ---------------------------------------------------------------------------------------------------------------------
# Assembly


def junit_summary(path: Path) -> dict[str, Any] | None:
    """Counts and per-test outcomes from a pytest JUnit XML file; None when it is missing or unreadable."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    tests = []
    for case in root.iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
        tests.append({"test": f"{case.get('classname', '')}::{case.get('name', '')}", "outcome": outcome,
                      "seconds": float(case.get("time", 0) or 0)})
    counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "error", "skipped")}
    return {**counts, "total": len(tests), "tests": tests}


def read_steps(path: Path) -> dict[str, dict[str, Any]]:
    """``steps.tsv`` (name, exit status, seconds, time limit, per line) as a dict by step name."""
    steps: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return steps
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) != 4:
            continue
        name, rc, seconds, limit = parts
        steps[name] = {"rc": int(rc), "seconds": float(seconds), "limit_s": float(limit),
                       "timed_out": int(rc) in (124, 137)}
    return steps


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def best_rate(results: Sequence[dict[str, Any] | None], stage: str,
              patches: int = TARGET_PATCHES) -> dict[str, Any] | None:
    """The bench_score row of ``stage`` at ``patches`` with the most pairs per second (baseline excluded)."""
    rows = [row for result in results if result for row in result.get("measurements", [])
            if row["stage"] == stage and row["num_patches"] == patches and row["variant"] != "naive-fp32"]
    if not rows:
        return None
    row = max(rows, key=lambda r: r["pairs_per_s"])
    return {key: row.get(key) for key in ("variant", "batch_size", "num_patches", "pairs_per_s", "median_s",
                                          "tflops", "peak_fraction", "peak_mem_per_pair_mib")}


def _target(name: str, best: dict[str, Any] | None, target: float) -> dict[str, Any]:
    measured = best["pairs_per_s"] if best else None
    return {"name": name, "target_pairs_per_s": target, "measured_pairs_per_s": measured,
            "best_cell": best, "ok": measured is not None and measured >= target}


def assemble(work: Path) -> dict[str, Any]:
    """One dict with every figure the steps left in ``work``."""
    steps = read_steps(work / "steps.tsv")
    for name, step in steps.items():
        log = work / f"{name}.log"
        if step["rc"] != 0 and log.is_file():
            step["log_tail"] = log.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    pieces: dict[str, Any] = {}
    for name, file in PIECES.items():
        path = work / file
        pieces[name] = junit_summary(path) if file.endswith(".xml") else _read_json(path)
    eager, compiled = pieces["bench_score_eager"], pieces["bench_score_compile"]
    forward = best_rate([eager, compiled], "forward")
    scored = best_rate([eager, compiled], "score")
    targets = [
        _target(f"model forward at {TARGET_PATCHES} patches", forward, TARGET_FORWARD_PAIRS_PER_S),
        _target(f"end-to-end score() from GPU tensors at {TARGET_PATCHES} patches", scored, TARGET_SCORE_PAIRS_PER_S),
    ]
    tests = pieces["cuda_tests"]
    checks = {
        "all_steps_exit_0": bool(steps) and all(s["rc"] == 0 for s in steps.values()),
        # On a GPU every cuda-marked test should run: all skipped means the GPU was not seen.
        "cuda_tests_pass": bool(tests) and tests["passed"] > 0 and tests["failed"] == 0 and tests["error"] == 0,
        "positions_equal": bool(pieces["positions"]) and pieces["positions"]["position_mismatches"] == 0,
        "torchrun_train_ok": bool(pieces["torchrun_train"]) and pieces["torchrun_train"]["returncode"] == 0
        and pieces["torchrun_train"]["epochs_logged"] >= 1,
        "nccl_all_reduce_ok": bool(pieces["nccl"]) and bool(pieces["nccl"].get("all_reduce_ok")),
        "targets_met": all(t["ok"] for t in targets),
    }
    device = next((p.get("device_name") for p in (pieces["positions"], eager, compiled) if p and
                   p.get("device_name")), None)
    return {
        "schema": SCHEMA_VERSION,
        "benchmark": "gpu_check",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "python_version": platform.python_version(),
        "device_name": device,
        "total_seconds": sum(s["seconds"] for s in steps.values()),
        "steps": steps,
        "targets": targets,
        "checks": checks,
        "ok": all(checks.values()),
        **pieces,
    }


def to_text(result: dict[str, Any]) -> str:
    """A short human summary: each step, each target beside its figure, each check."""
    lines = [f"gpu_check on {result['device_name']}: {result['total_seconds']:.0f} s"]
    for name, step in result["steps"].items():
        state = "timed out" if step["timed_out"] else ("ok" if step["rc"] == 0 else f"exit {step['rc']}")
        lines.append(f"  step {name:22s} {state:10s} {step['seconds']:6.1f} s (limit {step['limit_s']:.0f} s)")
    for target in result["targets"]:
        measured = target["measured_pairs_per_s"]
        cell = target["best_cell"]
        where = f" ({cell['variant']}, batch {cell['batch_size']})" if cell else ""
        value = f"{measured:,.0f}" if measured is not None else "-"
        lines.append(f"  {target['name']}: {value} pairs/s{where}, target >= {target['target_pairs_per_s']:,.0f}: "
                     f"{'met' if target['ok'] else 'NOT met'}")
    lines += [f"  {name}: {value}" for name, value in result["checks"].items()]
    lines.append(f"  ok: {result['ok']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("require-cuda", help="exit 2 with a message when there is no CUDA device")
    for name in ("positions", "nccl"):
        sub.add_parser(name).add_argument("--out", type=Path, required=True)
    p_train = sub.add_parser("train-summary", help="figures of a finished vtamiq-train run folder")
    p_train.add_argument("--run", type=Path, required=True)
    p_train.add_argument("--returncode", type=int, required=True, help="torchrun's exit status")
    p_train.add_argument("--out", type=Path, required=True)
    p_assemble = sub.add_parser("assemble", help="write the one JSON file from the steps' pieces")
    p_assemble.add_argument("--work", type=Path, required=True, help="the folder the steps wrote in")
    p_assemble.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    args = parser.parse_args(argv)
    if args.command == "require-cuda":
        return require_cuda()
    if args.command == "assemble":
        result = assemble(args.work)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(to_text(result))
        print(f"wrote {args.out}")
        return 0
    if args.command == "train-summary":
        figures = train_summary(args.run, args.returncode)
    else:
        figures = positions() if args.command == "positions" else nccl()
    if int(os.environ.get("RANK", "0")) == 0:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
