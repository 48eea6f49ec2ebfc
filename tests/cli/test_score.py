"""The `vtamiq` command, run in-process on temporary images."""

from __future__ import annotations

import csv
import json
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import golden_state_dict, write_png_pairs
from vtamiq_metric import cli
from vtamiq_metric.cli import scoring


@pytest.fixture
def weights(tmp_path, tiny_model):
    return str(tiny_model.save_pretrained(tmp_path / "weights"))


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    for folder in ("refs", "dists"):
        (tmp_path / folder).mkdir()
    for name in ("a.png", "b.png"):
        ref = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        noisy = np.clip(ref.astype(int) + rng.integers(-30, 30, ref.shape), 0, 255).astype(np.uint8)
        Image.fromarray(ref).save(tmp_path / "refs" / name)
        Image.fromarray(noisy).save(tmp_path / "dists" / name)
    return tmp_path


def test_single_pair_prints_the_score(images, weights, tiny_model, capsys):
    ref, dist = images / "refs" / "a.png", images / "dists" / "a.png"
    assert cli.main(["score", str(ref), str(dist), "--model", weights, "--patches", "16", "--device", "cpu"]) == 0
    printed = float(capsys.readouterr().out.strip())
    from vtamiq_metric import score

    expected = score(str(ref), str(dist), model=tiny_model, num_patches=16).item()
    assert printed == pytest.approx(expected, abs=1e-6)


def test_single_pair_json(images, weights, capsys):
    args = ["score", str(images / "refs" / "a.png"), str(images / "dists" / "a.png"), "--model", weights,
            "--patches", "16", "--repeats", "2", "--json"]
    assert cli.main(args) == 0
    row = json.loads(capsys.readouterr().out)
    assert set(row) == {"ref", "dist", "score", "std", "error"} and row["error"] is None and row["std"] >= 0


def test_folder_mode_writes_csv_and_skips_a_failing_pair(images, weights, capsys):
    (images / "refs" / "c.png").write_bytes(b"corrupt")
    (images / "dists" / "c.png").write_bytes(b"corrupt")
    out = images / "scores.csv"
    code = cli.main(["score", "--ref-dir", str(images / "refs"), "--dist-dir", str(images / "dists"), "--model",
                     weights, "--patches", "16", "--output", str(out), "--no-progress"])
    assert code == 3  # some pairs failed
    assert "skipping" in capsys.readouterr().err
    lines = out.read_text().splitlines()
    assert lines[0] == "ref,dist,score,std,error" and len(lines) == 4
    assert "c.png" in lines[3] and "ValueError" in lines[3]
    assert all(float(line.split(",")[2]) == float(line.split(",")[2]) for line in lines[1:3])


def test_csv_mode_writes_json(images, weights):
    pairs = images / "pairs.csv"
    pairs.write_text("ref,dist\nrefs/a.png,dists/a.png\nrefs/b.png,dists/b.png\n")
    out = images / "scores.json"
    assert cli.main(["score", "--pairs", str(pairs), "--model", weights, "--patches", "16", "--output",
                     str(out), "--no-progress"]) == 0
    rows = json.loads(out.read_text())
    assert [r["dist"].endswith(n) for r, n in zip(rows, ("a.png", "b.png"), strict=True)] == [True, True]
    assert all(isinstance(r["score"], float) for r in rows)


@pytest.mark.parametrize("args, message", [
    (["score", "nope.png", "nope2.png"], "nope.png"),
    (["score", "--ref-dir", "/nonexistent", "--dist-dir", "/nonexistent"], "not a directory"),
    (["score", "--pairs", "/nonexistent.csv"], "pairs file not found"),
    (["score"], "give exactly one of"),
])
def test_bad_paths_exit_nonzero_with_a_message(args, message, weights, capsys):
    code = cli.main(args + ["--model", weights])
    assert code != 0
    assert message in capsys.readouterr().err


def test_models_lists_registry(capsys, monkeypatch):
    from vtamiq_metric import hub

    monkeypatch.setitem(hub.PRETRAINED, "vtamiq_test.x", hub.PretrainedCfg(
        name="vtamiq_test.x", sha256="0" * 64, license="Apache-2.0", hf_hub_id="org/x", revision="abc"))
    assert cli.main(["models"]) == 0
    assert "vtamiq_test.x\torg/x@abc" in capsys.readouterr().out


