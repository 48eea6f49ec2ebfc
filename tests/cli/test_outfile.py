"""What protects a results file (``vtamiq_metric.cli.outfile``): the lock, the record of options, the input check.

The hostile-input table (``tests/test_hostile_inputs.py``) holds the probe's cases (issue 23 items 2-4); these tests
hold the mechanisms' finer points.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_png_pairs
from vtamiq_metric import cli
from vtamiq_metric.cli import outfile

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(tmp_path, tiny_model):
    root = write_png_pairs(tmp_path, 3, size=(32, 40))
    weights = tiny_model.save_pretrained(tmp_path / "weights")

    def score(*extra: str, model: Path = weights) -> int:
        return cli.main(["score", "--ref-dir", str(root / "refs"), "--dist-dir", str(root / "dists"), "--model",
                         str(model), "--patches", "8", "--device", "cpu", "--no-progress", *extra])

    return score


def test_the_lock_is_removed_when_the_run_ends_also_on_an_error(run, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    assert run("--output", str(out)) == 0
    assert not outfile.lock_path(out).exists() and outfile.meta_path(out).exists()
    assert run("--output", str(out), "--resume", "--seed", "9") == 2  # refused after the lock was taken
    assert "seed: 0 -> 9" in capsys.readouterr().err
    assert not outfile.lock_path(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("scores")) == [
        "scores.csv", "scores.csv.meta.json"]


def test_a_lock_file_left_by_a_dead_process_is_taken_over(run, tmp_path):
    out = tmp_path / "scores.csv"
    outfile.lock_path(out).write_text(json.dumps({"pid": 2**22 + 12345, "host": "gone"}))  # nobody holds it
    assert run("--output", str(out)) == 0
    assert not outfile.lock_path(out).exists()


def test_the_lock_names_its_holder_and_is_exclusive_between_open_files(tmp_path):
    out = tmp_path / "scores.json"
    with outfile.OutputLock(out) as held:
        assert json.loads(held.path.read_text())["pid"] == os.getpid()
        with pytest.raises(cli.CLIError, match=rf"scores.json is being written by another vtamiq run \(process "
                                               rf"{os.getpid()} on "):
            outfile.OutputLock(out).acquire()
    assert not outfile.lock_path(out).exists()
    with outfile.OutputLock(out):  # free again
        pass


@pytest.mark.slow
def test_a_lock_held_by_another_process_refuses_and_is_free_when_that_process_dies(run, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    code = ("import sys, time\nfrom pathlib import Path\nfrom vtamiq_metric.cli.outfile import OutputLock\n"
            "OutputLock(Path(sys.argv[1])).acquire()\nprint('locked', flush=True)\ntime.sleep(120)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert run("--output", str(out)) == 2
        assert f"being written by another vtamiq run (process {holder.pid} on " in capsys.readouterr().err
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait(timeout=60)
    assert outfile.lock_path(out).exists()  # the killed holder left its file, which nobody holds any more
    assert run("--output", str(out)) == 0
    assert out.exists() and not outfile.lock_path(out).exists()


def test_the_record_holds_what_determines_a_score(run, tmp_path):
    out = tmp_path / "scores.csv"
    assert run("--output", str(out), "--seed", "4", "--repeats", "2", "--precision", "fp32") == 0
    record = json.loads(outfile.meta_path(out).read_text())
    assert record["format"] == "vtamiq-score-options" and record["model"] == str(tmp_path / "weights")
    options = record["options"]
    assert set(options) == {"model_sha256", "num_patches", "num_repeats", "seed", "precision", "sampling",
                            "downsample_side"}
    assert (options["num_patches"], options["num_repeats"], options["seed"], options["precision"]) == (8, 2, 4, "fp32")
    assert options["sampling"]["diff_type"] in ("mse", "ssim") and len(options["model_sha256"]) == 64


def test_the_same_weights_elsewhere_resume_and_other_weights_do_not(run, tmp_path, capsys):
    import torch

    from vtamiq_metric import VTAMIQ

    out = tmp_path / "scores.json"
    assert run("--output", str(out)) == 0
    shutil.copytree(tmp_path / "weights", tmp_path / "copy")
    assert run("--output", str(out), "--resume", model=tmp_path / "copy") == 0  # the same sha256
    assert "3 of 3 pairs already scored" in capsys.readouterr().err
    torch.manual_seed(5)
    VTAMIQ("tiny").save_pretrained(tmp_path / "other")
    assert run("--output", str(out), "--resume", model=tmp_path / "other") == 2
    err = capsys.readouterr().err
    assert f"model: {str(tmp_path / 'copy')!r} (sha256 " in err and f"-> {str(tmp_path / 'other')!r}" in err


def test_merge_scores_refuses_shards_of_different_options_and_records_the_merge(run, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    assert run("--output", str(out), "--shard", "0/2") == 0
    assert run("--output", str(out), "--shard", "1/2", "--seed", "3") == 0
    assert cli.main(["merge-scores", str(out)]) == 2
    assert "scores.shard-0-of-2.csv -> scores.shard-1-of-2.csv: seed: 0 -> 3" in capsys.readouterr().err
    assert not out.exists()
    assert run("--output", str(out), "--shard", "1/2") == 0
    assert cli.main(["merge-scores", str(out)]) == 0
    merged = json.loads(outfile.meta_path(out).read_text())
    assert merged == json.loads(outfile.meta_path(tmp_path / "scores.shard-0-of-2.csv").read_text())
    assert not outfile.lock_path(out).exists()
    assert run("--output", str(out), "--resume") == 0  # the merged file resumes like a single run's
    assert "3 of 3 pairs already scored" in capsys.readouterr().err


def test_an_output_linked_to_the_pairs_file_is_refused(tmp_path, tiny_model, capsys):
    root = write_png_pairs(tmp_path, 1)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("ref,dist\nrefs/p00.png,dists/p00.png\n")
    os.link(pairs, tmp_path / "linked.csv")
    weights = tiny_model.save_pretrained(tmp_path / "weights")
    assert cli.main(["score", "--pairs", str(pairs), "--model", str(weights), "--output",
                     str(root / "linked.csv")]) == 2
    assert "linked.csv is one of the inputs" in capsys.readouterr().err
    assert pairs.read_text() == "ref,dist\nrefs/p00.png,dists/p00.png\n"


def test_a_completed_csv_is_not_rewritten_and_a_resumed_one_is(run, tmp_path, monkeypatch):
    # Issue 23 item 4: the rows appended in input order are the final file; a resume that scores pairs again must
    # rewrite it in order.
    from vtamiq_metric.cli import formats

    out = tmp_path / "scores.csv"
    writes: list[Path] = []
    real = formats.atomic_write_text
    monkeypatch.setattr(formats, "atomic_write_text", lambda path, text, **kw: writes.append(path) or real(
        path, text, **kw))
    assert run("--output", str(out), "--batch-size", "1") == 0
    assert writes == [out]  # the header at the start, then only appends
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + lines[1] + lines[3], newline="")  # the middle pair is missing
    writes.clear()
    assert run("--output", str(out), "--resume", "--batch-size", "1") == 0
    assert writes == [out, out] and out.read_text() == "".join(lines)  # the start, and the final rewrite in order


@pytest.mark.parametrize("precision, expected", [("fp32", "fp32"), ("bf16", "bf16")])
def test_the_record_names_the_precision_the_model_runs_in(tiny_model, precision, expected):
    from vtamiq_metric._frontend import ScoringOptions, resolve

    scorer = resolve(tiny_model, ScoringOptions(precision=precision), device="cpu")
    assert outfile.compute_precision(scorer) == expected
    auto = resolve(tiny_model, ScoringOptions(precision="auto"), device="cpu")
    assert outfile.compute_precision(auto) == ("bf16" if auto.half_precision else "fp32")
