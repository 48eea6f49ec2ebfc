"""Scoring speed of VTAMIQ, fast paths against the authors' way, measured in one run.

For a preset with random (seeded) weights, 512x384 image pairs, and each number of patches and batch size, it times:

* ``forward``: the model alone on pre-sampled, normalised patches;
* ``score``: end-to-end :func:`vtamiq_metric.score` from in-memory image tensors already on the device (validation,
  CAPS sampling, gathering, normalisation, model); the *sampling overhead* is ``(score - forward) / forward``;
* ``files``: end-to-end ``score()`` from PNG files on disk, decoding included;
* ``loss``: :class:`vtamiq_metric.VTAMIQLoss` forward + backward with respect to ``dist``.

Variants (one model instance; attention is switched with ``model.backbone.set_fused_attention`` before each call):

* ``naive-fp32`` -- the **baseline**: materialised softmax attention (``fused_attn = False``) in float32, the way
  the authors' model computes. It is timed for ``forward`` and ``loss``.
* ``sdpa-fp32``, ``sdpa-bf16`` -- ``scaled_dot_product_attention``, float32 or bf16 autocast (``--precisions``);
* ``sdpa-<precision>-compile`` -- the same through ``torch.compile`` (``--compile``; ``loss`` is not compiled);
* ``default`` -- ``score()`` with its defaults (``precision="auto"``: bf16 on CUDA and on CPUs with native bf16
  units, else fp32; ``batch_size=None``; no compile), timed for ``score`` and ``files`` only: what a user gets.

The cells of one (patches, batch) pair are timed **interleaved**: after the warm-up of every cell, each of the
``--iters`` rounds calls every cell once (in reverse order on odd rounds), so that a busy or throttling machine slows
all variants alike and the ratios stay meaningful even when the absolute times do not.

Every time is also given as ``x naive``: the baseline's median over this median, at the same batch size and number
of patches. The ``forward``, ``score`` and ``files`` stages are compared with the baseline *forward* (so end-to-end
figures carry the sampling and decoding costs against a model-only baseline); ``loss`` with the baseline *loss*.
The headline ratios (``ratios`` in the JSON, listed under the table) are: ``default`` score() against the
baseline forward, and bf16 against fp32 (``sdpa-bf16`` over ``sdpa-fp32``) for the forward and for score().

FLOPs per pair (multiply-add = 2 FLOPs) come from the config, :func:`vtamiq_metric.api.pair_flops` (the formula is in
its docstring); for ``paper2021`` at N = 1024 this is about 215 GFLOP per pair. ``loss`` counts twice the forward:
the backward to the inputs repeats each matmul once (no weight gradients are computed), a slight undercount for
attention. On CUDA the
script reports TFLOP/s, the fraction of ``--peak-tflops`` (default 790, an H100's dense bf16 peak) and the peak
allocated memory per pair; on CPU the process's peak resident memory.

Timing: CUDA events after a ``torch.cuda.synchronize`` on GPU, ``time.perf_counter`` on CPU; the median of
``--iters`` interleaved runs after ``--warmup`` runs. Output: progress on stdout, a JSON file (``--out``, alias
``--json``; rewritten after each batch size with ``"complete": false`` until the run ends, so a run cut short by a
time limit keeps what it measured) and a Markdown table (``--markdown``)::

    python benchmarks/bench_score.py --device cpu --batch-sizes 1 --iters 3 --warmup 1 --patches 1024 256
    python benchmarks/bench_score.py --device cuda --compile --out results.json --markdown table.md
    python benchmarks/bench_score.py --quick --preset tiny
    python benchmarks/bench_score.py --device cpu --batch-sizes 1 --patches 1024 --stages forward score \
        --iters 3 --warmup 1 --json score.json      # the README's "fast by default" row

Peak memory for large images is measured by ``benchmarks/bench_memory.py`` (one fresh process per case).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import resource
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image

import vtamiq_metric
from vtamiq_metric import VTAMIQ, VTAMIQLoss, score
from vtamiq_metric._precision import autocast, uses_bf16
from vtamiq_metric.api import compiled_forward, pair_flops
from vtamiq_metric.sampling import sample_patches

from _report import report

STAGES = ("forward", "score", "files", "loss")
BASELINE = "naive-fp32"
DEFAULT = "default"
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Variant:
    """One way of running the model."""

    name: str
    fused_attn: bool
    precision: str  # "fp32", "bf16", or "auto" for the default variant
    compile: bool = False
    defaults: bool = False  # score() with its default arguments


def make_images(count: int, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random references and noisy distorted copies, (count, 3, height, width) float32 in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, max(1, height // 16), max(1, width // 16), generator=gen)
    ref = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)  # (B, 3, H, W)
    ref = (ref + 0.1 * torch.rand(ref.shape, generator=gen)).clamp(0, 1)
    sigma = torch.linspace(0.02, 0.2, count).view(count, 1, 1, 1)
    dist = (ref + sigma * torch.randn(ref.shape, generator=gen)).clamp(0, 1)
    return ref, dist


def write_pngs(ref: torch.Tensor, dist: torch.Tensor, folder: Path) -> tuple[list[str], list[str]]:
    """Write each pair as 8-bit PNGs; returns the reference and distorted paths."""
    refs, dists = [], []
    for i in range(len(ref)):
        for images, paths, tag in ((ref, refs, "ref"), (dist, dists, "dist")):
            array = (images[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # (H, W, 3)
            path = folder / f"{tag}_{i:03d}.png"
            Image.fromarray(array).save(path)
            paths.append(str(path))
    return refs, dists


def peak_rss_mib() -> float:
    """The process's peak resident set size so far, in MiB (a high-water mark: it never goes down)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def time_call(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one call of ``fn`` (CUDA events on GPU, ``time.perf_counter`` elsewhere)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    start_s = time.perf_counter()
    fn()
    return time.perf_counter() - start_s


