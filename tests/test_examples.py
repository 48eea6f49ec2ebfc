"""The examples run, on a tiny model saved in a temporary folder."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, args: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [script, *args])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    assert exit_info.value.code == 0


def test_score_images_scores_the_example_images(tmp_path, tiny_model, monkeypatch, capsys):
    tiny_model.save_pretrained(tmp_path / "m")
    _run("score_images.py", ["--model", str(tmp_path / "m"), "--patches", "16", "--repeats", "2"], monkeypatch)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("distortion score") and len(lines) == 7
    assert all("±" in line for line in lines[1:])


def test_optimize_with_loss_prints_the_loss(tmp_path, tiny_model, monkeypatch, capsys):
    tiny_model.save_pretrained(tmp_path / "m")
    _run("optimize_with_loss.py", ["--model", str(tmp_path / "m"), "--steps", "4", "--patches", "16", "--size", "48"],
         monkeypatch)
    out = capsys.readouterr().out
    assert out.count("VTAMIQ loss") == 5 and "PSNR" in out


def test_example_images_have_recorded_provenance():
    sources = (EXAMPLES / "images" / "SOURCES.md").read_text()
    for image in sorted((EXAMPLES / "images").glob("*.png")):
        assert image.name in sources
