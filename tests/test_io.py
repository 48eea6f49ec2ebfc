"""``vtamiq_metric._io``: the one atomic write, and the writers that use it."""

from __future__ import annotations

import pytest

from vtamiq_metric._io import atomic_path, atomic_write_text, temporary_name


def test_atomic_path_replaces_the_target_only_when_the_write_succeeds(tmp_path):
    target = tmp_path / "scores.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            assert tmp == temporary_name(target) and tmp.parent == tmp_path and tmp.name.startswith(".scores.csv.")
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]
    with atomic_path(target, fsync=False) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]


def test_atomic_write_text_keeps_csv_line_endings_with_newline_empty(tmp_path):
    assert atomic_write_text(tmp_path / "a.csv", "x,y\r\n1,2\r\n", newline="").read_bytes() == b"x,y\r\n1,2\r\n"
    assert atomic_write_text(tmp_path / "b.json", "{}\n").read_text() == "{}\n"


def test_model_directories_leave_no_temporary_files(tmp_path, tiny_model):
    directory = tiny_model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]