def time_interleaved(fns: Sequence[Callable[[], Any]], device: torch.device, iters: int,
                     warmups: Sequence[int]) -> list[list[float]]:
    """Seconds per call of each of ``fns``: ``warmups[i]`` untimed calls of each, then ``iters`` rounds that call
    every function once (reversed order on odd rounds). Returns one list of ``iters`` times per function."""
    for fn, warmup in zip(fns, warmups, strict=True):
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    for round_ in range(iters):
        for i in (order if round_ % 2 == 0 else order[::-1]):
            times[i].append(time_call(fns[i], device))
    return times


def device_name(device: torch.device) -> str:
    """A human-readable name of the device."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def stage_callable(stage: str, variant: Variant, model: VTAMIQ, batch: int, num_patches: int,
                   data: dict[str, Any], device: torch.device) -> Callable[[], Any]:
    """The function that one timed call of ``stage`` runs; it first sets the variant's attention path."""
    fn = _stage_callable(stage, variant, model, batch, num_patches, data, device)

    def call() -> Any:
        model.backbone.set_fused_attention(variant.fused_attn)
        return fn()

    return call


def _stage_callable(stage: str, variant: Variant, model: VTAMIQ, batch: int, num_patches: int,
                    data: dict[str, Any], device: torch.device) -> Callable[[], Any]:
    ref, dist = data["ref"][:batch], data["dist"][:batch]
    if variant.defaults:
        if stage == "score":
            return lambda: score(ref, dist, model=model, num_patches=num_patches)
        if stage == "files":
            refs, dists = data["ref_paths"][:batch], data["dist_paths"][:batch]
            return lambda: score(refs, dists, model=model, num_patches=num_patches)
        raise ValueError(f"the {DEFAULT!r} variant times score() and files only, got stage {stage!r}")
    if stage == "forward":
        sample = sample_patches(ref, dist, num_patches, patch_size=model.config.patch_size,
                                config=model.config.sampling, seed=0)
        ref_p, dist_p = model.normalize(sample.ref), model.normalize(sample.dist)  # (B, N, 3, P, P)
        forward = compiled_forward(model) if variant.compile else model

        def run() -> Any:
            with torch.no_grad(), autocast(device, variant.precision):
                return forward(ref_p, dist_p, sample.pos, sample.scale)

        return run
    if stage == "score":
        return lambda: score(ref, dist, model=model, num_patches=num_patches, precision=variant.precision,
                             batch_size=batch, compile=variant.compile)
    if stage == "files":
        refs, dists = data["ref_paths"][:batch], data["dist_paths"][:batch]
        return lambda: score(refs, dists, model=model, device=device, num_patches=num_patches,
                             precision=variant.precision, batch_size=batch, compile=variant.compile)
    loss_fn = VTAMIQLoss(model, num_patches=num_patches, resample=False, precision=variant.precision)

    def step() -> None:
        target = dist.detach().clone().requires_grad_(True)
        loss_fn(ref, target).backward()

    return step


