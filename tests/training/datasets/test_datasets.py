"""Dataset readers on tiny synthetic copies of each official on-disk layout (docs/background/datasets.md §1)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vtamiq_metric.training.datasets import (
    DATASETS,
    CSIQDataset,
    IQADataset,
    KADIS700kDataset,
    LIVEDataset,
    PairwiseDataset,
    PairwiseRecord,
    PieAPPPairwiseDataset,
    get_dataset,
    histogram_equalize,
    logistic5,
    natural_key,
    process_scores,
)

RNG = np.random.default_rng(0)


def _img(path: Path, size: tuple[int, int] = (8, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def _write_csv(path: Path, rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def _check_targets(ds: IQADataset, higher_is_better: bool) -> None:
    """Targets in [0, 1], 0 = best, spanning the range, and a monotone function of the raw score."""
    scores, targets = ds.scores(), ds.targets()
    assert targets.min() == pytest.approx(0.0, abs=1e-12) and targets.max() == pytest.approx(1.0, abs=1e-12)
    order = np.argsort(scores, kind="stable")
    steps = np.diff(targets[order])
    if higher_is_better:
        assert np.all(steps <= 1e-12), "targets must decrease as a higher-is-better score increases"
    else:
        assert np.all(steps >= -1e-12), "targets must increase as a lower-is-better score increases"
    best = np.argmax(scores) if higher_is_better else np.argmin(scores)
    assert targets[best] == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------------------------------------------------
# LIVE
# ----------------------------------------------------------------------------------------------------------------------

# label index -> (folder/file, reference); all other entries are orgs == 1
_LIVE_KEPT = {
    0: ("jp2k/img1.bmp", "bikes.bmp"),
    1: ("jp2k/img2.bmp", "caps.bmp"),
    227: ("jpeg/img1.bmp", "bikes.bmp"),
    462: ("wn/img3.bmp", "caps.bmp"),
    634: ("gblur/img1.bmp", "bikes.bmp"),
    981: ("fastfading/img174.bmp", "caps.bmp"),
}


def _make_live(root: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import savemat

    n = 982
    orgs = np.ones((1, n))
    names = np.array([["bikes.bmp" if i % 2 else "caps.bmp" for i in range(n)]], dtype=object)
    for i, (_, ref) in _LIVE_KEPT.items():
        orgs[0, i] = 0
        names[0, i] = ref
    realigned = RNG.uniform(-2.0, 110.0, (1, n))
    original = RNG.uniform(0.0, 100.0, (1, n))
    savemat(root / "dmos_realigned.mat", {"dmos_new": realigned, "orgs": orgs, "dmos_std": np.ones((1, n))})
    savemat(root / "dmos.mat", {"dmos": original, "orgs": orgs})
    savemat(root / "refnames_all.mat", {"refnames_all": names})
    for ref in ("bikes.bmp", "caps.bmp"):
        _img(root / "refimgs" / ref)
    for rel, _ in _LIVE_KEPT.values():
        _img(root / rel)
    return realigned.ravel(), original.ravel()


def test_live_positional_mapping_orgs_and_direction(tmp_path: Path) -> None:
    realigned, original = _make_live(tmp_path)
    ds = get_dataset("live", tmp_path)
    assert isinstance(ds, LIVEDataset) and len(ds) == len(_LIVE_KEPT)
    by_dist = {r.dist.relative_to(tmp_path).as_posix(): r for r in ds}
    for i, (rel, ref) in _LIVE_KEPT.items():
        rec = by_dist[rel]
        assert rec.score == pytest.approx(realigned[i])
        assert rec.ref == tmp_path / "refimgs" / ref and rec.ref_id == Path(ref).stem
        assert rec.dist_type == rel.split("/")[0] and rec.level is None
    assert ds.ref_ids() == ["bikes", "caps"]
    _check_targets(ds, higher_is_better=False)
    orig = LIVEDataset(tmp_path, scores="original")
    assert sorted(orig.scores()) == pytest.approx(sorted(original[list(_LIVE_KEPT)]))


def test_live_missing_image_and_corrupt_mat_are_named(tmp_path: Path) -> None:
    _make_live(tmp_path)
    (tmp_path / "wn" / "img3.bmp").unlink()
    with pytest.raises(FileNotFoundError, match=r"dmos_realigned\.mat: wn/img3\.bmp"):
        LIVEDataset(tmp_path)
    skipped = LIVEDataset(tmp_path, skip_missing=True)
    assert len(skipped) == len(_LIVE_KEPT) - 1
    (tmp_path / "refnames_all.mat").write_bytes(b"this is not a mat file")
    with pytest.raises(ValueError, match=r"refnames_all\.mat"):
        LIVEDataset(tmp_path, skip_missing=True)


def test_live_rejects_inconsistent_lengths(tmp_path: Path) -> None:
    _make_live(tmp_path)
    with pytest.raises(ValueError, match=r"dmos_realigned\.mat.*982"):
        LIVEDataset(tmp_path, blocks=(("jp2k", 10),))


# ----------------------------------------------------------------------------------------------------------------------
# CSIQ
# ----------------------------------------------------------------------------------------------------------------------

# image, dst_idx, dst_type, level, dmos, file on disk (folder case as in the iqadataset re-pack for awgn)
_CSIQ_ROWS = [
    (1600, 1, "noise", 1, 0.062, "dst_imgs/AWGN/1600.AWGN.1.png"),
    (1600, 3, "jpeg 2000", 2, 0.171, "dst_imgs/jpeg2000/1600.jpeg2000.2.png"),
    (1600, 4, "fnoise", 5, 0.554, "dst_imgs/fnoise/1600.fnoise.5.png"),
    ("aerial_city", 5, "blur", 3, 0.305, "dst_imgs/blur/aerial_city.BLUR.3.png"),
    ("aerial_city", 6, "contrast", 4, 0.702, "dst_imgs/contrast/aerial_city.contrast.4.png"),
    ("aerial_city", 2, "jpeg", 1, 0.011, "dst_imgs/jpeg/aerial_city.JPEG.1.png"),
    ("aerial_city", 1, "noise", 2, 0.122, "dst_imgs/AWGN/aerial_city.AWGN.2.png"),
]


def _make_csiq_images(root: Path) -> None:
    for name in ("1600", "aerial_city"):
        _img(root / "src_imgs" / f"{name}.png")
    for row in _CSIQ_ROWS:
        _img(root / row[5])


def _make_csiq_xlsx(path: Path, rows: list[tuple]) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "all_by_image"
    book.create_sheet("all_by_distortion")
    sheet["A1"] = "CSIQ DMOS"
    sheet["A2"] = "Larson & Chandler"
    for col, name in zip("DEFGHI", ("image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"), strict=True):
        sheet[f"{col}4"] = name
    for r, (image, idx, dtype, lev, dmos, _) in enumerate(rows, start=5):
        for col, value in zip("DEFGHI", (image, idx, dtype, lev, 0.01, dmos), strict=True):
            sheet[f"{col}{r}"] = value
    book.save(path)


def test_csiq_xlsx_numeric_names_type_map_and_case(tmp_path: Path) -> None:
    _make_csiq_images(tmp_path)
    _make_csiq_xlsx(tmp_path / "csiq.DMOS.xlsx", _CSIQ_ROWS)
    ds = get_dataset("csiq", tmp_path)
    assert len(ds) == len(_CSIQ_ROWS)
    assert ds.ref_ids() == ["1600", "aerial_city"]
    for rec, row in zip(ds, _CSIQ_ROWS, strict=True):
        assert rec.dist == tmp_path / row[5]  # the real (upper-case AWGN/) folder name is returned
        assert rec.ref == tmp_path / "src_imgs" / f"{row[0]}.png" and rec.ref_id == str(row[0])
        assert rec.score == pytest.approx(row[4]) and rec.level == row[3]
    assert [r.dist_type for r in ds][:2] == ["awgn", "jpeg2000"]
    _check_targets(ds, higher_is_better=False)


def test_csiq_csv_export_and_errors(tmp_path: Path) -> None:
    _make_csiq_images(tmp_path)
    header = ["image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"]
    _write_csv(tmp_path / "DMOS.csv", [header] + [[r[0], r[1], r[2], r[3], 0.01, r[4]] for r in _CSIQ_ROWS])
    ds = CSIQDataset(tmp_path)
    assert [r.score for r in ds] == pytest.approx([r[4] for r in _CSIQ_ROWS])

    bad = [header, [1600, 2, "blur", 1, 0.01, 0.3]]  # dst_idx says jpeg, dst_type says blur
    _write_csv(tmp_path / "bad.csv", bad)
    with pytest.raises(ValueError, match=r"bad\.csv: line 2: dst_idx 2 does not match dst_type 'blur'"):
        CSIQDataset(tmp_path, label_file="bad.csv")

    (tmp_path / "dst_imgs" / "blur" / "aerial_city.BLUR.3.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"dst_imgs/blur/aerial_city\.BLUR\.3\.png"):
        CSIQDataset(tmp_path)


def test_csiq_without_label_file_names_candidates(tmp_path: Path) -> None:
    _make_csiq_images(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"csiq\.DMOS\.xlsx"):
        CSIQDataset(tmp_path)


# ----------------------------------------------------------------------------------------------------------------------
# TID2013
# ----------------------------------------------------------------------------------------------------------------------

# name in the label file, name on disk, MOS
_TID_ROWS = [
    ("i01_01_1.bmp", "i01_01_1.bmp", 5.51429),
    ("i01_11_1.bmp", "I01_11_1.BMP", 4.10000),
    ("I01_13_1.bmp", "I01_13_1.BMP", 3.2),
    ("i01_02_5.bmp", "i01_02_5.bmp", 0.242),
    ("i25_24_5.bmp", "i25_24_5.bmp", 2.5),
    ("i25_08_1.bmp", "I25_08_1.bmp", 5.52941),
    ("i25_17_3.bmp", "i25_17_3.BMP", 7.214),
]


def _make_tid(root: Path) -> None:
    _img(root / "reference_images" / "I01.BMP")
    _img(root / "reference_images" / "i25.bmp")
    for _, on_disk, _ in _TID_ROWS:
        _img(root / "distorted_images" / on_disk)
    text = "".join(f"{mos} {name}\r\n" for name, _, mos in _TID_ROWS)
    (root / "mos_with_names.txt").write_bytes(text.encode())


def test_tid2013_case_resolution_and_direction(tmp_path: Path) -> None:
    _make_tid(tmp_path)
    ds = get_dataset("tid2013", tmp_path)
    assert len(ds) == len(_TID_ROWS)
    for rec, (_, on_disk, mos) in zip(ds, _TID_ROWS, strict=True):
        assert rec.dist == tmp_path / "distorted_images" / on_disk
        assert rec.score == pytest.approx(mos)
    assert ds.ref_ids() == ["I01", "I25"]
    assert {r.ref.name for r in ds if r.ref_id == "I25"} == {"i25.bmp"}
    assert {r.ref.name for r in ds if r.ref_id == "I01"} == {"I01.BMP"}
    assert (ds[1].dist_type, ds[1].level) == ("11", 1)
    _check_targets(ds, higher_is_better=True)


def test_tid2013_bad_line_is_named(tmp_path: Path) -> None:
    _make_tid(tmp_path)
    with open(tmp_path / "mos_with_names.txt", "a") as fh:
        fh.write("not-a-number i01_03_1.bmp\n")
    with pytest.raises(ValueError, match=r"mos_with_names\.txt: line 8.*'mos'"):
        get_dataset("tid2013", tmp_path)


def test_exact_case_wins_and_ambiguity_is_reported(tmp_path: Path) -> None:
    _make_tid(tmp_path)
    _img(tmp_path / "distorted_images" / "I01_01_1.BMP")  # now i01_01_1.bmp and I01_01_1.BMP both exist
    assert get_dataset("tid2013", tmp_path)[0].dist.name == "i01_01_1.bmp"  # the label's exact spelling wins
    lines = (tmp_path / "mos_with_names.txt").read_text().splitlines()
    lines[0] = "5.51429 I01_01_1.bmp"  # matches both case-insensitively, neither exactly
    (tmp_path / "mos_with_names.txt").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"ambiguous.*I01_01_1\.bmp"):
        get_dataset("tid2013", tmp_path)


def test_validate_images_names_undecodable_file(tmp_path: Path) -> None:
    _make_tid(tmp_path)
    (tmp_path / "distorted_images" / "i25_24_5.bmp").write_bytes(b"BM not really a bitmap")
    assert len(get_dataset("tid2013", tmp_path)) == len(_TID_ROWS)  # existence only by default
    with pytest.raises(ValueError, match=r"i25_24_5\.bmp"):
        get_dataset("tid2013", tmp_path, validate_images=True)


def test_subset_keeps_class_and_targets(tmp_path: Path) -> None:
    _make_tid(tmp_path)
    ds = get_dataset("tid2013", tmp_path)
    sub = ds.subset(["I25"])
    assert type(sub) is type(ds) and sub.ref_ids() == ["I25"] and len(ds) == len(_TID_ROWS)
    full = {r.dist: r.target for r in ds}
    assert all(full[r.dist] == r.target for r in sub)
    assert len(ds.subset([])) == 0
    with pytest.raises(ValueError, match="I99"):
        ds.subset(["I01", "I99"])
    with pytest.raises(TypeError):
        ds.subset("I01")


# ----------------------------------------------------------------------------------------------------------------------
# KADID-10k
# ----------------------------------------------------------------------------------------------------------------------

_KADID_ROWS = [
    ("I01_01_01.png", "I01.png", 4.57),
    ("I01_01_05.png", "I01.png", 1.53),
    ("I01_10_03.png", "I01.png", 2.9),
    ("I02_25_02.png", "I02.png", 3.93),
    ("I02_07_04.png", "I02.png", 2.2),
    ("I10_18_01.png", "I10.png", 4.93),
]


@pytest.mark.parametrize("split_folders", [False, True])
def test_kadid10k_layouts(tmp_path: Path, split_folders: bool) -> None:
    ref_dir = tmp_path / ("reference_images" if split_folders else "images")
    dist_dir = tmp_path / ("distorted_images" if split_folders else "images")
    for dist, ref, _ in _KADID_ROWS:
        _img(ref_dir / ref)
        _img(dist_dir / dist)
    _write_csv(
        tmp_path / "dmos.csv", [["dist_img", "ref_img", "dmos", "var"]] + [[d, r, m, 0.5] for d, r, m in _KADID_ROWS]
    )
    ds = get_dataset("kadid10k", tmp_path)
    assert len(ds) == len(_KADID_ROWS)
    assert ds.ref_ids() == ["I01", "I02", "I10"]
    assert (ds[3].dist_type, ds[3].level, ds[3].dist) == ("25", 2, dist_dir / "I02_25_02.png")
    _check_targets(ds, higher_is_better=True)


def test_kadid10k_header_error_names_file(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    _write_csv(tmp_path / "dmos.csv", [["image", "reference", "score"], ["a.png", "b.png", "1"]])
    with pytest.raises(ValueError, match=r"dmos\.csv: expected header columns.*dist_img"):
        get_dataset("kadid10k", tmp_path)


# ----------------------------------------------------------------------------------------------------------------------
# KADIS-700k (our generated layout)
# ----------------------------------------------------------------------------------------------------------------------


def _make_kadis(parent: Path) -> tuple[Path, list[list[object]]]:
    root = parent / "kadis700k"
    refs = ["a-fleshy.plant-1464418.png", "b_tree-22.png"]
    for ref in refs:
        _img(root / "ref_imgs" / ref)
    outside_ref = parent / "elsewhere" / "c-sky.png"
    _img(outside_ref)
    rows: list[list[object]] = [["dist_img", "ref_img", "dist_type", "dist_level", "vsi", "ms_ssim"]]
    vsi = [0.999, 0.97, 0.91, 0.85, 0.993, 0.88, 0.95, 0.80]
    for k, v in enumerate(vsi):
        ref = refs[k % 2] if k < 6 else str(outside_ref)
        stem = Path(ref).name.split(".")[0]
        rel = f"dist_imgs/{stem}_{7 if k < 4 else 15:02d}_{k % 5 + 1:02d}.png"
        _img(root / rel)
        rows.append([rel, ref if k >= 6 else f"ref_imgs/{ref}", 7 if k < 4 else 15, k % 5 + 1, v, 1 - v / 2])
    _write_csv(root / "kadis700k_scores.csv", rows)
    return root, rows


def test_kadis700k_parent_root_targets_and_options(tmp_path: Path) -> None:
    root, rows = _make_kadis(tmp_path)
    vsi = np.array([r[4] for r in rows[1:]], dtype=float)
    plain = get_dataset("kadis700k", tmp_path, linearize=False)  # parent folder holding kadis700k/
    assert plain.root == root.resolve() and len(plain) == len(vsi)
    assert plain.targets() == pytest.approx(1.0 - vsi)  # 1 - similarity, 0 = identical
    assert plain[6].ref == tmp_path / "elsewhere" / "c-sky.png"  # absolute ref_img
    assert plain[0].ref_id == "a-fleshy.plant-1464418.png" and plain[6].ref_id == "c-sky.png"
    assert (plain[0].dist_type, plain[0].level) == ("07", 1)
    eq = KADIS700kDataset(root)  # histogram-equalised 1 - VSI
    _check_targets(eq, higher_is_better=True)
    ms = KADIS700kDataset(root, label="MS_SSIM", linearize=False)
    assert ms.scores() == pytest.approx([r[5] for r in rows[1:]])
    no15 = KADIS700kDataset(root, exclude_types=[15])
    assert len(no15) == 4 and {r.dist_type for r in no15} == {"07"}


def test_kadis700k_errors(tmp_path: Path) -> None:
    root, _ = _make_kadis(tmp_path)
    with pytest.raises(ValueError, match=r"kadis700k_scores\.csv: expected a label column 'fsim'.*vsi"):
        KADIS700kDataset(root, label="fsim")
    with pytest.raises(FileNotFoundError, match=r"kadis700k_scores\.csv"):
        KADIS700kDataset(tmp_path / "elsewhere")
    rows = (root / "kadis700k_scores.csv").read_text().splitlines()
    (root / "kadis700k_scores.csv").write_text(
        "\n".join([*rows, f"dist_imgs/x_01_01.png,{tmp_path}/b_tree-22.png,1,1,0.9,0.5"])
    )
    with pytest.raises(ValueError, match=r"line 10: expected reference file names to be unique.*b_tree-22\.png"):
        KADIS700kDataset(root)
    (root / "kadis700k_scores.csv").write_text("\n".join(rows))
    (root / "ref_imgs" / "b_tree-22.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"kadis700k_scores\.csv: ref_imgs/b_tree-22\.png"):
        KADIS700kDataset(root)


# ----------------------------------------------------------------------------------------------------------------------
# PieAPP
# ----------------------------------------------------------------------------------------------------------------------


def _make_pieapp(root: Path) -> None:
    header = [
        "reference image",
        " distorted image A",
        " distorted image B",
        " raw probability of preference for A",
        " processed probability of preference for A",
    ]
    for n in (2, 10):  # natural order puts ref_2 before ref_10
        ref = f"ref_{n}.png"
        _img(root / "reference_images" / "train" / ref)
        names = [f"distort_{n}_blur_inter_{k}.png" for k in range(3)]
        for name in names:
            _img(root / "distorted_images" / "train" / f"ref_{n}" / name)
        rows = [
            header,
            [ref, names[0], names[1], "0.9", "0.85"],
            [ref, names[1], names[2], "", "0.3"],  # blank raw probability
            [ref, names[0], names[2], "0.7", "0.75"],
        ]
        _write_csv(root / "labels" / "train" / f"ref_{n}_pairwise_labels.csv", rows)
    ref = "ref_161.png"
    _img(root / "reference_images" / "test" / ref)
    scores = {
        "distort_161_deblurTikanov_motion_1.png": 1.3,
        "distort_161_jpeg_2.png": 0.2,
        "distort_161_noise_3.png": 2.7,
    }
    for name in scores:
        _img(root / "distorted_images" / "test" / "ref_161" / name)
    _write_csv(
        root / "labels" / "test" / "ref_161_per_image_score.csv",
        [["reference image", " distorted image", " score for distorted image"]]
        + [[ref, ref, 0.0]]
        + [[ref, name, s] for name, s in scores.items()],
    )
    (root / "test_reference_list.txt").write_text("ref_161.png\n")


def test_pieapp_pairwise_records(tmp_path: Path) -> None:
    _make_pieapp(tmp_path)
    ds = get_dataset("pieapp", tmp_path)
    assert isinstance(ds, PieAPPPairwiseDataset) and isinstance(ds, PairwiseDataset)
    assert len(ds) == 6 and all(isinstance(r, PairwiseRecord) for r in ds)
    assert [r.ref_id for r in ds] == ["ref_2"] * 3 + ["ref_10"] * 3
    assert ds.probabilities()[:3] == pytest.approx([0.85, 0.3, 0.75])  # processed column
    first = ds[0]
    assert first.dist_a.parent == tmp_path / "distorted_images" / "train" / "ref_2"
    assert first.ref == tmp_path / "reference_images" / "train" / "ref_2.png"
    raw = PieAPPPairwiseDataset(tmp_path, probability="raw")
    assert len(raw) == 4 and raw.probabilities()[:2] == pytest.approx([0.9, 0.7])
    assert ds.subset(["ref_10"]).ref_ids() == ["ref_10"]


def test_pieapp_pairwise_errors(tmp_path: Path) -> None:
    _make_pieapp(tmp_path)
    path = tmp_path / "labels" / "train" / "ref_10_pairwise_labels.csv"
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    rows[2][4] = "1.7"
    _write_csv(path, rows)
    with pytest.raises(ValueError, match=r"ref_10_pairwise_labels\.csv: line 3: expected a probability in \[0, 1\]"):
        PieAPPPairwiseDataset(tmp_path)
    with pytest.raises(ValueError, match="parts"):
        PieAPPPairwiseDataset(tmp_path, parts=("test",))


def test_pieapp_test_scores(tmp_path: Path) -> None:
    _make_pieapp(tmp_path)
    ds = get_dataset("pieapp_test", tmp_path)
    assert len(ds) == 3 and ds.ref_ids() == ["ref_161"]  # the reference's own row is not a pair
    assert ds.scores() == pytest.approx([1.3, 0.2, 2.7])
    _check_targets(ds, higher_is_better=False)
    assert not ds.linearize


# ----------------------------------------------------------------------------------------------------------------------
# PIPAL and generic CSV
# ----------------------------------------------------------------------------------------------------------------------


def test_pipal_distortion_folders(tmp_path: Path) -> None:
    elo = {
        "A0001_00_00.bmp": 1520.06,
        "A0001_01_03.bmp": 1210.5,
        "A0001_10_01.bmp": 1836.0,
        "A0002_00_01.bmp": 916.7,
        "A0002_05_00.bmp": 1400.2,
        "A0002_39_02.bmp": 1111.1,
    }
    for k, name in enumerate(elo):
        _img(tmp_path / f"Distortion_{k % 2 + 1}" / name)
    for ref in ("A0001", "A0002"):
        _img(tmp_path / "Train_Ref" / f"{ref}.bmp")
        lines = [f"{n},{v}" for n, v in elo.items() if n.startswith(ref)]
        (tmp_path / "Train_Label").mkdir(exist_ok=True)
        (tmp_path / "Train_Label" / f"{ref}.txt").write_text("\n".join(lines) + "\n")
    ds = get_dataset("pipal", tmp_path)
    assert len(ds) == 6 and ds.ref_ids() == ["A0001", "A0002"]
    assert ds[1].dist == tmp_path / "Distortion_2" / "A0001_01_03.bmp" and ds[1].dist_type == "01"
    _check_targets(ds, higher_is_better=True)


def test_generic_csv(tmp_path: Path) -> None:
    rows = [["ref", "dist", "score", "ref_id"]]
    for k in range(6):
        ref = f"refs/r{k % 2}.png"
        _img(tmp_path / ref)
        _img(tmp_path / f"d/{k}.PNG")
        rows.append([ref, f"d/{k}.png", k * 1.5, f"scene{k % 2}"])
    _write_csv(tmp_path / "pairs.csv", rows)
    ds = get_dataset("csv", tmp_path / "pairs.csv", higher_is_better=True)
    assert len(ds) == 6 and ds.ref_ids() == ["scene0", "scene1"] and ds.higher_is_better
    assert ds[0].dist == tmp_path / "d" / "0.PNG"
    _check_targets(ds, higher_is_better=True)
    low = get_dataset("csv", tmp_path / "pairs.csv", higher_is_better=False, linearize=False)
    assert low.targets() == pytest.approx(np.arange(6) / 5)
    with pytest.raises(TypeError, match="higher_is_better"):
        get_dataset("csv", tmp_path / "pairs.csv", higher_is_better="yes")
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        get_dataset("csv", tmp_path / "nope.csv", higher_is_better=True)


# ----------------------------------------------------------------------------------------------------------------------
# Registry and targets
# ----------------------------------------------------------------------------------------------------------------------


def test_registry() -> None:
    assert set(DATASETS) == {
        "live",
        "csiq",
        "tid2013",
        "kadid10k",
        "kadis700k",
        "pieapp",
        "pieapp_test",
        "pipal",
        "csv",
    }
    assert all(cls.name == key for key, cls in DATASETS.items())
    with pytest.raises(ValueError, match=r"unknown dataset 'koniq'.*tid2013"):
        get_dataset("koniq", ".")
    with pytest.raises(FileNotFoundError, match="tid2013"):
        get_dataset("TID2013", "/nonexistent/folder")


def test_natural_key_order() -> None:
    assert sorted(["ref_10", "ref_2", "ref_1", "I10", "I9"], key=natural_key) == [
        "I9",
        "I10",
        "ref_1",
        "ref_2",
        "ref_10",
    ]


def test_histogram_equalize_is_monotone_and_flattens() -> None:
    rng = np.random.default_rng(1)
    scores = rng.beta(2.0, 8.0, 2000)
    eq = histogram_equalize(scores)
    order = np.argsort(scores)
    assert np.all(np.diff(eq[order]) >= -1e-12) and eq.min() == 0.0 and eq.max() == 1.0
    uniform = np.linspace(0, 1, scores.size)
    ks_before = np.abs(np.sort((scores - scores.min()) / np.ptp(scores)) - uniform).max()
    ks_after = np.abs(np.sort(eq) - uniform).max()
    assert ks_after < 0.1 < ks_before


def test_process_scores_direction_and_errors() -> None:
    mos = np.array([1.0, 5.0, 3.0, 2.0, 4.5, 2.5, 3.5])
    t = process_scores(mos, higher_is_better=True, linearize=False)
    assert t == pytest.approx((5.0 - mos) / 4.0)
    t_eq = process_scores(mos, higher_is_better=True, linearize=True)
    assert np.argmin(t_eq) == 1 and np.argmax(t_eq) == 0
    with pytest.raises(ValueError, match="all equal"):
        process_scores([2.0, 2.0, 2.0], higher_is_better=False, linearize=True)
    with pytest.raises(ValueError, match="non-finite"):
        process_scores([1.0, np.nan], higher_is_better=False, linearize=False)
    assert logistic5(np.array([1e6, -1e6]), 1.0, 1.0, 0.0, 0.0, 0.0) == pytest.approx([0.5, -0.5])
