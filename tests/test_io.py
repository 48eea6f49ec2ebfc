"""``vtamiq_metric._io``: the one atomic write, and the writers that use it."""

from __future__ import annotations

import os
import threading
import time

import pytest

from vtamiq_metric._io import TMP_SUFFIX, atomic_path, atomic_write_text, temporary_name


def test_atomic_path_replaces_the_target_only_when_the_write_succeeds(tmp_path):
    target = tmp_path / "scores.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".scores.csv.") and tmp.name.endswith(TMP_SUFFIX)
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


def test_temporary_names_are_new_for_every_call_and_keep_the_target_name_recoverable(tmp_path):
    names = {temporary_name(tmp_path / "m.safetensors").name for _ in range(100)}
    assert len(names) == 100
    for name in names:  # the KADIS journal recovers the target's name this way to find stale files
        assert name[1:-len(TMP_SUFFIX)].rsplit(".", 1)[0] == "m.safetensors"


@pytest.mark.parametrize("same_file", [True, False], ids=["one-file", "one-folder"])
def test_threads_writing_into_one_folder_do_not_clash(tmp_path, same_file):
    # Issue 23 item 17: with the temporary file named by process id only, a thread renamed (or removed) another
    # thread's temporary file and the other one raised FileNotFoundError.
    threads, errors = 8, []
    barrier = threading.Barrier(threads)

    def write(index: int) -> None:
        try:
            barrier.wait()
            for step in range(25):
                name = "shared.json" if same_file else f"file{index}.json"
                atomic_write_text(tmp_path / name, f"{index} {step}\n" * 200)
        except Exception as exc:  # noqa: BLE001 - collected and reported by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=write, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == (["shared.json"] if same_file else sorted(f"file{i}.json" for i in range(threads)))
    for path in tmp_path.iterdir():
        lines = set(path.read_text().splitlines())
        assert len(lines) == 1  # one writer's whole file, never a mix
        if not same_file:
            assert lines.pop().split()[1] == "24"  # each thread's last write


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_saved_models_get_the_permissions_of_a_new_file_not_the_writers_private_ones(tmp_path, tiny_model):
    # safetensors' save_file creates its file 0o600; a model saved to share must be readable like any other file.
    umask = os.umask(0o022)
    try:
        directory = tiny_model.save_pretrained(tmp_path / "m")
    finally:
        os.umask(umask)
    assert {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir()} == {"model.safetensors": 0o644,
                                                                               "config.json": 0o644}
    target = tmp_path / "kept.txt"
    target.write_text("old")
    target.chmod(0o600)
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.stat().st_mode & 0o777 == 0o600  # a replaced file keeps its permissions


def test_threads_saving_one_figure_do_not_clash(tmp_path):
    # _plotting.save_figure named its temporary file by process id only: threads saving one path collided.
    pytest.importorskip("matplotlib")
    from vtamiq_metric._plotting import new_figure, save_figure

    errors: list[BaseException] = []

    def save() -> None:
        try:
            figure = new_figure(2, 2)
            figure.add_subplot().plot([0, 1], [0, 1])
            write = figure.savefig

            def slow_write(*args, **kwargs):  # widen the window between writing and renaming, so threads overlap
                write(*args, **kwargs)
                time.sleep(0.05)

            figure.savefig = slow_write
            for _ in range(3):
                save_figure(figure, tmp_path / "same.png")
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert (tmp_path / "same.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.png"]
