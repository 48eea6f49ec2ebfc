"""benchmarks/eval_model.py and the model card of examples/bundled_model/finalize.py: every check, or only some."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def eval_model():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import eval_model
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return eval_model


@pytest.fixture(scope="module")
def finalize():
    return runpy.run_path(str(ROOT / "examples" / "bundled_model" / "finalize.py"))


#: What ``eval_model.py --quick`` writes (checks 1-3), with made-up figures.
QUICK = {
    "model": "m", "parameters": 1, "patches": 16, "heldout_photos": 2, "quick": True, "complete": True,
    "loss": {"pixel_optimisation": {
        "0.05": {"psnr_before": [20.0], "psnr_after": [19.0], "improved_psnr": 0.0, "improved_vsi": 0.5,
                 "improved_teacher": 0.25, "mean_psnr_change": -1.0, "mean_teacher_change": 0.1, "pairs": 6,
                 "steps": 60, "lr": 0.05}}},
    "stacking": {"per_scorer": {s: {"share": v, "by_second": {"colour_cast": v, "contrast": 1.0},
                                    "by_first": {"jpeg": v}}
                                for s, v in (("model", 0.73), ("teacher", 0.96), ("vsi", 0.9), ("psnr", 1.0))},
                 "cases": 10, "candidates": 12, "cases_by_second": {"colour_cast": 6, "contrast": 4}, "crop": 256,
                 "min_cost_db": 1.0, "photos": 2},
    "restoration_alone": {"denoise": {
        "task": "denoise", "degradation": ["white_noise", 0.08], "steps": 150,
        "degraded": {"psnr": 22.0, "vsi": 0.92, "teacher": 3.0, "cast": 0.2, "cast_max": 0.4},
        "restored": {"psnr": 16.0, "vsi": 0.9, "teacher": 4.0, "cast": 30.0, "cast_max": 38.5},
        "psnr_change": -6.0, "teacher_change": 1.0, "improved_psnr": 0.0, "improved_teacher": 0.0, "images": 2}},
}


def test_spread_picks_evenly_spaced_items(eval_model):
    assert eval_model.spread(list(range(10)), 3) == [0, 4, 9]  # 0, 4.5 -> 4 (round half to even), 9
    assert eval_model.spread(list(range(10)), 2) == [0, 9]
    assert eval_model.spread(list(range(4)), 0) == [0, 1, 2, 3] == eval_model.spread(list(range(4)), 9)


def test_summary_and_card_render_a_quick_evaluation(eval_model, finalize):
    text = eval_model.summary(QUICK)
    stacks = "| 2 | stacks scored worse than their first part (10 cases costing >= 1.0 dB) | 0.73 | 0.96 | 0.90 | 1.00"
    assert stacks in text
    assert "38.5 / 255" in text and "22.00 -> 16.00 dB" in text and "| 1 |" in text
    card = finalize["_evaluation_section"](QUICK)
    assert "**Quick run**" in card
    assert "| 2. ... second distortion colour_cast (6 stacks) | 0.73 | 0.96 | 0.90 | 1.00 |" in card
    assert "3.000 -> 4.000" in card and "0.25" in card
    summary = finalize["_heldout_summary"](QUICK)
    assert summary["stacking"]["model"]["share"] == 0.73 and "severity_pair_accuracy" not in summary
    assert "psnr_before" not in summary["pixel_optimisation"]["0.05"]


def test_card_renders_an_evaluation_without_any_check(finalize):
    bare = {"heldout_photos": 3, "patches": 16}
    assert "On photographs the model never saw: 3 held-out photographs" in finalize["_evaluation_section"](bare)
    assert finalize["_heldout_summary"](bare) == {}


def _textured(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([0.5 + 0.4 * np.sin(9 * xx + seed), 0.3 + 0.5 * xx * yy, 0.5 + 0.3 * np.cos(7 * yy)], axis=-1)
    return (np.clip(image + 0.05 * rng.standard_normal(image.shape), 0, 1) * 255).astype(np.uint8)


def _data(root: Path, teacher_column: bool = True) -> dict[str, Path]:
    """Held-out photographs and KADIS-style crops, training crops and a TID2013-like fragment, all synthetic."""
    for folder in ("heldout/photos", "heldout/ref_imgs", "heldout/dist_imgs", "train", "tid/reference_images",
                   "tid/distorted_images"):
        (root / folder).mkdir(parents=True)
    rows = ["dist_img,ref_img,dist_type,dist_level,vsi,teacher"]
    for i in range(2):
        Image.fromarray(_textured(96, 128, i)).save(root / "heldout" / "photos" / f"p{i}.png")
        Image.fromarray(_textured(64, 64, 10 + i)).save(root / "train" / f"t{i}.png")
        ref = _textured(48, 48, 20 + i)
        Image.fromarray(ref).save(root / "heldout" / "ref_imgs" / f"r{i}.png")
        Image.fromarray(ref).save(root / "tid" / "reference_images" / f"I0{i + 1}.BMP")
        for level in (1, 3):
            noisy = np.clip(ref + np.random.default_rng(level).normal(0, 8 * level, ref.shape), 0, 255)
            name = f"r{i}_11_0{level}.png"
            Image.fromarray(noisy.astype(np.uint8)).save(root / "heldout" / "dist_imgs" / name)
            tid_name = f"i0{i + 1}_01_{level}.bmp"
            Image.fromarray(noisy.astype(np.uint8)).save(root / "tid" / "distorted_images" / tid_name)
            rows.append(f"dist_imgs/{name},ref_imgs/r{i}.png,11,{level},{1 - 0.01 * level - 0.001 * i},"
                        f"{1 / (1 + level + 0.1 * i)}")
    if not teacher_column:
        rows = [row.rsplit(",", 1)[0] for row in rows]
    (root / "heldout" / "kadis700k_scores.csv").write_text("\n".join(rows) + "\n")
    (root / "tid" / "mos_with_names.txt").write_text("6.1 i01_01_1.bmp\n4.2 i01_01_3.bmp\n5.9 i02_01_1.bmp\n"
                                                      "3.8 i02_01_3.bmp\n5.0 i03_01_1.bmp\n")
    return {"heldout": root / "heldout", "train": root / "train", "tid": root / "tid"}


@pytest.mark.slow
def test_eval_model_runs_every_check_and_the_card_renders_them(tmp_path, tiny_model, eval_model, finalize, capsys):
    tiny_model.save_pretrained(tmp_path / "m")
    data = _data(tmp_path / "data")
    out = tmp_path / "eval.json"
    torch.manual_seed(0)
    assert eval_model.main(["--model", str(tmp_path / "m"), "--heldout", str(data["heldout"]), "--train-refs",
                            str(data["train"]), "--tid2013", str(data["tid"]), "--output", str(out), "--patches", "16",
                            "--photo-side", "128", "--loss-crop", "48", "--pixel-photos", "1", "--pixel-steps", "1",
                            "--stack-photos", "1", "--stack-crop", "64", "--restoration-steps", "1",
                            "--partner-crop", "32", "--full-side", "96", "--stability-pairs", "2"]) == 0
    result = json.loads(out.read_text())
    assert result["complete"] and not result["quick"]
    assert set(result) >= {"loss", "stacking", "restoration_alone", "partners", "severity", "teacher_label",
                           "weak_label", "identity", "stability", "weak_label_full_size", "teacher_label_full_size",
                           "tid2013", "seconds_per_pair", "weights_mib", "weights_file_mib"}
    assert result["loss"]["pixel_optimisation"]["0.05"]["pairs"] == 3
    assert set(result["stacking"]["per_scorer"]) == {"model", "teacher", "vsi", "psnr", "ms_ssim", "scielab", "gmsd",
                                                     "fsimc", "ciede2000"}
    assert result["stacking"]["per_scorer"]["psnr"]["share"] == 1.0
    assert result["teacher_label"]["source"] == "csv" and result["teacher_label"]["model"]["n"] == 4
    assert result["teacher_label"]["vsi"]["srocc"] == pytest.approx(1.0)  # both CSV columns fall with the level
    assert result["tid2013"]["model"]["n"] == 4 and result["identity"]["references"] == 2
    assert "| 4 |" not in eval_model.summary(result) and "Check 4, deblur CNN" in capsys.readouterr().err
    card = finalize["_evaluation_section"](result)
    for needle in ("| 1. pixels optimised", "| 2. a second distortion raises the score", "| 3. denoise CNN",
                   "**4. With L1", "| 5. level pairs", "| 6. SROCC with the teacher", "| 7. SROCC with MOS",
                   "| 8. weights (file, MiB)"):
        assert needle in card
    card_dir = _finalized(tmp_path / "finalize", tiny_model, finalize)  # the whole card: provenance + this evaluation
    assert finalize["main"](["--card-only", "--eval", str(out), "--out-dir", str(card_dir)]) == 0
    assert "| 2. a second distortion raises the score" in (card_dir / "MODEL_CARD.md").read_text()
    quick = tmp_path / "quick.json"
    assert eval_model.main(["--quick", "--model", str(tmp_path / "m"), "--heldout", str(data["heldout"]),
                            "--train-refs", str(data["train"]), "--output", str(quick), "--patches", "16",
                            "--photo-side", "128", "--loss-crop", "48", "--pixel-steps", "1", "--stack-crop", "64",
                            "--skip-restoration"]) == 0
    quick_result = json.loads(quick.read_text())
    assert quick_result["quick"] and set(quick_result["stacking"]["per_scorer"]) == {"model", "teacher", "vsi", "psnr"}
    assert "severity" not in quick_result and "restoration_alone" not in quick_result


def test_the_teacher_is_computed_where_the_csv_has_no_teacher_column(tmp_path, tiny_model, eval_model):
    from scipy import stats

    from vtamiq_metric.training import acceptance as acc
    from vtamiq_metric.training.labels.teacher import teacher_distortion

    tiny_model.save_pretrained(tmp_path / "m")
    data = _data(tmp_path / "data", teacher_column=False)
    out = tmp_path / "eval.json"
    assert eval_model.main(["--model", str(tmp_path / "m"), "--heldout", str(data["heldout"]), "--output", str(out),
                            "--patches", "16", "--photo-side", "128", "--loss-crop", "48", "--skip-pixel",
                            "--skip-stacking", "--skip-restoration", "--skip-partners", "--skip-severity",
                            "--skip-full-size", "--stability-pairs", "2"]) == 0
    result = json.loads(out.read_text())
    assert result["teacher_label"]["source"] == "computed" and "loss" not in result
    rows = acc.read_kadis_pairs(data["heldout"])
    refs, dists = acc.load_images([r["ref"] for r in rows]), acc.load_images([r["dist"] for r in rows])
    teacher = [float(teacher_distortion(r[None], d[None])) for r, d in zip(refs, dists, strict=True)]
    psnr = [float(acc.psnr(r[None], d[None])) for r, d in zip(refs, dists, strict=True)]
    assert result["teacher_label"]["psnr"]["srocc"] == pytest.approx(stats.spearmanr(psnr, teacher)[0] * -1)


def _finalized(root: Path, model, finalize) -> Path:
    """Run finalize.py on a synthetic train.sh output (stage 1, grown, rounds 0 and 1); returns its --out-dir."""
    data, run, out = root / "data", root / "run", root / "out"
    for folder in ("stage2", "heldout", "adversarial1", "run"):
        (data / folder).mkdir(parents=True, exist_ok=True)
    source = {"name": "coffee", "origin": "package", "package": "scikit-image", "version": "0.26.0",
              "file": "skimage/data/coffee.png", "sha256": "00", "licence": "CC0-1.0", "attribution": "R. M.",
              "held_out": False, "crops": [[0, 0, 160]]}
    (data / "sources.json").write_text(json.dumps({"seed": 0, "sizes": [160], "heldout_size": 256, "min_scale": 0.5,
                                                   "max_side": 1024, "sources": [source]}))
    (data / "stage2" / "kadis700k_scores.csv").write_text("dist_img,ref_img,teacher\n" + "a,b,0.5\n" * 3)
    (data / "heldout" / "kadis700k_scores.csv").write_text("dist_img,ref_img,teacher\n" + "a,b,0.5\n" * 2)
    (data / "adversarial1" / "adversarial.csv").write_text("ref,dist,score\n" + "a,b,0.5\n" * 4)
    stage1 = {"commit": "abc", "seed": 0, "data": {"train_pairs": 7, "sources": [source]},
              "training_config": {"lr": 3e-4, "lr_gamma": 0.3, "lr_milestones": [2, 3], "epochs": 4, "batch_size": 20},
              "metrics": {"epochs": [{"epoch": 0, "train_loss": 0.2, "lr": 3e-4, "val_srocc": 0.9, "val_plcc": 0.9,
                                      "pairs_per_second": 9.0}]}}
    model.save_pretrained(run / "grown", provenance={"added": {"patch_fidelity": True}, "parent_provenance": stage1})
    for index, rows in ((0, 3), (1, 7)):
        folder = run / f"round{index}"
        folder.mkdir()
        csv_path = data / f"round{index}.csv"
        csv_path.write_text("ref,dist,score\n" + "a,b,0.5\n" * rows)
        (folder / "config.json").write_text(json.dumps({
            "data_root": str(csv_path), "output": str(folder), "seed": 0, "lr": 1e-4, "lr_gamma": 0.3,
            "lr_milestones": [1], "epochs": 2, "batch_size": 20, "train_patches": 128, "precision": "bf16"}))
        (folder / "metrics.jsonl").write_text("".join(
            json.dumps({"epoch": e, "train_loss": 0.1, "lr": 1e-4, "val_srocc": 0.8 + 0.1 * e - 0.05 * index,
                        "val_plcc": 0.8, "pairs_per_second": 10.0}) + "\n" for e in (0, 1)))
    (run / "round0" / "quick.json").write_text(json.dumps(QUICK))
    model.save_pretrained(run / "round1" / "export")
    (run / "git_commit.txt").write_text("0123abcd\n")
    assert finalize["main"](["--model", str(run / "round1" / "export"), "--run", str(run), "--data", str(data),
                             "--out-dir", str(out)]) == 0
    return out


def test_finalize_records_both_stages_and_every_round(tmp_path, tiny_model, finalize, capsys):
    from vtamiq_metric.hub import load_model

    out = _finalized(tmp_path, tiny_model, finalize)
    weights = out / finalize["FILE_NAME"]
    assert f'"{finalize["NAME"]}": PretrainedCfg(' in capsys.readouterr().out
    loaded = load_model(weights)
    provenance = loaded.provenance
    assert [r["round"] for r in provenance["rounds"]] == [0, 1]
    assert [r["adversarial_pairs"] for r in provenance["rounds"]] == [0, 4]
    assert [r["pairs"] for r in provenance["rounds"]] == [3, 7]
    assert provenance["rounds"][0]["quick"]["stacking"]["model"]["share"] == 0.73
    assert provenance["rounds"][1]["quick"] is None and provenance["rounds"][1]["best_epoch"] == 1
    assert provenance["data"]["stage2_pairs"] == 3 and provenance["data"]["adversarial_pairs"] == {"adversarial1": 4}
    assert provenance["stage1"]["training_config"]["epochs"] == 4 and "sources" not in provenance["stage1"]["data"]
    assert provenance["teacher"]["spreads"] == {"vsi": 0.0503, "scielab": 7.18, "ms_ssim": 0.140}
    assert provenance["commit"] == "0123abcd"
    for key, tensor in tiny_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    card = (out / "MODEL_CARD.md").read_text()
    assert "| 0 | 3 (0 optimised) | 1 | 0.9000 | 0/6, -1.00 dB | - | 0.73 | denoise 22.0 -> 16.0 dB |" in card
    assert "| 1 | 7 (4 optimised) | 1 | 0.8500 | - | - | - | - |" in card
    assert "D = (1 - VSI) / 0.0503 + S-CIELAB mean CIEDE2000 / 7.18" in card
    assert "| coffee | `skimage/data/coffee.png` | CC0-1.0 | R. M. | train | 1 |" in card


def test_finalize_says_which_round_folders_it_expected(tmp_path, finalize):
    (tmp_path / "run").mkdir()
    with pytest.raises(SystemExit, match="no trained round under"):
        finalize["_rounds"](tmp_path / "run", tmp_path)


def test_a_last_round_without_a_quick_evaluation_shows_the_full_one(finalize):
    rounds = [{"round": 0, "pairs": 3, "adversarial_pairs": 0, "best_epoch": 1, "val": {"val_srocc": 0.9},
               "quick": None},
              {"round": 1, "pairs": 7, "adversarial_pairs": 4, "best_epoch": 0, "val": {"val_srocc": 0.95},
               "quick": None}]
    rows = finalize["_round_rows"](rounds, finalize["_heldout_summary"](QUICK)).splitlines()
    assert rows[0] == "| 0 | 3 (0 optimised) | 1 | 0.9000 | - | - | - | - |"
    assert rows[1].startswith("| 1 (full evaluation) | 7 (4 optimised) | 0 | 0.9500 | 0/6, -1.00 dB | - | 0.73 |")
