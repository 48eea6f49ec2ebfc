"""Tests of the KADIS-700k generator (``vtamiq-train make-kadis``) with the real distortions and labels."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vtamiq_metric.training.acceptance import read_kadis_pairs
from vtamiq_metric.training.cli import make_kadis_main as main
from vtamiq_metric.training.datasets import KADIS700kDataset
from vtamiq_metric.training.distortions import apply_distortion
from vtamiq_metric.training.kadis import KadisGenerationError, KadisSettings, generate_kadis, image_seed, worker
from vtamiq_metric.training.kadis.plan import plan
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
    assert {r["ref_img"] for r in rows} == {f"../refs/{name}" for name in REF_NAMES}  # outside <out>: relative too
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
    unknown = r"unknown label\(s\) \['fsim'\]; expected names among \['ms_ssim', 'teacher', 'vsi'\]"
    with pytest.raises(ValueError, match=unknown):
        generate_kadis(refs, tmp_path / "out", labels=["fsim"], workers=1)
    with pytest.raises(ValueError, match=r"expected levels in 1\.\.5, got 6"):
        generate_kadis(refs, tmp_path / "out", levels=[1, 6], workers=1)
    with pytest.raises(FileNotFoundError, match="expected refs to be an existing folder"):
        generate_kadis(tmp_path / "missing", tmp_path / "out")
    bad_type = _write_ref_csv(tmp_path / "bad.csv", [("x.one.png", 33)])
    with pytest.raises(ValueError, match=r"line 2: expected a distortion type id in 1\.\.32, got 33"):
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
    assert by_settings == by_keywords  # (the references are written relative to each output folder: ../refs/)
    with pytest.raises(TypeError, match="pass either a KadisSettings or its fields as keywords, not both"):
        generate_kadis(refs, tmp_path / "c", settings, seed=4)
    with pytest.raises(TypeError, match="unexpected keyword argument 'sed'"):
        generate_kadis(refs, tmp_path / "c", sed=4)
    with pytest.raises(ValueError, match="expected png_compress_level in 0..9, got 10"):
        KadisSettings(png_compress_level=10)
    with pytest.raises(ValueError, match="expected seed as a non-negative int, got -1"):
        KadisSettings(seed=-1)


# Names and draws computed with the generator before types 26 and up existed (commit a904bea): the KADIS type draw of
# a run without --extra-types must stay exactly this.
PLAN_NAMES = ["a-fleshy-plant-1464418.png", "b.second.PNG", "c_dog.jpg", "d.bmp", "I01.png", "zebra-9.jpg"]
PLANNED_BEFORE_EXTRA_TYPES = {
    (0, 1, (15,)): [(2,), (25,), (21,), (21,), (12,), (4,)],
    (3, 2, (15,)): [(11, 22), (8, 16), (19, 23), (14, 23), (12, 24), (1, 9)],
    (7, 3, ()): [(10, 18, 22), (12, 23, 24), (1, 11, 20), (7, 9, 24), (9, 18, 19), (6, 15, 24)],
    (123, 5, (2, 15)): [(9, 12, 21, 24, 25), (7, 8, 16, 19, 25), (1, 4, 14, 19, 24), (3, 9, 12, 20, 21),
                        (3, 5, 8, 23, 24), (3, 8, 9, 14, 25)],
}


def _empty_refs(folder: Path) -> Path:
    folder.mkdir()
    for name in PLAN_NAMES:
        (folder / name).write_bytes(b"")  # planning never decodes the images
    return folder


def test_kadis_draws_are_unchanged_by_the_additional_types(tmp_path):
    refs = _empty_refs(tmp_path / "refs")
    for (seed, count, skip), expected in PLANNED_BEFORE_EXTRA_TYPES.items():
        settings = KadisSettings(seed=seed, types_per_ref=count, skip_types=skip)
        tasks = plan(refs, tmp_path / "out", settings)
        assert [t.name for t in tasks] == sorted(PLAN_NAMES)
        assert [t.types for t in tasks] == [expected[PLAN_NAMES.index(t.name)] for t in tasks]
    # the journal key of a run without additional types is the one older versions wrote, so their journals resume
    task = plan(refs, tmp_path / "out", KadisSettings(seed=3, types_per_ref=2, levels=[1, 3]))[0]
    assert task.key() == {"format": 1, "ref": "I01.png", "types": [12, 24], "levels": [1, 3], "labels": ["vsi"],
                          "seed": 3}


def test_extra_types_come_on_top_of_the_same_kadis_types(tmp_path):
    refs = _empty_refs(tmp_path / "refs")
    kadis = PLANNED_BEFORE_EXTRA_TYPES[(3, 2, (15,))]
    every = plan(refs, tmp_path / "out", KadisSettings(seed=3, types_per_ref=2, extra_types=[29, 26, 27, 28]))
    assert [t.types for t in every] == [(*kadis[PLAN_NAMES.index(t.name)], 26, 27, 28, 29) for t in every]
    drawn = plan(refs, tmp_path / "out", KadisSettings(seed=3, types_per_ref=2, extra_types=[26, 27, 28],
                                                       extra_types_per_ref=1))
    extras = {t.name: t.types[2:] for t in drawn}
    assert {t.name: t.types[:2] for t in drawn} == {n: kadis[PLAN_NAMES.index(n)] for n in PLAN_NAMES}
    # the frozen stream of the additional draw (seeds.kadis_extra_type_rng)
    assert [extras[n] for n in PLAN_NAMES] == [(28,), (28,), (26,), (27,), (26,), (26,)]
    assert drawn[0].key()["types"] == [12, 24, 26]  # the key holds the additional types: resume is per setting
    skipped = plan(refs, tmp_path / "out", KadisSettings(seed=3, types_per_ref=2, extra_types=[26, 27],
                                                         skip_types=[15, 27]))
    assert all(t.types[2:] == (26,) for t in skipped)


def test_extra_type_settings_are_checked(tmp_path):
    refs = _empty_refs(tmp_path / "refs")
    with pytest.raises(ValueError, match=r"expected extra_types in 26\.\.32, got 5"):
        KadisSettings(extra_types=[5])
    with pytest.raises(TypeError, match="expected extra_types as a sequence of ints, got int 26"):
        KadisSettings(extra_types=26)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected extra_types .the pool to draw from. with extra_types_per_ref"):
        KadisSettings(extra_types_per_ref=1)
    with pytest.raises(ValueError,
                       match=r"expected extra_types_per_ref in 1\.\.2 \(the number of extra_types\), got 3"):
        KadisSettings(extra_types=[26, 27], extra_types_per_ref=3)
    with pytest.raises(ValueError, match=r"expected extra_types_per_ref in 1\.\.1 \(extra_types not skipped\), got 2"):
        plan(refs, tmp_path / "out", KadisSettings(extra_types=[26, 27], extra_types_per_ref=2, skip_types=[26]))
    with pytest.raises(ValueError, match=r"extra_types that are not all in skip_types, got extra_types \[26\]"):
        plan(refs, tmp_path / "out", KadisSettings(extra_types=[26], skip_types=[26]))
    assert KadisSettings(extra_types=[28, 26, 28]).extra_types == (26, 28)


def test_make_kadis_with_extra_types_writes_them(tmp_path, monkeypatch):
    refs = _make_refs(tmp_path / "refs", REF_NAMES[:2])
    plain = tmp_path / "plain"
    assert main(["--refs", str(refs), "--out", str(plain), "--levels", "2", "--workers", "1", "--no-progress"]) == 0
    out = tmp_path / "out"
    args = ["--refs", str(refs), "--out", str(out), "--levels", "2", "--workers", "1", "--no-progress",
            "--extra-types", "26-27", "29", "--extra-types-per-ref", "2"]
    assert main(args) == 0
    _, before = _read_scores(plain / "kadis700k_scores.csv")
    _, rows = _read_scores(out / "kadis700k_scores.csv")
    assert [r for r in rows if int(r["dist_type"]) <= 25] == before  # the KADIS part, byte for byte the same rows
    extra = [r for r in rows if int(r["dist_type"]) > 25]
    assert len(extra) == 2 * 2 and {int(r["dist_type"]) for r in extra} <= {26, 27, 29}
    for row in extra:
        ref = _load(out / row["ref_img"])
        type_id = int(row["dist_type"])
        expected = apply_distortion(ref, type_id, 2, seed=image_seed(0, Path(row["ref_img"]).name, type_id, 2))
        np.testing.assert_array_equal(_load(out / row["dist_img"]), expected)
        assert float(row["vsi"]) < 1.0
    # the journal key records the additional types: the same folder without them redoes the references
    keys = [json.loads(line)["key"] for line in (out / ".kadis_progress.jsonl").read_text().splitlines()]
    assert all(any(t > 25 for t in key["types"]) for key in keys)
    counted = {"n": 0}
    real_apply = worker.apply_distortion

    def counting_apply(*a, **k):
        counted["n"] += 1
        return real_apply(*a, **k)

    monkeypatch.setattr(worker, "apply_distortion", counting_apply)
    assert main(args[:-5]) == 0  # without --extra-types
    assert counted["n"] == 2
    assert _read_scores(out / "kadis700k_scores.csv")[1] == before


def test_csv_paths_are_relative_so_the_folder_can_move(tmp_path):
    data = tmp_path / "data"
    refs = _make_refs(data / "refs", REF_NAMES[:2])
    generate_kadis(refs, data / "kadis", levels=[1], extra_types=[26], workers=1, progress=False)
    _, rows = _read_scores(data / "kadis" / "kadis700k_scores.csv")
    assert {r["ref_img"] for r in rows} == {f"../refs/{n}" for n in REF_NAMES[:2]}
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(str(data), str(moved))
    dataset = KADIS700kDataset(moved / "kadis", linearize=False)
    assert len(dataset) == 4
    assert {r.ref for r in dataset.records} == {(moved / "refs" / n).resolve() for n in REF_NAMES[:2]}
    assert all(r.dist.is_file() and r.dist.is_relative_to(moved.resolve()) for r in dataset.records)
    assert {r.dist_type for r in dataset.records} == {f"{int(r['dist_type']):02d}" for r in rows}
    assert sum(r.dist_type == "26" for r in dataset.records) == 2  # ids above 25 are read like the others
    assert len(KADIS700kDataset(moved / "kadis", exclude_types=[26])) == 2  # ids above 25 can be excluded too
    pairs = read_kadis_pairs(moved / "kadis")
    assert all(p["ref"].is_file() and p["dist"].is_file() for p in pairs)


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