def test_convert_writes_a_loadable_directory(tmp_path, capsys):
    checkpoint = tmp_path / "ckpt.pth"
    torch.save({"epoch": 1, "test_accuracy": 0.5, "model_state_dict": golden_state_dict("paper")}, checkpoint)
    assert cli.main(["convert", str(checkpoint), "--variant", "paper2021", "--out", str(tmp_path / "out")]) == 0
    assert "57,306,274 parameters" in capsys.readouterr().out
    from vtamiq_metric import load_model

    model = load_model(tmp_path / "out")
    assert model.config.pos_index == "paper2021" and model.provenance["source_file"] == "ckpt.pth"
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    assert cli.main(["convert", str(tmp_path / "bad.pth"), "--variant", "paper2021", "--out", str(tmp_path)]) == 1
    assert "cannot read checkpoint" in capsys.readouterr().err


def test_malformed_pairs_rows_are_reported_with_their_line_and_skipped(images, weights, capsys):
    pairs = images / "pairs.csv"
    pairs.write_text("ref,dist\n"
                     "refs/a.png,dists/a.png\n"
                     "refs/b.png\n"  # line 3: a missing cell
                     ",dists/b.png\n"  # line 4: an empty cell
                     "refs/a.png,dists/a.png,extra\n"  # line 5: an extra cell
                     "\n"  # a blank line is skipped
                     " ,\n"  # line 7: two blank cells
                     "refs/b.png,dists/b.png\n")
    out = images / "scores.csv"
    code = cli.main(["score", "--pairs", str(pairs), "--model", weights, "--patches", "16", "--output", str(out),
                     "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3, err  # some pairs failed; the others are scored
    assert "pairs.csv line 3: expected 2 cells (ref,dist), got 1" in err
    assert "pairs.csv line 4: the 'ref' cell is empty" in err and "directory" not in err
    assert "pairs.csv line 5: expected 2 cells (ref,dist), got 3" in err
    assert "pairs.csv line 7: the 'ref' and 'dist' cells are empty" in err
    rows = list(csv.DictReader(out.open(newline="")))
    assert len(rows) == 6
    assert [bool(row["score"]) for row in rows] == [True, False, False, False, False, True]
    assert "line 3" in rows[1]["error"] and rows[1]["ref"].endswith("b.png") and rows[1]["dist"] == ""


def test_the_reported_one_bad_row_csv_scores_the_good_row(images, weights, capsys):
    (images / "a.png").write_bytes((images / "refs" / "a.png").read_bytes())
    (images / "b.png").write_bytes((images / "dists" / "a.png").read_bytes())
    pairs = images / "t.csv"
    pairs.write_text("ref,dist\na.png,b.png\nc.png\n")
    code = cli.main(["score", "--pairs", str(pairs), "--model", weights, "--patches", "16", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 3 and "unsupported operand" not in captured.err
    assert "t.csv line 3: expected 2 cells (ref,dist), got 1" in captured.err
    lines = captured.out.splitlines()
    assert len(lines) == 2 and lines[0].endswith(tuple("0123456789")) and lines[1].endswith("error")


def test_a_pairs_file_without_the_header_is_a_usage_error(images, weights, capsys):
    pairs = images / "pairs.csv"
    pairs.write_text("refs/a.png,dists/a.png\n")
    assert cli.main(["score", "--pairs", str(pairs), "--model", weights, "--no-progress"]) == 2
    assert "header row naming the columns 'ref' and 'dist'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["score", "merge-scores"])
def test_an_output_that_is_neither_csv_nor_json_is_refused(images, weights, capsys, command):
    out = images / "scores.txt"
    if command == "score":
        args = ["score", "--ref-dir", str(images / "refs"), "--dist-dir", str(images / "dists"), "--model", weights,
                "--output", str(out)]
    else:
        args = ["merge-scores", str(out)]
    assert cli.main(args) == 2
    assert "expected an output file ending in .csv or .json" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------------
# Batches, background decoding, incremental output, signals and --resume


def _folder_args(root, weights, *extra):
    return ["score", "--ref-dir", str(root / "refs"), "--dist-dir", str(root / "dists"), "--model", weights,
            "--patches", "16", "--no-progress", "--device", "cpu", "--precision", "fp32", *extra]


def _csv_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_batched_scores_equal_per_pair_score_and_bad_pairs_do_not_spoil_their_batch(tmp_path, weights, tiny_model,
                                                                                    monkeypatch, capsys):
    from vtamiq_metric import api, score

    root = write_png_pairs(tmp_path, 7)
    write_png_pairs(tmp_path / "big", 1, size=(56, 40))  # another size in the same batch: its own model call
    (root / "refs" / "p07.png").write_bytes((tmp_path / "big" / "refs" / "p00.png").read_bytes())
    (root / "dists" / "p07.png").write_bytes((tmp_path / "big" / "dists" / "p00.png").read_bytes())
    (root / "dists" / "p02.png").write_bytes(b"corrupt")  # fails to decode
    (root / "dists" / "p04.png").write_bytes((root / "dists" / "p07.png").read_bytes())  # size mismatch
    calls, threads = [], set()
    real_score, real_decode = api.score_batch, scoring._decode

    def counting_score(scorer, ref, dist):
        calls.append(len(ref))
        return real_score(scorer, ref, dist)

    def recording_decode(*args):
        threads.add(__import__("threading").current_thread().name)
        return real_decode(*args)

    monkeypatch.setattr(api, "score_batch", counting_score)
    monkeypatch.setattr(scoring, "_decode", recording_decode)
    out = tmp_path / "scores.csv"
    assert cli.main(_folder_args(root, weights, "--batch-size", "4", "--seed", "3", "--output", str(out))) == 3
    err = capsys.readouterr().err
    assert "p02.png: ValueError" in err and "must have the same size" in err
    assert sorted(calls) == [1, 2, 3]  # batch 1: p00, p01, p03 (p02 failed); batch 2: p05, p06 and p07 alone
    assert threads and all(name.startswith("vtamiq-decode") for name in threads)  # decoded in background threads
    rows = _csv_rows(out)
    assert [row["dist"][-7:] for row in rows] == [f"p{i:02d}.png" for i in range(8)]
    assert [bool(row["error"]) for row in rows] == [False, False, True, False, True, False, False, False]
    monkeypatch.setattr(api, "score_batch", real_score)
    for row in rows:
        if not row["error"]:
            expected = score(row["ref"], row["dist"], model=tiny_model, num_patches=16, seed=3, precision="fp32")
            assert float(row["score"]) == pytest.approx(expected.item(), abs=1e-5)


def test_a_failing_model_batch_is_retried_pair_by_pair(tmp_path, weights, monkeypatch, capsys):
    from vtamiq_metric import api

    root = write_png_pairs(tmp_path, 5)
    out = tmp_path / "scores.csv"
    assert cli.main(_folder_args(root, weights, "--batch-size", "5", "--output", str(out))) == 0
    clean = [float(row["score"]) for row in _csv_rows(out)]
    real = api.score_batch

    def fails_on_batches(scorer, ref, dist):
        if len(ref) > 1:
            raise RuntimeError("out of memory (simulated)")
        return real(scorer, ref, dist)

    monkeypatch.setattr(api, "score_batch", fails_on_batches)
    assert cli.main(_folder_args(root, weights, "--batch-size", "5", "--output", str(out))) == 0
    assert "a batch of 5 pairs failed (RuntimeError: out of memory (simulated)); scoring them one by one" in (
        capsys.readouterr().err)
    assert [float(row["score"]) for row in _csv_rows(out)] == pytest.approx(clean, abs=1e-5)


def test_whatever_a_decode_raises_fails_only_its_pair(tmp_path, weights, monkeypatch, capsys):
    # Issue 23 item 5: a NotImplementedError (a malformed DDS) or a MemoryError in a decode thread stopped the run with
    # a traceback and the remaining pairs were never scored.
    root = write_png_pairs(tmp_path, 4)
    real = scoring.prepare_pair

    def failing(ref, dist, **kwargs):
        if ref.endswith("p01.png"):
            raise NotImplementedError("Unimplemented pixel format 1482184792")
        if ref.endswith("p02.png"):
            raise MemoryError
        return real(ref, dist, **kwargs)

    monkeypatch.setattr(scoring, "prepare_pair", failing)
    out = tmp_path / "scores.csv"
    assert cli.main(_folder_args(root, weights, "--batch-size", "2", "--output", str(out))) == 3
    err = capsys.readouterr().err
    assert "p01.png: NotImplementedError: Unimplemented pixel format" in err
    assert "p02.png: MemoryError: out of memory decoding the pair" in err
    rows = _csv_rows(out)
    assert [bool(row["score"]) for row in rows] == [True, False, False, True]


@pytest.mark.parametrize("ahead_bytes, submitted", [(10**9, 2), (5000, 1)])
def test_the_decode_ahead_is_bounded_by_bytes(tmp_path, ahead_bytes, submitted):
    # Issue 23 item 9: the next batch was always decoded while the current one was scored, so two batches of large
    # images were in memory at once. A pair of 40 x 48 8-bit images decodes to 2 * 40 * 48 * 3 = 11,520 bytes.
    from vtamiq_metric.cli.pairs import Pair

    root = write_png_pairs(tmp_path, 3)
    pairs = [Pair(str(root / "refs" / f"p{i:02d}.png"), str(root / "dists" / f"p{i:02d}.png")) for i in range(3)]
    assert scoring._pair_bytes(pairs[0]) == 11_520
    prefetch = scoring._Prefetcher(pairs, [0, 1, 2], 1, patch_size=16, max_pixels=None,
                                   ahead_bytes=11_520 + ahead_bytes)
    try:
        handed = []
        while prefetch.more():
            batch = prefetch.next_batch()
            assert prefetch._submitted == len(handed) + submitted or prefetch._submitted == 3
            handed += [k for k, item in batch if not isinstance(item, str)]
        assert handed == [0, 1, 2] and prefetch.next_batch() == []
    finally:
        prefetch.close()


def test_score_help_documents_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        cli.main(["score", "--help"])
    text = capsys.readouterr().out
    for line in ("0    every pair was scored", "1    every pair failed", "2    usage error",
                 "3    some pairs failed", "130  interrupted by SIGINT, 143 by SIGTERM"):
        assert line in text


def _interrupt_after(monkeypatch, batches, signals=(signal.SIGINT,)):
    """Make the model raise ``signals`` (to this process) during its call number ``batches``."""
    from vtamiq_metric import api

    real, calls = api.score_batch, []

    def interrupting(scorer, ref, dist):
        calls.append(len(ref))
        if len(calls) == batches:
            for signum in signals:
                signal.raise_signal(signum)
        return real(scorer, ref, dist)

    monkeypatch.setattr(api, "score_batch", interrupting)
    return calls


@pytest.mark.parametrize("signum, code, suffix", [(signal.SIGINT, 130, ".csv"), (signal.SIGTERM, 143, ".json")])
def test_a_signal_saves_the_finished_batches_and_resume_completes_the_file(tmp_path, weights, monkeypatch, capsys,
                                                                           signum, code, suffix):
    root = write_png_pairs(tmp_path, 9)
    clean_out, out = tmp_path / f"clean{suffix}", tmp_path / f"scores{suffix}"
    assert cli.main(_folder_args(root, weights, "--output", str(clean_out))) == 0
    calls = _interrupt_after(monkeypatch, 2, (signum,))
    assert cli.main(_folder_args(root, weights, "--batch-size", "2", "--output", str(out))) == code
    err = capsys.readouterr().err
    assert len(calls) == 2  # stopped after the batch during which the signal came
    assert f"interrupted by {signal.Signals(signum).name}: 4 of 9 pairs done" in err and "--resume" in err
    read = (lambda p: json.loads(p.read_text())) if suffix == ".json" else _csv_rows
    partial = read(out)
    assert [row["dist"][-7:] for row in partial] == [f"p{i:02d}.png" for i in range(4)]
    monkeypatch.undo()

    calls = _interrupt_after(monkeypatch, 0)  # counts the model calls of the resumed run
    assert cli.main(_folder_args(root, weights, "--batch-size", "2", "--output", str(out), "--resume")) == 0
    assert "--resume: 4 of 9 pairs already scored" in capsys.readouterr().err
    assert sum(calls) == 5  # only the missing pairs were scored
    rows, clean = read(out), read(clean_out)
    assert [(r["ref"], r["dist"]) for r in rows] == [(r["ref"], r["dist"]) for r in clean]  # each pair once
    assert [float(r["score"]) for r in rows] == pytest.approx([float(r["score"]) for r in clean], abs=1e-5)


def test_a_second_signal_stops_at_once_and_keeps_the_finished_batches(tmp_path, weights, monkeypatch, capsys):
    root = write_png_pairs(tmp_path, 6)
    out = tmp_path / "scores.csv"
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN, not Python's handler, under a shell's background job
    _interrupt_after(monkeypatch, 2, (signal.SIGINT, signal.SIGINT))  # the second one interrupts the model call
    assert cli.main(_folder_args(root, weights, "--batch-size", "2", "--output", str(out))) == 130
    assert "4 of 6" not in capsys.readouterr().err
    assert [row["dist"][-7:] for row in _csv_rows(out)] == ["p00.png", "p01.png"]
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


def test_resume_reads_what_a_killed_run_left(tmp_path, weights, capsys):
    root = write_png_pairs(tmp_path, 4)
    out = tmp_path / "scores.csv"
    assert cli.main(_folder_args(root, weights, "--output", str(out))) == 0
    clean = _csv_rows(out)
    lines = out.read_text().splitlines(keepends=True)
    # p00 scored, p01 failed before (its error row is scored again), p02 cut mid-row by a kill
    failed = lines[2].split(",")[:2] + [",,ValueError: earlier failure\r\n"]
    out.write_text(lines[0] + lines[1] + ",".join(failed) + lines[3][:-9], newline="")
    assert cli.main(_folder_args(root, weights, "--output", str(out), "--resume")) == 0
    assert "--resume: 1 of 4 pairs already scored" in capsys.readouterr().err
    rows = _csv_rows(out)
    assert [(r["ref"], r["dist"]) for r in rows] == [(r["ref"], r["dist"]) for r in clean]
    assert [float(r["score"]) for r in rows] == pytest.approx([float(r["score"]) for r in clean], abs=1e-5)
    assert rows[0] == clean[0] and not any(r["error"] for r in rows)  # the kept row is kept as it was

    other = tmp_path / "other.csv"
    other.write_text("ref,dist,score,std,error\nx.png,y.png,0.5,0.0,\n")
    assert cli.main(_folder_args(root, weights, "--output", str(other), "--resume")) == 2
    assert "holds 1 row(s) for pairs that are not in this input (e.g. x.png / y.png)" in capsys.readouterr().err
    assert other.read_text() == "ref,dist,score,std,error\nx.png,y.png,0.5,0.0,\n"  # untouched
    assert cli.main(_folder_args(root, weights, "--resume")) == 2
    assert "--resume needs --output" in capsys.readouterr().err


def test_an_interrupted_shard_resumes_and_merges_into_the_single_run_file(tmp_path, weights, monkeypatch):
    root = write_png_pairs(tmp_path, 7)
    single, out = tmp_path / "single.csv", tmp_path / "sharded" / "scores.csv"
    assert cli.main(_folder_args(root, weights, "--batch-size", "1", "--output", str(single))) == 0
    _interrupt_after(monkeypatch, 1)
    assert cli.main(_folder_args(root, weights, "--batch-size", "1", "--output", str(out), "--shard", "0/2")) == 130
    shard = _csv_rows(out.parent / "scores.shard-0-of-2.csv")
    assert [(r["index"], r["total"]) for r in shard] == [("0", "7")]
    monkeypatch.undo()
    assert cli.main(["merge-scores", str(out)]) == 2  # a shard is incomplete (and shard 1 is missing)
    for args in (["--shard", "0/2", "--resume"], ["--shard", "1/2"]):
        assert cli.main(_folder_args(root, weights, "--batch-size", "1", "--output", str(out), *args)) == 0
    assert cli.main(["merge-scores", str(out)]) == 0
    assert out.read_text() == single.read_text()


_SLOW_SCORER = ("import sys, time\n"
                "from vtamiq_metric import api, cli\n"
                "real = api.score_batch\n"
                "def slow(*args, **kwargs):\n"
                "    time.sleep(0.15)\n"
                "    return real(*args, **kwargs)\n"
                "api.score_batch = slow\n"
                "sys.exit(cli.main(sys.argv[1:]))\n")


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signalled_process_leaves_a_valid_file_that_resume_completes(tmp_path, weights, signum, code):
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = write_png_pairs(tmp_path, 30, size=(32, 32))
    out, clean = tmp_path / "scores.csv", tmp_path / "clean.csv"
    assert cli.main(_folder_args(root, weights, "--output", str(clean))) == 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-c", _SLOW_SCORER, *_folder_args(root, weights, "--batch-size", "2", "--output",
                                                                 str(out))]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if out.exists() and len(out.read_text().splitlines()) > 1:  # the first results are in the file
            break
        time.sleep(0.02)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    partial = _csv_rows(out)  # a valid table...
    assert 0 < len(partial) < 30 and all(row["score"] for row in partial), stderr  # ...of finished pairs
    assert f"interrupted by {signal.Signals(signum).name}" in stderr

    done = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    rows, expected = _csv_rows(out), _csv_rows(clean)
    assert [(r["ref"], r["dist"]) for r in rows] == [(r["ref"], r["dist"]) for r in expected]  # each pair once
    assert [float(r["score"]) for r in rows] == pytest.approx([float(r["score"]) for r in expected], abs=1e-5)
