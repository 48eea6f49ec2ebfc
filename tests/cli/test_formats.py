"""The result formats of ``vtamiq score`` (``vtamiq_metric.cli.formats``): one registry, the help built from it, a new
format as one entry, ``--output -`` and the ``--out`` alias."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.helpers import write_png_pairs
from vtamiq_metric import cli
from vtamiq_metric._io import atomic_write_text
from vtamiq_metric.cli import formats
from vtamiq_metric.cli.parser import build_parser


class TsvWriter(formats.FileWriter):
    """A format added by a user: tab-separated values, rewritten whole (no append)."""

    key = ".tsv"
    help = "tab-separated values, rewritten at most every 2 s"

    @classmethod
    def dump(cls, rows: list[dict], path: Path, fields: tuple[str, ...]) -> None:
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=list(fields), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, table.getvalue(), newline="")

    @classmethod
    def load(cls, path: Path, *, partial: bool = False) -> list[dict]:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle, delimiter="\t"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = write_png_pairs(tmp_path_factory.mktemp("formats"), 3, size=(32, 40))
    import torch

    from vtamiq_metric import VTAMIQ

    torch.manual_seed(0)
    weights = VTAMIQ("tiny").eval().save_pretrained(root / "tiny")
    args = ["score", "--ref-dir", str(root / "refs"), "--dist-dir", str(root / "dists"), "--model", str(weights),
            "--patches", "8", "--device", "cpu", "--no-progress"]
    return root, args


def test_every_writer_is_registered_under_its_key_and_documented():
    assert list(formats.WRITERS) == [".csv", ".json", "-"]
    for key, writer in formats.WRITERS.items():
        assert writer.key == key and writer.help
    assert formats.file_suffixes() == [".csv", ".json"]


def test_the_help_is_built_from_the_registry(monkeypatch, capsys):
    monkeypatch.setitem(formats.WRITERS, TsvWriter.key, TsvWriter)
    with pytest.raises(SystemExit):
        cli.main(["score", "--help"])
    text = capsys.readouterr().out
    for key, writer in formats.WRITERS.items():
        assert f"  {key:<6} {writer.help}" in text
    assert "a .csv, .json or .tsv file" in text and "other than .csv, .json or .tsv" in text
    assert f"at most every {formats.REWRITE_SECONDS:g} s" in text  # the constant, not a copy of its value


def test_a_new_format_is_one_entry(inputs, monkeypatch, capsys):
    root, args = inputs
    out = root / "new" / "scores.tsv"
    assert cli.main([*args, "--output", str(out)]) == 2  # not registered: refused
    assert "expected an output file ending in .csv or .json" in capsys.readouterr().err
    monkeypatch.setitem(formats.WRITERS, TsvWriter.key, TsvWriter)
    assert cli.main([*args, "--output", str(out)]) == 0
    rows = TsvWriter.load(out)
    assert [Path(row["dist"]).name for row in rows] == ["p00.png", "p01.png", "p02.png"]
    assert out.read_text().splitlines()[0] == "\t".join(formats.FIELDS)
    reference = root / "scores.csv"
    assert cli.main([*args, "--output", str(reference)]) == 0
    assert [row["score"] for row in rows] == [row["score"] for row in formats.CsvWriter.load(reference)]
    # --resume and merge-scores read the new format through the registry too
    assert cli.main([*args, "--output", str(out), "--resume"]) == 0
    assert "3 of 3 pairs already scored" in capsys.readouterr().err
    for shard in ("0/2", "1/2"):
        assert cli.main([*args, "--output", str(root / "sharded" / "s.tsv"), "--shard", shard]) == 0
    assert cli.main(["merge-scores", str(root / "sharded" / "s.tsv")]) == 0
    assert TsvWriter.load(root / "sharded" / "s.tsv") == rows


def test_output_dash_is_standard_output(inputs, capsys):
    _, args = inputs
    assert cli.main(args) == 0
    default = capsys.readouterr().out
    assert cli.main([*args, "--output", "-"]) == 0
    assert capsys.readouterr().out == default and len(default.splitlines()) == 3
    assert cli.main([*args, "--output", "-", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
    assert cli.main([*args, "--output", "-", "--resume"]) == 2
    assert "--resume needs --output" in capsys.readouterr().err
    assert cli.main(["merge-scores", "-"]) == 2
    assert "expected an output file ending in .csv or .json, got '-'" in capsys.readouterr().err


def test_out_is_an_alias_of_output(inputs, capsys):
    root, args = inputs
    assert cli.main([*args, "--out", str(root / "alias.json")]) == 0
    assert len(json.loads((root / "alias.json").read_text())) == 3
    parser = build_parser()
    for command in (["map", "a.png", "b.png"], ["convert", "c.pth", "--variant", "paper2021"]):
        assert parser.parse_args([*command, "--out", "x"]).output == Path("x")
        assert parser.parse_args([*command, "--output", "x"]).output == Path("x")


def test_map_draws_is_a_hidden_alias_of_repeats(capsys):
    parser = build_parser()
    assert parser.parse_args(["map", "a.png", "b.png", "--output", "m.png"]).repeats == 4
    assert parser.parse_args(["map", "a.png", "b.png", "--output", "m.png", "--draws", "2"]).repeats == 2
    assert parser.parse_args(["map", "a.png", "b.png", "--output", "m.png", "--repeats", "3"]).repeats == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["map", "--help"])
    text = capsys.readouterr().out
    assert "--repeats" in text and "--draws" not in text


@pytest.mark.parametrize("name", ["=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "'quoted", "''two",
                                  "plain.png", "a=b.png", ""])
def test_csv_cells_are_spreadsheet_safe_and_read_back_exactly(tmp_path, name):
    # Issue 23 item 16: a cell a spreadsheet would run as a formula gets a quote in front; reading drops exactly one.
    row = {"ref": name, "dist": name, "score": -0.5, "std": 0.0, "error": name or None}
    formats.CsvWriter.save([row], tmp_path / "s.csv")
    with open(tmp_path / "s.csv", newline="") as handle:
        header, raw = csv.reader(handle)
    assert header == list(formats.FIELDS)
    dangerous = name.startswith(("=", "+", "-", "@", "\t", "\r", "'"))
    assert raw[0] == ("'" + name if dangerous else name) and raw[2] == "-0.5"  # numbers are never quoted
    (back,) = formats.CsvWriter.load(tmp_path / "s.csv")
    assert (back["ref"], back["dist"], back["score"]) == (name, name, "-0.5")


def test_standard_output_writes_names_that_are_not_utf8_as_their_bytes(monkeypatch):
    # Issue 23 item 6: on a strict UTF-8 standard output the line of a Latin-1 name raised UnicodeEncodeError.
    import os
    import sys

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="\n")
    monkeypatch.setattr(sys, "stdout", stream)
    formats.print_text(f"{os.fsdecode(b'caf' + bytes([0xE9]) + b'.png')}\t0.5")
    formats.print_text("next")
    stream.flush()
    assert raw.getvalue() == b"caf\xe9.png\t0.5\nnext\n"


def test_json_text_refuses_non_finite_numbers():
    assert formats.json_text([{"score": 0.25}]) == '[\n  {\n    "score": 0.25\n  }\n]\n'
    with pytest.raises(ValueError, match="not JSON compliant"):
        formats.json_text([{"score": float("nan")}])


def test_the_help_documents_what_protects_the_output(capsys):
    with pytest.raises(SystemExit):
        cli.main(["score", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("OUTPUT.lock", "OUTPUT.meta.json", "--resume refuses to add scores made with other ones",
                  "CSV cells are spreadsheet-safe: text starting with = + - @", "which --resume and merge-scores drop",
                  "File names that are not UTF-8", "A non-finite score is a failed pair"):
        assert words in text
