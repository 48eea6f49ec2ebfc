"""``benchmarks/gpu_check.sh`` without a GPU: its syntax, its steps and their time limits, the flags it passes to the
benchmark scripts, its JSON assembly on fixture pieces, its refusal without CUDA, and the 1-process torchrun
training step (on CPU).

The scripts run as subprocesses, never imported. The three checks that start neither torch nor a model (``bash -n``,
``--dry-run``, the assembly) take well under a second and stay in the fast layer; the others are ``slow``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

_ROOT = Path(__file__).resolve().parents[2]
_SCRIPT = _ROOT / "benchmarks" / "gpu_check.sh"
_HELPER = _ROOT / "benchmarks" / "gpu_check.py"
_STEPS = ["cuda_tests", "positions", "bench_score_eager", "bench_score_compile", "bench_train", "torchrun_train",
          "nccl"]

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _env(**extra: str) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(_ROOT) + (os.pathsep + path if path else ""), **extra}


def _dry_run() -> dict[str, tuple[int, str]]:
    done = subprocess.run(["bash", str(_SCRIPT), "--dry-run"], capture_output=True, text=True, env=_env(),
                          timeout=60, check=True)
    steps = {}
    for line in done.stdout.splitlines():
        name, limit, command = line.split("\t")
        steps[name] = (int(limit), command)
    return steps


@needs_bash
def test_script_is_valid_bash():
    done = subprocess.run(["bash", "-n", str(_SCRIPT)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


@needs_bash
def test_dry_run_lists_every_step_within_six_minutes():
    steps = _dry_run()
    assert list(steps) == _STEPS
    assert sum(limit for limit, _ in steps.values()) <= 345  # plus start-up and assembly: within 6 minutes
    commands = {name: command for name, (_, command) in steps.items()}
    assert "-m cuda" in commands["cuda_tests"] and "--junitxml" in commands["cuda_tests"]
    for name in ("bench_score_eager", "bench_score_compile"):
        assert "--device cuda" in commands[name] and "--batch-sizes 1 8 32 64" in commands[name]
        assert "--patches 1024" in commands[name] and "--preset paper2021" in commands[name]
    assert "--compile" in commands["bench_score_compile"] and "--compile" not in commands["bench_score_eager"]
    assert "--preset paper2021" in commands["bench_train"]
    assert "torch.distributed.run" in commands["torchrun_train"] and "--nproc_per_node 1" in commands["nccl"]


@needs_bash
@pytest.mark.slow  # three fresh interpreters with torch
def test_benchmark_flags_of_the_script_parse(tmp_path):
    steps = _dry_run()
    for name in ("bench_score_eager", "bench_score_compile", "bench_train"):
        command = steps[name][1].replace("--device cuda", "--device cpu") + " --dry-run"
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=_ROOT,
                              env=_env(WORK=str(tmp_path)), timeout=120, check=False)
        assert done.returncode == 0, (name, done.stderr)
        settings = json.loads(done.stdout)
        assert settings["preset"] == "paper2021", name
        if name.startswith("bench_score"):
            assert settings["batch_sizes"] == [1, 8, 32, 64] and settings["patches"] == [1024]
            assert settings["compile"] == (name == "bench_score_compile")
            assert settings["out"] == str(tmp_path / f"{name}.json")
            assert ("default" in settings["variants"]) == (name == "bench_score_eager")
        else:
            assert settings["batch_size"] == 20 and settings["out"] == str(tmp_path / "bench_train.json")
    assert not list(tmp_path.iterdir())  # a dry run writes nothing


@needs_bash
@pytest.mark.slow  # a fresh interpreter with torch
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_without_cuda_the_script_stops_at_once_and_says_why(tmp_path):
    done = subprocess.run(["bash", str(_SCRIPT), str(tmp_path / "result.json")], capture_output=True, text=True,
                          env=_env(), timeout=120, check=False)
    assert done.returncode == 2
    assert "no CUDA device" in done.stderr and "torch.cuda.is_available() False" in done.stderr
    assert not list(tmp_path.iterdir())


def _row(variant: str, stage: str, batch: int, pairs_per_s: float) -> dict:
    return {"variant": variant, "stage": stage, "batch_size": batch, "num_patches": 1024, "pairs_per_s": pairs_per_s,
            "median_s": batch / pairs_per_s, "tflops": 215e9 * pairs_per_s / 1e12, "peak_fraction": 0.3,
            "peak_mem_per_pair_mib": 80.0}


def _write_pieces(work: Path) -> None:
    work.mkdir()
    (work / "steps.tsv").write_text("".join(f"{name}\t{rc}\t{seconds}\t{limit}\n" for name, rc, seconds, limit in [
        ("cuda_tests", 0, 41.5, 60), ("positions", 0, 9.1, 20), ("bench_score_eager", 0, 50.2, 60),
        ("bench_score_compile", 124, 125.0, 125), ("bench_train", 0, 21.0, 30), ("torchrun_train", 0, 18.3, 30),
        ("nccl", 0, 12.7, 20)]))
    (work / "bench_score_compile.log").write_text("compiling...\n" * 10 + "the last line\n")
    (work / "cuda_tests.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="3">'
        '<testcase classname="tests.test_sampling" name="test_cuda_positions_equal_cpu_positions" time="1.5"/>'
        '<testcase classname="tests.test_api" name="test_cuda_scores_agree" time="0.5"/>'
        '<testcase classname="tests.test_maps" name="test_cuda_map" time="0.1"><skipped message="x"/></testcase>'
        '</testsuite></testsuites>')
    (work / "positions.json").write_text(json.dumps({
        "positions_compared": 2400, "position_mismatches": 0, "cpu_cuda_max_abs_score_diff_fp32": 3e-6,
        "cuda_repeat_bitwise_equal": True, "device_name": "NVIDIA H200"}))
    (work / "bench_score_eager.json").write_text(json.dumps({"device_name": "NVIDIA H200", "measurements": [
        _row("naive-fp32", "forward", 64, 3000.0),  # the baseline never counts towards the targets
        _row("sdpa-bf16", "forward", 1, 300.0), _row("sdpa-bf16", "forward", 64, 1900.0),
        _row("sdpa-bf16", "score", 64, 1400.0), _row("default", "score", 32, 1450.0)]}))
    (work / "bench_train.json").write_text(json.dumps({"pairs_per_second": {"fp32": 120.0, "bf16": 400.0}}))
    (work / "torchrun_train.json").write_text(json.dumps({"returncode": 0, "epochs_logged": 1, "last_metrics": {},
                                                          "files": ["metrics.jsonl"]}))
    (work / "nccl.json").write_text(json.dumps({"backend": "nccl", "world_size": 1, "all_reduce_ok": True,
                                                "all_reduce_4mib_s": 1e-4, "nccl_version": "2.27.3"}))


def test_assembly_writes_one_json_with_every_figure_and_the_targets(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out" / "gpu_check.json"
    _write_pieces(work)
    done = subprocess.run([sys.executable, str(_HELPER), "assemble", "--work", str(work), "--out", str(out)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert set(result) >= {"schema", "benchmark", "date", "host", "device_name", "total_seconds", "steps", "targets",
                           "checks", "ok", "cuda_tests", "positions", "bench_score_eager", "bench_score_compile",
                           "bench_train", "torchrun_train", "nccl"}
    assert result["benchmark"] == "gpu_check" and result["device_name"] == "NVIDIA H200"
    assert list(result["steps"]) == _STEPS
    assert result["total_seconds"] == pytest.approx(277.8)
    compile_step = result["steps"]["bench_score_compile"]
    assert compile_step["timed_out"] and compile_step["log_tail"].endswith("the last line\n")
    assert "log_tail" not in result["steps"]["positions"]
    assert result["bench_score_compile"] is None  # the timed-out step left no piece
    assert result["cuda_tests"]["passed"] == 2 and result["cuda_tests"]["skipped"] == 1
    assert result["cuda_tests"]["tests"][0]["test"] == "tests.test_sampling::test_cuda_positions_equal_cpu_positions"
    forward, scored = result["targets"]
    assert forward["target_pairs_per_s"] == 1800 and scored["target_pairs_per_s"] == 1500
    assert forward["measured_pairs_per_s"] == 1900 and forward["ok"]
    assert forward["best_cell"]["variant"] == "sdpa-bf16" and forward["best_cell"]["batch_size"] == 64
    assert scored["measured_pairs_per_s"] == 1450 and not scored["ok"]
    assert result["checks"] == {"all_steps_exit_0": False, "cuda_tests_pass": True, "positions_equal": True,
                                "torchrun_train_ok": True, "nccl_all_reduce_ok": True, "targets_met": False}
    assert result["ok"] is False
    assert "1,900 pairs/s (sdpa-bf16, batch 64), target >= 1,800: met" in done.stdout
    assert "1,450 pairs/s (default, batch 32), target >= 1,500: NOT met" in done.stdout


def test_assembly_of_an_empty_folder_says_nothing_ran(tmp_path):
    (tmp_path / "work").mkdir()
    out = tmp_path / "gpu_check.json"
    subprocess.run([sys.executable, str(_HELPER), "assemble", "--work", str(tmp_path / "work"), "--out", str(out)],
                   capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(out.read_text())
    assert result["steps"] == {} and result["ok"] is False and not any(result["checks"].values())
    assert all(t["measured_pairs_per_s"] is None for t in result["targets"])


@needs_bash
@pytest.mark.slow  # torchrun, one process, on CPU
def test_torchrun_training_step_runs_on_cpu(tmp_path):
    command = _dry_run()["torchrun_train"][1].replace("--device cuda", "--device cpu")
    env = _env(WORK=str(tmp_path), OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=_ROOT, env=env, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "torchrun_train.json").read_text())
    assert summary["returncode"] == 0 and summary["epochs_logged"] == 1 and "metrics.jsonl" in summary["files"]
    assert shlex.split(command)[0] == sys.executable
