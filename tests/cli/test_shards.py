"""``vtamiq score`` under torchrun (rows exchanged after every batch, one output) and with ``--shard I/N`` plus
``vtamiq merge-scores``."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import torchrun, write_png_pairs
from vtamiq_metric import cli as score_cli


@pytest.fixture(scope="module")
def score_inputs(tmp_path_factory):
    root = write_png_pairs(tmp_path_factory.mktemp("pairs"), 5)  # odd: shards of unequal size
    torch.manual_seed(0)
    from vtamiq_metric import VTAMIQ

    weights = VTAMIQ("tiny").eval().save_pretrained(root / "weights")
    args = ["score", "--ref-dir", str(root / "refs"), "--dist-dir", str(root / "dists"), "--model", str(weights),
            "--patches", "16", "--no-progress", "--device", "cpu"]
    assert score_cli.main([*args, "--output", str(root / "single.csv")]) == 0
    return root, args


def _rows(path):
    lines = path.read_text().splitlines()
    return lines[0], [line.split(",") for line in lines[1:]]


@pytest.mark.slow
def test_two_process_folder_scoring_matches_one_process(score_inputs):
    root, args = score_inputs
    torchrun("vtamiq_metric.cli", [*args, "--output", str(root / "ddp.csv")])
    header, single = _rows(root / "single.csv")
    assert _rows(root / "ddp.csv")[0] == header
    ddp = _rows(root / "ddp.csv")[1]
    assert [r[:2] for r in ddp] == [r[:2] for r in single] and len(ddp) == 5
    assert [float(r[2]) for r in ddp] == pytest.approx([float(r[2]) for r in single], abs=1e-6)


def test_shards_merge_into_the_single_run_file(score_inputs, capsys):
    root, args = score_inputs
    out = root / "sharded" / "scores.csv"
    for i in range(3):
        assert score_cli.main([*args, "--output", str(out), "--shard", f"{i}/3"]) == 0
    shard = _rows(out.parent / "scores.shard-1-of-3.csv")
    assert shard[0] == "index,total,ref,dist,score,std,error" and [r[:2] for r in shard[1]] == [["1", "5"], ["4", "5"]]
    assert score_cli.main(["merge-scores", str(out)]) == 0
    assert out.read_text() == (root / "single.csv").read_text()

    (out.parent / "scores.shard-2-of-3.csv").unlink()
    assert score_cli.main(["merge-scores", str(out)]) == 2
    assert "missing shard(s) [2]" in capsys.readouterr().err
    bad = out.parent / "scores.shard-2-of-3.csv"
    bad.write_text((out.parent / "scores.shard-1-of-3.csv").read_text())
    assert score_cli.main(["merge-scores", str(out)]) == 2
    assert "expected indices with index % 3 == 2, got 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        score_cli.main([*args, "--shard", "3/3"])
    assert score_cli.main([*args, "--shard", "0/3"]) == 2
    assert "--shard needs" in capsys.readouterr().err


@pytest.mark.slow
def test_two_process_resume_completes_a_partial_file(score_inputs):
    root, args = score_inputs
    partial = root / "resumed.csv"
    lines = (root / "single.csv").read_text().splitlines(keepends=True)
    partial.write_text("".join(lines[:3]))  # the header and the first two pairs
    # the record of the options they were scored with (a resume refuses scores without one)
    (root / "resumed.csv.meta.json").write_bytes((root / "single.csv.meta.json").read_bytes())
    torchrun("vtamiq_metric.cli", [*args, "--output", str(partial), "--resume", "--batch-size", "1"])
    header, single = _rows(root / "single.csv")
    resumed = _rows(partial)
    assert resumed[0] == header and [r[:2] for r in resumed[1]] == [r[:2] for r in single]
    assert [float(r[2]) for r in resumed[1]] == pytest.approx([float(r[2]) for r in single], abs=1e-6)
