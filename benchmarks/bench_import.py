"""Start-up cost: ``import vtamiq_metric``, its public API and ``vtamiq --help``, against ``import torch`` alone.

Every case runs in a **fresh** ``python`` process (nothing cached in the interpreter; the operating system's file
cache is warmed by one untimed run of each case first), and the rounds are **interleaved**: every round runs each
case once, in reverse order on odd rounds, so that a busy machine slows them alike. The time is the wall time of the
whole process, as a user waits for it (interpreter start-up included):

* ``python``: ``python -c pass``, the interpreter alone;
* ``torch``: ``import torch``, the **baseline**;
* ``package``: ``import vtamiq_metric`` (public names are imported on first use, so this imports no torch);
* ``api``: ``import vtamiq_metric`` and every public name (``score``, ``VTAMIQLoss``, ``VTAMIQ``, ``load_model``,
  ...), i.e. what a user's script imports before it scores (target: at most 1.3 x ``torch``, issue 21 item 7);
* ``help``: ``vtamiq --help``, as the console script runs it (``vtamiq_metric.cli.main``; target: under 1 s);
* ``model`` (with ``--model-load``): the public API and the bundled default model built and loaded, the first
  ``score()`` call's fixed cost (timm is imported here, when a network is built).

It prints medians, the fastest round, the ratio to ``torch`` (the median over rounds of the case's time over
``import torch``'s time in the same round, which a machine whose load changes disturbs least; and the ratio of the
fastest rounds) and which heavy modules each case imported (``torch``, ``timm``, ``torchvision``, ``torch._dynamo``),
and writes them as JSON with ``--json``::

    python benchmarks/bench_import.py --rounds 7 --json import.json
    python benchmarks/bench_import.py --rounds 3 --model-load

``tests/test_import_time.py`` runs it (slow layer) and fails when ``api`` exceeds 1.3 x ``torch`` or ``help`` reaches
half of ``torch``: ratios measured in one run, never absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
TARGET_API_RATIO = 1.3  # import vtamiq_metric + its public names, against import torch
TARGET_HELP_SECONDS = 1.0  # vtamiq --help
HEAVY_MODULES = ("torch", "timm", "torchvision", "torch._dynamo", "vtamiq_metric.training")

_PUBLIC = ("import vtamiq_metric\n"
           "for _name in vtamiq_metric.__all__:\n"
           "    getattr(vtamiq_metric, _name)\n")
_HELP = ("import sys\n"
         "sys.argv = ['vtamiq', '--help']\n"
         "from vtamiq_metric.cli import main\n"  # what the `vtamiq` console script runs
         "import contextlib, io\n"
         "with contextlib.redirect_stdout(io.StringIO()):\n"
         "    try:\n"
         "        main()\n"
         "    except SystemExit as exit:\n"
         "        assert exit.code in (0, None), exit.code\n")
_MODEL = _PUBLIC + "from vtamiq_metric.hub import DEFAULT_MODEL\nvtamiq_metric.load_model(DEFAULT_MODEL)\n"

CASES: dict[str, str] = {
    "python": "pass\n",
    "torch": "import torch\n",
    "package": "import vtamiq_metric\n",
    "api": _PUBLIC,
    "help": _HELP,
}


def _environment() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    root = str(Path(__file__).resolve().parents[1])  # this checkout, ahead of any installed copy
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def run_case(code: str, env: dict[str, str]) -> float:
    """Wall time in seconds of one fresh ``python -c code`` process; raises if it fails."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"case failed (exit status {done.returncode}):\n{code}\n{done.stderr}")
    return elapsed


def imported_modules(code: str, env: dict[str, str]) -> list[str]:
    """Which of :data:`HEAVY_MODULES` a fresh process running ``code`` has imported at its end."""
    probe = code + f"import sys\nprint(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"'))


def measure(cases: dict[str, str], rounds: int) -> dict[str, Any]:
    """Time every case ``rounds`` times, interleaved, after one untimed warm-up run of each."""
    env = _environment()
    names = list(cases)
    for name in names:
        run_case(cases[name], env)
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            times[name].append(run_case(cases[name], env))
    base_best = min(times["torch"])
    result: dict[str, Any] = {}
    for name in names:
        round_ratios = [t / b for t, b in zip(times[name], times["torch"], strict=True)]
        result[name] = {"median_s": statistics.median(times[name]), "best_s": min(times[name]),
                        "rounds_s": times[name], "ratio_to_torch": statistics.median(round_ratios),
                        "round_ratios": round_ratios, "best_ratio_to_torch": min(times[name]) / base_best,
                        "imports": imported_modules(cases[name], env)}
    return result


def _load() -> list[float]:
    try:
        return list(os.getloadavg())
    except OSError:
        return []


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per case (default 5)")
    parser.add_argument("--model-load", action="store_true", help="add the 'model' case (load the default model)")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.rounds < 1:
        raise SystemExit(f"--rounds must be >= 1, got {args.rounds}")
    cases = dict(CASES)
    if args.model_load:
        cases["model"] = _MODEL
    load_before = _load()
    cases_result = measure(cases, args.rounds)
    result = {
        "schema_version": SCHEMA_VERSION,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": _load(), "rounds": args.rounds,
        "cases": cases_result,
        "targets": {"api_ratio_to_torch": TARGET_API_RATIO, "help_seconds": TARGET_HELP_SECONDS},
        "met": {"api_ratio_to_torch": cases_result["api"]["ratio_to_torch"] <= TARGET_API_RATIO,
                "help_seconds": cases_result["help"]["median_s"] < TARGET_HELP_SECONDS},
    }
    print(f"{'case':<8} {'median':>8} {'best':>8} {'x torch':>8} {'(best)':>7}  imports")
    for name, row in cases_result.items():
        print(f"{name:<8} {row['median_s']:>7.3f}s {row['best_s']:>7.3f}s {row['ratio_to_torch']:>7.2f}x "
              f"{row['best_ratio_to_torch']:>6.2f}x  {', '.join(row['imports']) or '-'}")
    api_ratio, help_s = cases_result["api"]["ratio_to_torch"], cases_result["help"]["median_s"]
    print(f"import vtamiq_metric + public API: {api_ratio:.2f}x import torch (target <= {TARGET_API_RATIO}x: "
          f"{'met' if result['met']['api_ratio_to_torch'] else 'NOT met'}); vtamiq --help: {help_s:.3f} s "
          f"(target < {TARGET_HELP_SECONDS:.0f} s: {'met' if result['met']['help_seconds'] else 'NOT met'})")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