def measure_cells(cells: Sequence[tuple[str, Variant]], model: VTAMIQ, batch: int, num_patches: int,
                  data: dict[str, Any], device: torch.device, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Time the (stage, variant) cells of one (batch, patches) pair interleaved and collect their figures."""
    fns = [stage_callable(stage, variant, model, batch, num_patches, data, device) for stage, variant in cells]
    warmups = [max(args.warmup, 1) if variant.compile else args.warmup for _, variant in cells]
    all_times = time_interleaved(fns, device, args.iters, warmups)
    rows = []
    for (stage, variant), fn, times in zip(cells, fns, all_times, strict=True):
        median = statistics.median(times)
        flops = pair_flops(model.config, num_patches) * batch * (2 if stage == "loss" else 1)
        row: dict[str, Any] = {
            "variant": variant.name, "stage": stage, "batch_size": batch, "num_patches": num_patches,
            "precision": variant.precision, "bf16": uses_bf16(device, variant.precision),
            "fused_attn": variant.fused_attn, "compile": variant.compile,
            "median_s": median, "min_s": min(times), "times_s": times, "pairs_per_s": batch / median,
            "flops": flops,
        }
        if device.type == "cuda":  # one more call per cell, alone, for its peak memory
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            static = torch.cuda.memory_allocated(device)
            fn()
            torch.cuda.synchronize(device)
            tflops = flops / median / 1e12
            row["tflops"] = tflops
            row["peak_fraction"] = tflops / args.peak_tflops
            row["peak_mem_per_pair_mib"] = (torch.cuda.max_memory_allocated(device) - static) / batch / 2**20
        else:
            row["peak_rss_mib"] = peak_rss_mib()
        rows.append(row)
    return rows


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set ``speedup_vs_baseline`` on every row; return the sampling overheads per (variant, batch, patches)."""
    base = {(r["stage"], r["batch_size"], r["num_patches"]): r["median_s"] for r in rows if r["variant"] == BASELINE}
    for row in rows:
        reference = "loss" if row["stage"] == "loss" else "forward"
        baseline = base.get((reference, row["batch_size"], row["num_patches"]))
        row["baseline_stage"] = reference
        row["speedup_vs_baseline"] = baseline / row["median_s"] if baseline else None
    cells = {(r["variant"], r["batch_size"], r["num_patches"], r["stage"]): r["median_s"] for r in rows}
    overheads = []
    for (variant, batch, patches, stage), seconds in cells.items():
        forward = cells.get((variant, batch, patches, "forward"))
        if stage == "score" and forward:
            overheads.append({"variant": variant, "batch_size": batch, "num_patches": patches,
                              "overhead": (seconds - forward) / forward})
    return overheads


# The headline ratios: (name, (variant, stage) of the numerator's time, (variant, stage) of the denominator's time);
# the ratio is numerator time / denominator time, i.e. how many times faster the denominator is.
HEADLINE_RATIOS = (
    ("default score() vs naive-fp32 forward", (BASELINE, "forward"), (DEFAULT, "score")),
    ("bf16 vs fp32 forward", ("sdpa-fp32", "forward"), ("sdpa-bf16", "forward")),
    ("bf16 vs fp32 score()", ("sdpa-fp32", "score"), ("sdpa-bf16", "score")),
)


def headline_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The :data:`HEADLINE_RATIOS` present in ``rows``, per (batch, patches): ``speedup`` > 1 means faster.

    ``speedup`` divides the medians; ``speedup_best`` the fastest runs, which a machine shared with other jobs
    disturbs least (contention only ever adds time)."""
    cells = {(r["variant"], r["stage"], r["batch_size"], r["num_patches"]): r for r in rows}
    keys = list(dict.fromkeys((r["batch_size"], r["num_patches"]) for r in rows))
    out = []
    for batch, patches in keys:
        for name, slow, fast in HEADLINE_RATIOS:
            slow_r, fast_r = cells.get((*slow, batch, patches)), cells.get((*fast, batch, patches))
            if slow_r and fast_r:
                out.append({"name": name, "batch_size": batch, "num_patches": patches, "slower": "/".join(slow),
                            "faster": "/".join(fast), "speedup": slow_r["median_s"] / fast_r["median_s"],
                            "speedup_best": slow_r["min_s"] / fast_r["min_s"]})
    return out


def variants(args: argparse.Namespace) -> list[Variant]:
    """The baseline first, then the fast paths in the order requested, then ``score()`` with its defaults."""
    out = [Variant(BASELINE, fused_attn=False, precision="fp32")]
    out += [Variant(f"sdpa-{p}", fused_attn=True, precision=p) for p in args.precisions]
    if args.compile:
        out += [Variant(f"sdpa-{p}-compile", fused_attn=True, precision=p, compile=True) for p in args.precisions]
    if not args.no_default:
        out.append(Variant(DEFAULT, fused_attn=True, precision="auto", defaults=True))
    return out


def variant_stages(variant: Variant, stages: Sequence[str]) -> list[str]:
    """The stages timed for ``variant``: the baseline times forward and loss, the default score() and files, and
    compiled variants everything but loss."""
    if variant.name == BASELINE:
        return [s for s in stages if s in ("forward", "loss")]
    if variant.defaults:
        return [s for s in stages if s in ("score", "files")]
    if variant.compile:
        return [s for s in stages if s != "loss"]
    return list(stages)


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Build the model and data, time every cell, and return the JSON-able results."""
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = VTAMIQ(args.preset).eval().requires_grad_(False).to(device)
    width, height = args.image_size
    max_batch = max(args.batch_sizes)
    ref, dist = make_images(max_batch, height, width, seed=args.seed)
    rows: list[dict[str, Any]] = []
    compile_s: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="vtamiq-bench-") as folder:
        ref_paths, dist_paths = write_pngs(ref, dist, Path(folder)) if "files" in args.stages else ([], [])
        data = {"ref": ref.to(device), "dist": dist.to(device), "ref_paths": ref_paths, "dist_paths": dist_paths}
        for num_patches in args.patches:
            for batch in args.batch_sizes:
                cells = []
                for variant in variants(args):
                    stages = variant_stages(variant, args.stages)
                    if variant.compile and variant.name not in compile_s and "forward" in stages:
                        start = time.perf_counter()
                        stage_callable("forward", variant, model, batch, num_patches, data, device)()
                        compile_s[variant.name] = time.perf_counter() - start
                    cells += [(stage, variant) for stage in stages]
                for row in measure_cells(cells, model, batch, num_patches, data, device, args):
                    rows.append(row)
                    print(f"N={num_patches:5d} B={batch:3d} {row['variant']:20s} {row['stage']:8s} "
                          f"{row['median_s'] * 1e3:10.1f} ms  {row['pairs_per_s']:9.2f} pairs/s", flush=True)
                if args.out is not None:  # what is measured so far survives a time limit that cuts the run short
                    partial = results(args, command, device, model, rows, compile_s, complete=False)
                    args.out.write_text(json.dumps(partial, indent=2) + "\n")
        model.backbone.set_fused_attention(True)
    return results(args, command, device, model, rows, compile_s, complete=True)


