"""Peak memory of ``score()`` on large images, each case in a fresh process (its peak resident set size).

Cases, every one scored from PNG files with ``score(refs, dists)`` and its defaults (the bundled model, or
``--model``; lazy decoding batch by batch, 8-bit images, strip-wise CAPS difference maps):

* ``pairs-1`` and ``pairs-4``: 1 and 4 pairs of ``--size`` (default 6000x4000) photographs. The ratio of their peak
  RSS shows whether memory grows with the length of the list (target: at most 1.5x, issue 12).
* ``big``: one pair of ``--big-size`` (default 12000x12000) images. Its *bytes per pixel* are the growth of the peak
  RSS during ``score()`` (peak after minus the high-water mark before, once torch and the model are loaded) over the
  pixels of one image (target: about 20 or less, issue 13 item 9).

Each case runs in a new ``python`` process (``--child``), which loads the model, notes its high-water mark (``VmHWM``
on Linux), scores, and reports the new high-water mark: nothing the parent allocated (the synthetic images, earlier
cases) is counted. The images are smooth random fields with noise (references) and noisier
copies (distorted), written as PNG (zlib level 1) in a temporary folder and deleted afterwards.

    python benchmarks/bench_memory.py --json memory.json
    python benchmarks/bench_memory.py --quick            # 600x400 and 1200x1200: a smoke run of the script
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from _report import report

SCHEMA_VERSION = 1
TARGET_PAIRS_RATIO = 1.5
TARGET_BYTES_PER_PIXEL = 20.0


def _status_mib(field: str) -> float | None:
    """A ``/proc/self/status`` memory field (``VmHWM``, ``VmRSS``) in MiB; None where there is no procfs."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**10
    except (OSError, ValueError):
        pass
    return None


