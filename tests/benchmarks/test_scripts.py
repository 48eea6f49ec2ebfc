"""Smoke runs of the benchmark scripts (``benchmarks/bench_score.py``, ``bench_memory.py``, ``bench_cli.py``) in
subprocesses, on CPU with tiny models: their flags, their JSON and Markdown output, and the ratios they report. Times
are never asserted (README, Benchmarks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vtamiq_metric import VTAMIQ
from vtamiq_metric._precision import uses_bf16

_BENCH_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_score.py"
_MEMORY_PATH = _BENCH_PATH.with_name("bench_memory.py")
_CLI_BENCH_PATH = _BENCH_PATH.with_name("bench_cli.py")


@pytest.mark.slow  # runs the script in a subprocess
def test_benchmark_script_quick_run_writes_json_and_markdown(tmp_path):
    out, table = tmp_path / "results.json", tmp_path / "table.md"
    argv = ["--quick", "--preset", "tiny", "--device", "cpu", "--patches", "16", "--image-size", "64", "48",
            "--out", str(out), "--markdown", str(table)]
    done = subprocess.run([sys.executable, str(_BENCH_PATH), *argv], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    for key in ("date", "command", "device", "device_name", "torch_version", "preset", "num_params", "baseline",
                "flops_per_pair", "measurements", "sampling_overhead", "num_threads"):
        assert key in result, key
    assert result["device"] == "cpu" and result["preset"] == "tiny" and "--quick" in result["command"]
    cells = {(m["variant"], m["stage"]) for m in result["measurements"]}
    stages = ("forward", "score", "files", "loss")
    fast = {(variant, stage) for variant in ("sdpa-fp32", "sdpa-bf16") for stage in stages}
    slow = {("naive-fp32", "forward"), ("naive-fp32", "loss"), ("default", "score"), ("default", "files")}
    assert cells == slow | fast
    for m in result["measurements"]:
        assert m["median_s"] > 0 and m["pairs_per_s"] > 0 and m["peak_rss_mib"] > 0
        assert m["batch_size"] == 1 and m["num_patches"] == 16 and m["speedup_vs_baseline"] > 0
        assert len(m["times_s"]) == 1 and m["min_s"] == min(m["times_s"])
        if m["variant"] == "naive-fp32":
            assert m["speedup_vs_baseline"] == 1.0
    assert {o["variant"] for o in result["sampling_overhead"]} == {"sdpa-fp32", "sdpa-bf16"}
    assert result["complete"] is True and result["interleaved"] is True
    assert result["default_bf16"] == uses_bf16(torch.device("cpu"), "auto")
    assert [r["name"] for r in result["ratios"]] == ["default score() vs naive-fp32 forward", "bf16 vs fp32 forward",
                                                     "bf16 vs fp32 score()"]
    medians = {(m["variant"], m["stage"]): m["median_s"] for m in result["measurements"]}
    naive_over_default = medians["naive-fp32", "forward"] / medians["default", "score"]
    assert result["ratios"][0]["speedup"] == pytest.approx(naive_over_default)
    markdown = table.read_text()
    assert "| patches | batch | variant |" in markdown and "`sdpa-bf16`" in markdown and "`default`" in markdown
    assert "default score() vs naive-fp32 forward" in markdown
    assert "naive-fp32" in done.stdout


@pytest.mark.slow  # runs the script in a subprocess
def test_benchmark_script_dry_run_lists_the_variants():
    # --dry-run lists the variants without timing anything; --no-default drops score() with its defaults.
    for extra, expected in (([], ["naive-fp32", "sdpa-fp32", "sdpa-bf16", "default"]),
                            (["--no-default", "--compile", "--precisions", "bf16"],
                             ["naive-fp32", "sdpa-bf16", "sdpa-bf16-compile"])):
        done = subprocess.run([sys.executable, str(_BENCH_PATH), "--device", "cpu", "--dry-run", *extra],
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["variants"] == expected


@pytest.mark.slow  # one fresh interpreter per case
def test_memory_benchmark_runs_each_case_in_a_fresh_process_and_reports_ratios(tmp_path):
    out = tmp_path / "memory.json"
    argv = ["--size", "96", "64", "--big-size", "128", "--json", str(out)]
    done = subprocess.run([sys.executable, str(_MEMORY_PATH), *argv], capture_output=True, text=True, timeout=300,
                          check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["benchmark"] == "bench_memory" and result["max_pixels"] is None
    assert [c["case"] for c in result["cases"]] == ["pairs-1", "pairs-4", "big"]
    assert [c["pairs"] for c in result["cases"]] == [1, 4, 1] and result["cases"][2]["pixels_per_image"] == 128 * 128
    for case in result["cases"]:
        assert case["peak_rss_mib"] >= case["hwm_before_mib"] > 0 and len(case["scores"]) == case["pairs"]
        assert case["bytes_per_pixel"] == pytest.approx(case["growth_mib"] * 2**20 / case["pixels_per_image"])
    summary = result["summary"]
    assert summary["pairs_peak_ratio"] == pytest.approx(result["cases"][1]["peak_rss_mib"] /
                                                        result["cases"][0]["peak_rss_mib"])
    assert summary["target_pairs_peak_ratio"] == 1.5 and summary["target_big_bytes_per_pixel"] == 20
    assert "Peak RSS, 4 pairs / 1:" in done.stdout and "bytes per pixel of one image" in done.stdout
    assert not [p for p in tmp_path.iterdir() if p != out]  # the images went to a deleted temporary folder


@pytest.mark.slow  # runs the script in a subprocess
def test_cli_benchmark_times_the_old_per_pair_command_against_the_batched_one(tmp_path):
    torch.manual_seed(0)
    weights = VTAMIQ("tiny").eval().save_pretrained(tmp_path / "weights")
    out = tmp_path / "cli.json"
    argv = ["--quick", "--model", str(weights), "--patches", "16", "--precision", "fp32", "--json", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(_BENCH_PATH.parents[1]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(_CLI_BENCH_PATH), *argv], capture_output=True, text=True, timeout=300,
                          check=False, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["benchmark"] == "bench_cli" and result["pairs"] == 8 and result["interleaved"] is True
    rows = {row["variant"]: row for row in result["measurements"]}
    assert list(rows) == ["old-per-pair", "cli-auto", "cli-2"]
    assert rows["cli-auto"]["batch_size"] == result["auto_batch_size"] and rows["cli-2"]["batch_size"] == 2
    assert rows["old-per-pair"]["speedup_vs_old"] == 1.0
    for row in rows.values():
        assert row["pairs_per_s"] == pytest.approx(8 / row["median_s"]) and row["max_abs_diff"] <= 1e-5
    assert "x old" in done.stdout and not [p for p in tmp_path.iterdir() if p.name not in ("weights", "cli.json")]
