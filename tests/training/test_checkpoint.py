"""``last.pt`` loads without running code, and the metric log survives kills (issue 13, items 1 and 8)."""

from __future__ import annotations

import json
import logging
import os
import random
import types

import numpy as np
import pytest
import torch

from vtamiq_metric.training import checkpoint, cli
from vtamiq_metric.training.checkpoint import CheckpointError, MetricLog, read_metric_log


class _Payload:
    """Unpickling this object would create ``marker``: the planted ``last.pt`` of an attacker."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _train_args(kadid, output, *more):
    return ["train", "--dataset", "kadid10k", "--data-root", str(kadid), "--model-preset", "tiny", "--output",
            str(output), "--epochs", "1", "--batch-size", "4", "--train-patches", "8", "--eval-patches", "8",
            "--workers", "0", "--no-progress", "--max-steps-per-epoch", "1", *more]


def test_resume_refuses_a_planted_pickle_without_running_it(kadid, tmp_path, capsys):
    out = tmp_path / "run"
    marker = tmp_path / "pwned"
    (out / "checkpoints").mkdir(parents=True)
    torch.save({"model": _Payload(str(marker)), "epoch": 0}, out / "checkpoints" / "last.pt")
    assert cli.main(_train_args(kadid, out, "--resume")) == 1
    err = capsys.readouterr().err
    assert "refusing to resume from" in err and "nothing in it ran" in err
    assert not marker.exists()


def test_checkpoint_rng_states_are_plain_values_that_restore_exactly(tmp_path):
    torch.manual_seed(3)
    np.random.seed(4)
    random.seed(5)
    np.random.normal()  # a cached gaussian in numpy's state
    state = checkpoint.rng_state()
    path = tmp_path / "state.pt"
    torch.save(state, path)
    expected = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    checkpoint.set_rng_state(torch.load(path, weights_only=True))
    got = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2:] == got[2:]


def test_load_checkpoint_names_a_junk_file(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="expected a checkpoint written by vtamiq-train"):
        checkpoint.load_checkpoint(path)


def test_metric_log_is_append_only_and_tolerates_a_torn_last_line(tmp_path, caplog):
    log = MetricLog(tmp_path)
    log.append({"epoch": 0, "loss": 1.0})
    log.append({"epoch": 1, "loss": 0.5})
    with open(log.jsonl, "a") as handle:  # a kill in mid-write of epoch 2's line
        handle.write('{"epoch": 2, "lo')
    with caplog.at_level(logging.WARNING):
        assert [r["epoch"] for r in read_metric_log(log.jsonl)] == [0, 1]
    assert "torn last line" in caplog.text
    log.append({"epoch": 2, "loss": 0.25})  # the torn line is dropped, not glued to the new one
    assert [r["epoch"] for r in log.rows()] == [0, 1, 2]
    assert log.jsonl.read_text().endswith("\n")
    assert log.csv.read_text().splitlines()[0] == "epoch,loss" and len(log.csv.read_text().splitlines()) == 4
    log.truncate_after(0)
    assert [r["epoch"] for r in log.rows()] == [0]
    log.jsonl.write_text('{"epoch": 0}\nnot json\n{"epoch": 1}\n')  # damage before the last line is an error
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: expected a JSON object"):
        log.rows()


def test_metric_log_append_is_one_fsynced_write(tmp_path, monkeypatch):
    log = MetricLog(tmp_path)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")
                                                               if os.path.exists("/proc/self/fd") else fd),
                                                 real_fsync(fd)))
    log.append({"epoch": 0, "loss": 1.0})
    assert any(str(s).endswith("metrics.jsonl") for s in synced)


def test_resume_without_checkpoint_drops_rows_of_unfinished_epochs(tmp_path):
    log = MetricLog(tmp_path)
    log.append({"epoch": 0, "loss": 1.0})  # logged, then killed before last.pt was written
    ctx = types.SimpleNamespace(is_main=True, distributed=False)
    progress = checkpoint.resume(tmp_path / "checkpoints" / "last.pt", model=None, optimizer=None, scheduler=None,
                                 ctx=ctx, seed=0, log=log)
    assert progress.start_epoch == 0 and log.rows() == []


def test_fresh_run_refuses_a_non_empty_folder_unless_resume_or_overwrite(kadid, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(_train_args(kadid, out)) == 0
    assert cli.main(_train_args(kadid, out)) == 1
    assert "is not empty" in capsys.readouterr().err
    (out / "notes.txt").write_text("mine")
    assert cli.main(_train_args(kadid, out, "--overwrite")) == 0
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [0]
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite removes only what a run writes
    with open(out / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 1, "train_lo')  # torn by a kill
    assert cli.main(_train_args(kadid, out, "--resume", "--epochs", "2")) == 0
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [0, 1]


def _snapshot(folder):
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("broken", [
    ("--data-root", "{tmp}/kadid_typo"),  # the probe: a mistyped data root
    ("--init", "{tmp}/no_such_model"),  # initial weights that cannot be loaded
    ("--split-file", "{tmp}/no_split.json"),  # a split that cannot be read
    ("--dataset", "tid2013"),  # a dataset that does not open at that root
], ids=["data-root", "init", "split-file", "dataset"])
def test_overwrite_checks_everything_before_removing_anything(kadid, tmp_path, caplog, broken):
    # Issue 23 item 1: --overwrite printed "removed the previous run's files", then failed on the data root, and
    # best/, checkpoints/last.pt and the metrics were gone.
    out = tmp_path / "run"
    assert cli.main(_train_args(kadid, out)) == 0
    before = _snapshot(out)
    assert {"checkpoints/last.pt", "best/model.safetensors", "metrics.jsonl", "config.json"} <= set(before)
    flag, value = broken
    args = _train_args(kadid, out, "--overwrite")
    if flag in args:
        args[args.index(flag) + 1] = value.format(tmp=tmp_path)
    else:
        args += [flag, value.format(tmp=tmp_path)]
    with caplog.at_level(logging.WARNING):
        assert cli.main(args) == 1
    assert "removed" not in caplog.text
    assert _snapshot(out) == before


def test_overwrite_removes_only_the_files_a_run_writes(kadid, tmp_path, caplog):
    # Issue 23 item 1: deletion went by name, so a user's best/my_photo.jpg and run_notes/thesis.tex were removed.
    out = tmp_path / "run"
    assert cli.main(_train_args(kadid, out)) == 0
    mine = {"best/my_photo.jpg": b"\xff\xd8 a photograph", "run_notes/thesis.tex": b"\\chapter{}",
            "checkpoints/epoch3_by_hand.pt": b"kept", "tensorboard/my_notes.txt": b"kept", "notes.txt": b"mine",
            "run_00/my_plot.png": b"kept"}
    for name, data in mine.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    (out / "run_01").mkdir()  # a previous --runs 2 run's folder, holding only run files
    (out / "run_01" / "metrics.jsonl").write_text('{"epoch": 0}\n')
    (out / "run_00" / "test.json").write_text("{}\n")
    (out / ".metrics.csv.4242-0123456789abcdef.tmp").write_text("left by a kill")
    old_config = (out / "best" / "config.json").read_bytes()
    old_stamp = (out / "checkpoints" / "last.pt").stat().st_mtime_ns
    with caplog.at_level(logging.WARNING):
        assert cli.main(_train_args(kadid, out, "--overwrite")) == 0
    assert "removed the previous run's" in caplog.text
    for name, data in mine.items():
        assert (out / name).read_bytes() == data, name
    assert not (out / "run_01").exists() and not (out / "run_00" / "test.json").exists()
    assert not list(out.glob(".*.tmp"))
    assert (out / "checkpoints" / "last.pt").stat().st_mtime_ns != old_stamp
    assert (out / "best" / "config.json").read_bytes() == old_config  # rewritten by the new run (same config)
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [0]


def test_clear_run_files_never_follows_symlinks_or_touches_other_files(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "model.safetensors").write_text("the user's own")
    (elsewhere / "config.json").write_text("the user's own")
    out = tmp_path / "run"
    out.mkdir()
    (out / "best").symlink_to(elsewhere, target_is_directory=True)
    (out / "metrics.csv").symlink_to(elsewhere / "config.json")
    (out / "metrics.jsonl").write_text('{"epoch": 0}\n')
    (out / "metrics.jsonl.bak").write_text("mine")
    removed = checkpoint.clear_run_files(out)
    assert removed == [out / "metrics.jsonl"]
    assert sorted(p.name for p in elsewhere.iterdir()) == ["config.json", "model.safetensors"]
    assert (out / "metrics.csv").is_symlink() and (out / "metrics.jsonl.bak").read_text() == "mine"
    assert checkpoint.clear_run_files(tmp_path / "missing") == []


def test_output_that_is_a_file_is_refused_before_anything(kadid, tmp_path, capsys):
    out = tmp_path / "run"
    out.write_text("not a folder")
    assert cli.main(_train_args(kadid, out, "--overwrite")) == 1
    assert "is a file; expected a folder" in capsys.readouterr().err
    assert out.read_text() == "not a folder"


def _tamper(state):
    state["model"]["head.fc2.weight"] = torch.zeros(2, 16)


def _tamper_rng_torch(state):
    state["rng"]["torch"] = torch.zeros(10, dtype=torch.uint8)


def _tamper_rng_numpy(state):
    state["rng"]["numpy"]["keys"] = state["rng"]["numpy"]["keys"][:100]


def _tamper_rng_python(state):
    state["rng"]["python"] = (3, (1, 2, 3), None)


def _tamper_optimizer(state):
    moments = next(iter(state["optimizer"]["state"].values()))
    moments["exp_avg"] = torch.zeros(7, 7)


def _tamper_epoch(state):
    state["epoch"] = "0"


@pytest.mark.parametrize(("tamper", "message"), [
    # Issue 23 item 15: each of these gave a RuntimeError traceback (or failed later) instead of saying what is wrong.
    (_tamper, (r"key 'head.fc2.weight' has shape \(2, 16\), the model expects \(1, 16\) \(was it written with another "
              r"--model-preset")),
    (_tamper_rng_torch, r"its RNG state 'rng' cannot be restored: the torch state is not valid"),
    (_tamper_rng_numpy, r"its RNG state 'rng' cannot be restored: the numpy state is not valid"),
    (_tamper_rng_python, r"its RNG state 'rng' cannot be restored: the python state is not valid"),
    (_tamper_optimizer, r"its optimiser state 'exp_avg' of parameter \d+ has shape \(7, 7\)"),
    (_tamper_epoch, r"expected 'epoch' to be an int >= 0, got '0'"),
], ids=["model-shape", "rng-torch", "rng-numpy", "rng-python", "optimizer-shape", "epoch"])
def test_resume_says_what_is_wrong_with_a_damaged_last_pt(kadid, tmp_path, capsys, tamper, message):
    out = tmp_path / "run"
    assert cli.main(_train_args(kadid, out)) == 0
    last = out / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    tamper(state)
    torch.save(state, last)
    torch.manual_seed(123)
    expected_rng = torch.get_rng_state()
    with pytest.raises(CheckpointError, match=message):
        from vtamiq_metric.training.config import TrainConfig
        from vtamiq_metric.training.train import fit

        fit(TrainConfig(dataset="kadid10k", data_root=str(kadid), output=str(out), model_preset="tiny", epochs=2,
                        batch_size=4, train_patches=8, eval_patches=8, workers=0, progress=False,
                        max_steps_per_epoch=1, seed=0), resume=True)
    capsys.readouterr()
    assert cli.main(_train_args(kadid, out, "--resume", "--epochs", "2")) == 1
    err = capsys.readouterr().err
    assert f"cannot resume from {last}" in err and "it was not applied" in err
    torch.manual_seed(123)
    assert torch.equal(torch.get_rng_state(), expected_rng)


@pytest.mark.parametrize("line", ['{"epoch": "1"}', '{"epoch": 1e308}', '{"epoch": -1}', '{"epoch": true}',
                                  "[" * 100_000 + "]" * 100_000])
def test_metric_log_rows_need_an_integer_epoch(tmp_path, line):
    # A string or huge epoch made `vtamiq-train plot` fail sorting or drawing; now the line is named.
    (tmp_path / "metrics.jsonl").write_text(f'{{"epoch": 0}}\n{line}\n{{"epoch": 2}}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: expected a JSON object with an 'epoch' \(an int >= 0\)"):
        read_metric_log(tmp_path / "metrics.jsonl")