def _hwm_mib() -> float:
    """This process's peak resident set size so far, in MiB.

    Linux: ``VmHWM``, the high-water mark of this process's own address space. Not ``ru_maxrss``: Linux folds the
    high-water mark of the address space that ``exec`` replaces into it, and ``subprocess`` starts children with
    ``vfork``, so a child's ``ru_maxrss`` starts at the *parent's* peak (here: the parent that wrote the images).
    Elsewhere ``ru_maxrss``.
    """
    hwm = _status_mib("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _rss_mib() -> float | None:
    """This process's current resident set size in MiB (Linux), else None."""
    return _status_mib("VmRSS")


def write_pair(folder: Path, index: int, width: int, height: int, seed: int) -> tuple[str, str]:
    """A smooth random 8-bit RGB reference and a noisy copy of it, as PNG files; returns their paths.

    Built strip by strip, so the parent never holds more than the two uint8 images.
    """
    rng = np.random.default_rng(seed + index)
    coarse = rng.integers(0, 256, (max(2, height // 64), max(2, width // 64), 3), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR))  # (H, W, 3)
    dist = np.empty_like(ref)
    rows = max(1, 2**22 // (width * 3))
    for top in range(0, height, rows):
        strip = ref[top:top + rows].astype(np.int16)
        dist[top:top + rows] = np.clip(strip + rng.integers(-12, 13, strip.shape, dtype=np.int16), 0, 255)
    paths = (folder / f"ref_{index:02d}.png", folder / f"dist_{index:02d}.png")
    for array, path in zip((ref, dist), paths, strict=True):
        Image.fromarray(array).save(path, compress_level=1)
    return str(paths[0]), str(paths[1])


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one case in this (fresh) process: load the model, then score; returns the memory figures."""
    import torch

    from vtamiq_metric import api, score

    start = time.perf_counter()
    model = api.resolve_model(spec["model"], torch.device("cpu"))
    loaded = {"hwm_before_mib": _hwm_mib(), "rss_before_mib": _rss_mib()}
    scores = score(spec["refs"], spec["dists"], model=model, max_pixels=spec["max_pixels"])
    return {**loaded, "peak_rss_mib": _hwm_mib(), "scores": [float(x) for x in scores],
            "seconds": time.perf_counter() - start, "torch_version": torch.__version__,
            "num_threads": torch.get_num_threads()}


def run_case(name: str, refs: list[str], dists: list[str], width: int, height: int,
             args: argparse.Namespace) -> dict[str, Any]:
    """One case in a new Python process; returns its figures."""
    spec = {"refs": refs, "dists": dists, "model": args.model, "max_pixels": args.max_pixels}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                          capture_output=True, text=True, timeout=args.timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {name} failed with exit status {done.returncode}:\n{done.stderr[-4000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    pixels = width * height
    growth = figures["peak_rss_mib"] - figures["hwm_before_mib"]
    row = {"case": name, "pairs": len(refs), "width": width, "height": height, "pixels_per_image": pixels,
           **figures, "growth_mib": growth, "bytes_per_pixel": growth * 2**20 / pixels}
    print(f"{name:8s} {len(refs)} pair(s) of {width}x{height}: peak RSS {row['peak_rss_mib']:8,.0f} MiB "
          f"(before scoring {row['hwm_before_mib']:6,.0f} MiB, growth {growth:7,.0f} MiB, "
          f"{row['bytes_per_pixel']:5.1f} B/pixel), {row['seconds']:5.1f} s", flush=True)
    return row


def summarise(rows: list[dict[str, Any]], few: int = 1, many: int = 4) -> dict[str, Any]:
    """The headline figures from the case rows (missing cases give None)."""
    by_case = {r["case"]: r for r in rows}
    one, four, big = by_case.get(f"pairs-{few}"), by_case.get(f"pairs-{many}"), by_case.get("big")
    summary: dict[str, Any] = {"pairs_compared": [few, many], "pairs_peak_ratio": None, "pairs_growth_ratio": None,
                               "big_bytes_per_pixel": None,
                               "target_pairs_peak_ratio": TARGET_PAIRS_RATIO,
                               "target_big_bytes_per_pixel": TARGET_BYTES_PER_PIXEL}
    if one and four:
        summary["pairs_peak_ratio"] = four["peak_rss_mib"] / one["peak_rss_mib"]
        summary["pairs_growth_ratio"] = four["growth_mib"] / one["growth_mib"] if one["growth_mib"] > 0 else None
        summary["pairs_ok"] = summary["pairs_peak_ratio"] <= TARGET_PAIRS_RATIO
    if big:
        summary["big_bytes_per_pixel"] = big["bytes_per_pixel"]
        summary["big_ok"] = big["bytes_per_pixel"] <= TARGET_BYTES_PER_PIXEL
    return summary


def to_markdown(result: dict[str, Any]) -> str:
    """A Markdown table of the cases and the headline figures."""
    lines = ["| case | pairs | size | peak RSS | before score() | growth | bytes/pixel (growth / one image) |",
             "|---|---|---|---|---|---|---|"]
    for r in result["cases"]:
        lines.append(f"| {r['case']} | {r['pairs']} | {r['width']}x{r['height']} | {r['peak_rss_mib']:,.0f} MiB | "
                     f"{r['hwm_before_mib']:,.0f} MiB | {r['growth_mib']:,.0f} MiB | {r['bytes_per_pixel']:.1f} |")
    s = result["summary"]
    few, many = s["pairs_compared"]
    lines.append("")
    if s["pairs_peak_ratio"] is not None:
        growth = f"{s['pairs_growth_ratio']:.2f}x" if s["pairs_growth_ratio"] is not None else "-"
        lines.append(f"Peak RSS, {many} pairs / {few}: {s['pairs_peak_ratio']:.2f}x (target <= {TARGET_PAIRS_RATIO}x; "
                     f"growth during score(): {growth}).")
    if s["big_bytes_per_pixel"] is not None:
        lines.append(f"One large pair: {s['big_bytes_per_pixel']:.1f} bytes per pixel of one image "
                     f"(target <= about {TARGET_BYTES_PER_PIXEL:.0f}).")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("W", "H"),
                        help="size of the pairs-1/pairs-4 images (default 6000 4000; quick: 600 400)")
    parser.add_argument("--pairs", type=int, nargs=2, default=[1, 4], metavar=("FEW", "MANY"),
                        help="the two list lengths compared (default 1 4)")
    parser.add_argument("--big-size", type=int, default=None,
                        help="side of the square 'big' pair (default 12000; quick: 1200; 0 skips it)")
    parser.add_argument("--model", default=None, help="model name or path (default: the bundled default model)")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="score()'s max_pixels (default: lifted, so any --big-size is accepted)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per case (default 900)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic images")
    parser.add_argument("--quick", action="store_true", help="small images: a smoke run of the script")
    parser.add_argument("--json", "--out", dest="out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the Markdown table here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.size is None:
        args.size = [600, 400] if args.quick else [6000, 4000]
    if args.big_size is None:
        args.big_size = 1200 if args.quick else 12000
    if min(args.size) < 32 or args.big_size < 0 or min(args.pairs) < 1:
        parser.error(f"expected --size >= 32, --big-size >= 0 and --pairs >= 1, got {args.size}, {args.big_size} "
                     f"and {args.pairs}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        return 0
    command = shlex.join(["bench_memory.py", *(sys.argv[1:] if argv is None else argv)])
    width, height = args.size
    few, many = args.pairs
    rows = []
    with tempfile.TemporaryDirectory(prefix="vtamiq-bench-memory-") as folder:
        pairs = [write_pair(Path(folder), i, width, height, args.seed) for i in range(many)]
        refs, dists = [p[0] for p in pairs], [p[1] for p in pairs]
        rows.append(run_case(f"pairs-{few}", refs[:few], dists[:few], width, height, args))
        rows.append(run_case(f"pairs-{many}", refs, dists, width, height, args))
        for path in refs + dists:
            Path(path).unlink()
        if args.big_size:
            ref, dist = write_pair(Path(folder), 99, args.big_size, args.big_size, args.seed)
            rows.append(run_case("big", [ref], [dist], args.big_size, args.big_size, args))
    result = {
        "schema": SCHEMA_VERSION, "benchmark": "bench_memory",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
        "python_version": platform.python_version(), "model": args.model or "default",
        "max_pixels": args.max_pixels, "cases": rows, "summary": summarise(rows, few, many),
    }
    report(result, to_markdown(result), json_path=args.out, markdown_path=args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
