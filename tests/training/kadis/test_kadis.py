"""Tests of the KADIS-700k generator (``vtamiq-train make-kadis``) with the real distortions and labels."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vtamiq_metric.training.cli import make_kadis_main as main
from vtamiq_metric.training.distortions import apply_distortion
from vtamiq_metric.training.kadis import KadisGenerationError, KadisSettings, generate_kadis, image_seed, worker
from vtamiq_metric.training.labels import ms_ssim, vsi

REF_NAMES = ["a-fleshy-plant-1464418.png", "b.second.PNG", "c_dog.jpg", "d.bmp"]
HEADER = ["dist_img", "ref_img", "dist_type", "dist_level"]


def _make_refs(folder: Path, names: list[str] = REF_NAMES) -> Path:
    """48 x 64 RGB references with gradients and texture, plus a file that is not an image."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:64] / 64.0
    for i, name in enumerate(names):
        image = np.stack([0.5 + 0.4 * np.sin(6 * xx + i), xx * yy + 0.1 * i, 0.5 + 0.3 * np.cos(5 * yy)], axis=-1)
        image = image + 0.04 * rng.standard_normal(image.shape)
        Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def _write_ref_csv(path: Path, rows: list[tuple[str, int]]) -> Path:
    lines = ["ref_im,dist_type_1,dist_type_2"] + [f"{name},{type_id}," for name, type_id in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _read_scores(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _tensor(*images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(torch.float64) / 255.0


def test_make_kadis_with_kadis_ref_csv(tmp_path):
    refs = _make_refs(tmp_path / "ref_imgs")  # inside <out>: ref_img is written relative to <out>
    # KADIS-style CSV: blank third column, a name whose case differs from the file, type 15 (skipped by default)
    ref_csv = _write_ref_csv(
        tmp_path / "kadis700k_ref_imgs.csv",
        [("a-fleshy-plant-1464418.png", 7), ("B.second.png", 10), ("c_dog.jpg", 15), ("d.bmp", 23)],
    )
    common = ["--refs", str(refs), "--out", str(tmp_path), "--ref-csv", str(ref_csv), "--workers", "1", "--no-progress"]
    code = main([*common, "--label", "vsi,ms_ssim", "--seed", "5"])
    assert code == 0

    expected_files = [f"{stem}_{t:02d}_{lv:02d}.png" for stem, t in (("a-fleshy-plant-1464418", 7), ("b", 10),
                      ("d", 23)) for lv in range(1, 6)]  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "dist_imgs").iterdir()) == sorted(expected_files)

    header, rows = _read_scores(tmp_path / "kadis700k_scores.csv")
    assert header == [*HEADER, "vsi", "ms_ssim"]
    assert [r["dist_img"] for r in rows] == [
        f"dist_imgs/{name}" for name in expected_files
    ]  # sorted by ref, type, level
    assert [r["ref_img"] for r in rows[:5]] == ["ref_imgs/a-fleshy-plant-1464418.png"] * 5
    assert {r["ref_img"] for r in rows[5:10]} == {"ref_imgs/b.second.PNG"}
    assert [(int(r["dist_type"]), int(r["dist_level"])) for r in rows[10:]] == [(23, lv) for lv in range(1, 6)]

    # Each image is the real distortion with its derived seed, and each label is recomputable from the PNGs.
    for row in rows[10:]:
        ref = _load(tmp_path / row["ref_img"])
        dist = _load(tmp_path / row["dist_img"])
        level = int(row["dist_level"])
        expected = apply_distortion(ref, 23, level, seed=image_seed(5, "d.bmp", 23, level))
        np.testing.assert_array_equal(dist, expected)
        # (the generator runs single-threaded and batches the 5 levels; allow for float reduction order: piq filters
        # with a float32 conv2d whose sums depend on the batch size and thread count, measured 1.5e-8)
        assert float(row["vsi"]) == pytest.approx(float(vsi(_tensor(ref), _tensor(dist))), rel=0, abs=1e-12)
        assert float(row["ms_ssim"]) == pytest.approx(float(ms_ssim(_tensor(ref), _tensor(dist))), rel=0, abs=1e-6)
    assert all(0.0 <= float(r["vsi"]) <= 1.0 for r in rows)
    assert all(float(r["vsi"]) < 1.0 for r in rows if r["dist_type"] == "23")  # colour blocks always change pixels


def test_make_kadis_types_drawn_by_seed(tmp_path):
    refs = _make_refs(tmp_path / "refs")
    csv_a = generate_kadis(
        refs, tmp_path / "a", seed=3, types_per_ref=2, levels=[3, 1], labels=["vsi"], workers=1, progress=False
    )
    header, rows = _read_scores(csv_a)
    assert header == [*HEADER, "vsi"]
    assert len(rows) == 4 * 2 * 2
    assert {r["ref_img"] for r in rows} == {str((refs / name).resolve()) for name in REF_NAMES}  # outside <out>
    by_ref: dict[str, set[int]] = {}
    for row in rows:
        by_ref.setdefault(row["ref_img"], set()).add(int(row["dist_type"]))
        assert int(row["dist_level"]) in (1, 3)
        stem = Path(row["ref_img"]).name.split(".", 1)[0]
        assert row["dist_img"] == f"dist_imgs/{stem}_{int(row['dist_type']):02d}_{int(row['dist_level']):02d}.png"
    assert all(len(types) == 2 and 15 not in types for types in by_ref.values())
    # same seed, fresh folder and a subset of references: the same types and values for the common references
    csv_b = generate_kadis(
        refs, tmp_path / "b", seed=3, types_per_ref=2, levels=[1, 3], workers=1, limit=2, progress=False
    )
    assert _read_scores(csv_b)[1] == rows[:8]
    # another seed draws other types
    csv_c = generate_kadis(refs, tmp_path / "c", seed=4, types_per_ref=2, levels=[1], workers=1, progress=False)
    assert {(r["ref_img"], r["dist_type"]) for r in _read_scores(csv_c)[1]} != {
        (r["ref_img"], r["dist_type"]) for r in rows
    }


@pytest.mark.slow  # spawns worker processes
def test_output_does_not_depend_on_worker_count(tmp_path):
    refs = _make_refs(tmp_path / "refs")
    # random types (motion blur angle, noise, jitter, colour blocks) so that seeding matters
    ref_csv = _write_ref_csv(tmp_path / "types.csv", list(zip(REF_NAMES, (3, 11, 19, 23), strict=True)))
    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        path = generate_kadis(
            refs, out, ref_csv=ref_csv, levels=[2, 5], labels=["vsi"], workers=workers, progress=False
        )
        outputs[workers] = (path.read_bytes(), {p.name: p.read_bytes() for p in (out / "dist_imgs").iterdir()})
    assert outputs[1][0] == outputs[2][0]
    assert outputs[1][1] == outputs[2][1] and len(outputs[1][1]) == 8


def test_killed_run_resumes_without_duplicates(tmp_path, monkeypatch):
    refs = _make_refs(tmp_path / "refs")
    ref_csv = _write_ref_csv(tmp_path / "types.csv", list(zip(REF_NAMES, (11, 1, 20, 23), strict=True)))
    options = {"ref_csv": ref_csv, "labels": ["vsi"], "workers": 1, "progress": False}
    reference_csv = generate_kadis(refs, tmp_path / "uninterrupted", **options).read_text()

    out = tmp_path / "out"
    real_apply = worker.apply_distortion
    calls = {"n": 0}

    def dying_apply(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:  # the 8th image: first reference done, second half-way
            raise KeyboardInterrupt("simulated kill")
        return real_apply(*args, **kwargs)

    monkeypatch.setattr(worker, "apply_distortion", dying_apply)
    with pytest.raises(KeyboardInterrupt):
        generate_kadis(refs, out, **options)
    assert not (out / "kadis700k_scores.csv").exists()
    journal = (out / ".kadis_progress.jsonl").read_text().splitlines()
    assert [json.loads(line)["key"]["ref"] for line in journal] == ["a-fleshy-plant-1464418.png"]
    written = sorted((out / "dist_imgs").iterdir())
    assert len(written) == 7 and all(not p.name.startswith(".") for p in written)
    for path in written:
        _load(path)  # every file on disk is a complete PNG

    # A hard kill can also leave a temporary file, a duplicated record and a truncated last line behind.
    (out / "dist_imgs" / ".b_01_03.png.4242.tmp").write_bytes(b"\x89PNG partial")
    (out / ".kadis700k_scores.csv.4242.tmp").write_text("dist_img,ref_img")
    with (out / ".kadis_progress.jsonl").open("a") as handle:
        handle.write(journal[0] + "\n" + journal[0][: len(journal[0]) // 2])

    monkeypatch.setattr(worker, "apply_distortion", real_apply)
    counted = {"n": 0}

    def counting_apply(*args, **kwargs):
        counted["n"] += 1
        return real_apply(*args, **kwargs)

    monkeypatch.setattr(worker, "apply_distortion", counting_apply)
    path = generate_kadis(refs, out, **options)
    assert counted["n"] == 15  # the finished reference was not redone
    assert path.read_text() == reference_csv
    assert len(path.read_text().splitlines()) == 1 + 20
    assert not list((out / "dist_imgs").glob(".*")) and not list(out.glob("*.tmp"))

    # a finished run restarted with the same settings only rewrites the same CSV
    counted["n"] = 0
    assert generate_kadis(refs, out, **options).read_text() == reference_csv
    assert counted["n"] == 0


def test_corrupt_reference_is_reported_by_name(tmp_path, capsys):
    refs = _make_refs(tmp_path / "refs", REF_NAMES[:2])
    (refs / "e-broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    args = ["--refs", str(refs), "--out", str(tmp_path / "out"), "--workers", "1", "--no-progress", "--levels", "1"]
    with pytest.raises(KadisGenerationError, match=r"1 reference image\(s\) could not be processed: e-broken\.png: "):
        generate_kadis(refs, tmp_path / "out", levels=[1], workers=1, progress=False)
    assert not (tmp_path / "out" / "kadis700k_scores.csv").exists()
    assert main(args) == 1
    assert "e-broken.png" in capsys.readouterr().err
    assert main([*args, "--skip-bad-refs"]) == 0
    _, rows = _read_scores(tmp_path / "out" / "kadis700k_scores.csv")
    assert len(rows) == 2 and not any("e-broken" in r["dist_img"] for r in rows)


def test_bad_arguments_raise_with_messages(tmp_path):
    refs = _make_refs(tmp_path / "refs", ["x.one.png", "x.two.png"])
    with pytest.raises(ValueError, match=r"differ before their first '\.'.*x\.one\.png, x\.two\.png"):
        generate_kadis(refs, tmp_path / "out", workers=1, progress=False)
    with pytest.raises(ValueError, match=r"unknown label\(s\) \['fsim'\]; expected names among \['ms_ssim', 'vsi'\]"):
        generate_kadis(refs, tmp_path / "out", labels=["fsim"], workers=1)
    with pytest.raises(ValueError, match=r"expected levels in 1\.\.5, got 6"):
        generate_kadis(refs, tmp_path / "out", levels=[1, 6], workers=1)
    with pytest.raises(FileNotFoundError, match="expected refs to be an existing folder"):
        generate_kadis(tmp_path / "missing", tmp_path / "out")
    bad_type = _write_ref_csv(tmp_path / "bad.csv", [("x.one.png", 26)])
    with pytest.raises(ValueError, match=r"line 2: expected a distortion type id in 1\.\.25, got 26"):
        generate_kadis(refs, tmp_path / "out", ref_csv=bad_type, workers=1)
    missing = _write_ref_csv(tmp_path / "missing.csv", [("x.one.png", 1), ("nowhere.png", 2)])
    with pytest.raises(FileNotFoundError, match=r"1 reference\(s\) listed in .* are not in .*nowhere\.png"):
        generate_kadis(refs, tmp_path / "out", ref_csv=missing, workers=1)
    with pytest.raises(ValueError, match="expected types_per_ref=1 with ref_csv"):
        generate_kadis(refs, tmp_path / "out", ref_csv=missing, types_per_ref=2)
    with pytest.raises(SystemExit) as excinfo:
        main(["--refs", str(refs), "--out", str(tmp_path / "out"), "--label", "fsim"])
    assert excinfo.value.code == 2
    assert main(["--refs", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2


def test_settings_dataclass_or_keywords(tmp_path):
    refs = _make_refs(tmp_path / "refs", REF_NAMES[:2])
    settings = KadisSettings(seed=3, levels=[3, 1, 3], labels=["vsi", "vsi"], skip_types=[15, 2])
    assert (settings.levels, settings.labels, settings.skip_types) == ((1, 3), ("vsi",), (2, 15))
    by_settings = generate_kadis(refs, tmp_path / "a", settings, workers=1, progress=False).read_text()
    by_keywords = generate_kadis(refs, tmp_path / "b", seed=3, levels=[1, 3], skip_types=[2, 15], workers=1,
                                 progress=False).read_text()
    assert by_settings.replace("/a/", "/b/") == by_keywords
    with pytest.raises(TypeError, match="pass either a KadisSettings or its fields as keywords, not both"):
        generate_kadis(refs, tmp_path / "c", settings, seed=4)
    with pytest.raises(TypeError, match="unexpected keyword argument 'sed'"):
        generate_kadis(refs, tmp_path / "c", sed=4)
    with pytest.raises(ValueError, match="expected png_compress_level in 0..9, got 10"):
        KadisSettings(png_compress_level=10)
    with pytest.raises(ValueError, match="expected seed as a non-negative int, got -1"):
        KadisSettings(seed=-1)


_ORPHAN_SCRIPT = """
import os, sys, time
from vtamiq_metric.training.kadis.worker import make_executor

def busy(path):
    with open(path + ".tmp", "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(300)

if __name__ == "__main__":
    executor = make_executor(2)
    for i in range(2):
        executor.submit(busy, os.path.join(sys.argv[1], f"worker{i}"))
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for a reaper counts as gone)."""
    import os

    try:
        with open(f"/proc/{pid}/status") as handle:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in handle)
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


@pytest.mark.slow  # spawns a main process and its workers, then SIGKILLs the main one
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_workers_exit_when_the_main_process_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "main.py"
    script.write_text(_ORPHAN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    main_process = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env)
    try:
        files = [tmp_path / f"worker{i}" for i in range(2)]
        deadline = time.monotonic() + 240
        while not all(f.exists() for f in files):
            assert main_process.poll() is None and time.monotonic() < deadline, "workers did not start"
            time.sleep(0.2)
        pids = [int(f.read_text()) for f in files]
        assert all(_alive(pid) for pid in pids)
        # every child of the main process: the workers and multiprocessing's resource tracker
        for task in Path(f"/proc/{main_process.pid}/task").iterdir():
            pids += [int(pid) for pid in (task / "children").read_text().split() if int(pid) not in pids]
        assert len(pids) >= 3, pids
    finally:
        main_process.send_signal(signal.SIGKILL)
        main_process.wait()
    killed = time.monotonic()
    while any(_alive(pid) for pid in pids) and time.monotonic() - killed < 10:
        time.sleep(0.1)
    left = [pid for pid in pids if _alive(pid)]
    for pid in left:  # do not leak them into the rest of the session
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes {left} (workers, resource tracker) outlived their killed parent by 10 s"