def results(args: argparse.Namespace, command: str, device: torch.device, model: VTAMIQ, rows: list[dict[str, Any]],
            compile_s: dict[str, float], *, complete: bool) -> dict[str, Any]:
    """The JSON-able results of the cells measured so far (``complete`` False while the run goes on)."""
    width, height = args.image_size
    overheads = add_ratios(rows)
    return {
        "schema": SCHEMA_VERSION,
        "benchmark": "bench_score",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "device": device.type,
        "device_name": device_name(device),
        "num_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "vtamiq_metric_version": vtamiq_metric.__version__,
        "python_version": platform.python_version(),
        "preset": args.preset,
        "num_params": sum(p.numel() for p in model.parameters()),
        "image_size": [width, height],
        "batch_sizes": args.batch_sizes,
        "patches": args.patches,
        "iters": args.iters,
        "warmup": args.warmup,
        "peak_tflops": args.peak_tflops,
        "baseline": BASELINE,
        "flops_per_pair": {str(n): pair_flops(model.config, n) for n in args.patches},
        "compile_s": compile_s,
        "complete": complete,
        "interleaved": True,
        "cpu_native_bf16": device.type == "cpu" and uses_bf16(device, "auto"),
        "default_bf16": uses_bf16(device, "auto"),
        "measurements": rows,
        "sampling_overhead": overheads,
        "ratios": headline_ratios(rows),
    }


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    ratio = row["speedup_vs_baseline"]
    text = f"{row['median_s'] * 1e3:,.0f} ms" if row["median_s"] >= 0.1 else f"{row['median_s'] * 1e3:.2f} ms"
    return f"{text} ({ratio:.2f}x)" if ratio else text


