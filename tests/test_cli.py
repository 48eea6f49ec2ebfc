"""The `vtamiq` command, run in-process on temporary images."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import golden_state_dict
from vtamiq_metric import cli


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
    assert [r["dist"].endswith(n) for r, n in zip(rows, ("a.png", "b.png"))] == [True, True]
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
