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
    _run("optimize_with_loss.py", ["--model", str(tmp_path / "m"), "--steps", "2", "--patches", "16", "--batch", "2",
                                   "--crop", "32"], monkeypatch)
    out = capsys.readouterr().out
    assert "PSNR dB" in out and "L1 + VTAMIQLoss" in out and "blurred input" in out


def test_examples_use_only_the_public_api():
    import ast

    for script in sorted(EXAMPLES.rglob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vtamiq_metric"):
                names = [node.module, *(alias.name for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if alias.name.startswith("vtamiq_metric")]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (
                    node.value.id == "vtamiq_metric"):
                names = [node.attr]
            else:
                continue
            private = [n for n in names for part in n.split(".") if part.startswith("_")]
            assert not private, f"{script.relative_to(EXAMPLES)}:{node.lineno} uses private {private}"


def test_example_images_have_recorded_provenance():
    sources = (EXAMPLES / "images" / "SOURCES.md").read_text()
    for image in sorted((EXAMPLES / "images").glob("*.png")):
        assert image.name in sources