def to_markdown(result: dict[str, Any]) -> str:
    """A Markdown table of the results: one row per (patches, batch, variant), one column per stage."""
    cuda = result["device"] == "cuda"
    lines = [
        (f"VTAMIQ `{result['preset']}` ({result['num_params'] / 1e6:.1f}M parameters, random weights), "
        f"{result['image_size'][0]}x{result['image_size'][1]} pairs, on {result['device_name']} "
        f"({result['num_threads']} threads), torch {result['torch_version']}, {result['date'][:10]}. "
        f"Median of {result['iters']} runs per cell; (Nx) = speed-up over `{result['baseline']}` (materialised "
        f"softmax attention, float32) at the same batch and patch count: its model forward for the forward, "
        f"score() and files columns, its loss for the loss column. `default` is score() with its defaults "
        f"(precision=\"auto\": {'bf16' if result.get('default_bf16') else 'fp32'} here)."),
        "",
    ]
    header = ["patches", "batch", "variant", "forward", "score()", "files", "loss fwd+bwd", "pairs/s (score)",
              "sampling overhead"]
    if cuda:
        header += ["forward TFLOP/s (% peak)", "MiB/pair (score)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = result["measurements"]
    index = {(r["num_patches"], r["batch_size"], r["variant"], r["stage"]): r for r in rows}
    overhead = {(o["num_patches"], o["batch_size"], o["variant"]): o["overhead"] for o in result["sampling_overhead"]}
    keys = list(dict.fromkeys((r["num_patches"], r["batch_size"], r["variant"]) for r in rows))
    for patches, batch, variant in keys:
        cells = [index.get((patches, batch, variant, stage)) for stage in STAGES]
        scored = cells[1]
        extra = overhead.get((patches, batch, variant))
        line = [str(patches), str(batch), f"`{variant}`", *(_cell(c) for c in cells),
                f"{scored['pairs_per_s']:.2f}" if scored else "-", f"{extra:+.0%}" if extra is not None else "-"]
        if cuda:
            forward = cells[0]
            line.append(f"{forward['tflops']:.0f} ({forward['peak_fraction']:.0%})" if forward else "-")
            line.append(f"{scored['peak_mem_per_pair_mib']:.0f}" if scored else "-")
        lines.append("| " + " | ".join(line) + " |")
    flops = ", ".join(f"N={n}: {f / 1e9:.1f} GFLOP" if f >= 1e8 else f"N={n}: {f / 1e6:.1f} MFLOP"
                      for n, f in result["flops_per_pair"].items())
    lines += ["", f"FLOPs per pair: {flops}."]
    for ratio in result.get("ratios", []):
        lines.append(f"- N={ratio['num_patches']}, batch {ratio['batch_size']}: {ratio['name']}: "
                     f"{ratio['speedup']:.2f}x by medians, {ratio['speedup_best']:.2f}x by fastest runs "
                     f"({ratio['faster']} against {ratio['slower']}, same run, interleaved)")
    if result["compile_s"]:
        lines.append("First compiled call: " + ", ".join(f"{k} {v:.0f} s" for k, v in result["compile_s"].items()))
    if not cuda:
        peak = max((r.get("peak_rss_mib", 0.0) for r in rows), default=0.0)
        lines.append(f"Peak resident memory of the process: {peak:,.0f} MiB.")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; ``--quick`` fills in small defaults for the options not given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu or cuda[:i] (default: cuda when available)")
    parser.add_argument("--preset", default="paper2021", help="model preset with random weights (default paper2021)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="pairs per call (default: CPU 1 2, CUDA 1 8 32 64)")
    parser.add_argument("--patches", type=int, nargs="+", default=None,
                        help="patches per image (default 1024 256; quick: 64 16)")
    parser.add_argument("--iters", type=int, default=None, help="timed runs per cell (default: CPU 3, CUDA 20)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: CPU 1, CUDA 5)")
    parser.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("W", "H"),
                        help="image width and height (default 512 384; quick: 128 96)")
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"],
                        help="fast-path precisions (default fp32 bf16)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="what to time")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile variants")
    parser.add_argument("--peak-tflops", type=float, default=790.0,
                        help="the device's dense bf16 peak for the fraction-of-peak column (default 790, H100)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for this run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and images")
    parser.add_argument("--quick", action="store_true",
                        help="a fast smoke run: batch 1, 64 and 16 patches, 128x96 images, 1 run after 1 warm-up")
    parser.add_argument("--no-default", action="store_true", help="do not time score() with its defaults")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the options, print the resolved settings as JSON and exit without timing")
    parser.add_argument("--out", "--json", dest="out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the Markdown table here")
    args = parser.parse_args(argv)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = torch.device(args.device).type == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error(f"expected a usable CUDA device for --device {args.device}, got torch.cuda.is_available() False")
    defaults = {
        "batch_sizes": [1] if args.quick else ([1, 8, 32, 64] if cuda else [1, 2]),
        "patches": [64, 16] if args.quick else [1024, 256],
        "iters": 1 if args.quick else (20 if cuda else 3),
        "warmup": 1 if args.quick else (5 if cuda else 1),
        "image_size": [128, 96] if args.quick else [512, 384],
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("batch_sizes", "patches"):
        if min(getattr(args, name)) < 1:
            parser.error(f"--{name.replace('_', '-')} expected ints >= 1, got {getattr(args, name)}")
    if args.iters < 1 or args.warmup < 0:
        parser.error(f"expected --iters >= 1 and --warmup >= 0, got {args.iters} and {args.warmup}")
    if not math.isfinite(args.peak_tflops) or args.peak_tflops <= 0:
        parser.error(f"--peak-tflops expected a positive number, got {args.peak_tflops}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    args = parse_args(argv)
    if args.dry_run:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        settings["variants"] = [v.name for v in variants(args)]
        print(json.dumps(settings, indent=2), flush=True)
        return 0
    command = shlex.join([sys.argv[0] if argv is None else "bench_score.py", *(sys.argv[1:] if argv is None else argv)])
    print(f"bench_score: {args.preset} on {args.device}, batches {args.batch_sizes}, patches {args.patches}, "
          f"{args.iters} runs after {args.warmup} warm-up", flush=True)
    result = run(args, command)
    report(result, to_markdown(result), json_path=args.out, markdown_path=args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
