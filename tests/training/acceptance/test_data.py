"""The held-out pairs and MOS folders, read by the dataset readers of vtamiq_metric.training.datasets."""

from __future__ import annotations

import pytest
from PIL import Image

from vtamiq_metric.training import acceptance as acc
from vtamiq_metric.training.datasets.kadis700k import KADIS_SCORES_FILE


def _kadis(root, header, rows):
    (root / "ref_imgs").mkdir(parents=True)
    (root / "dist_imgs").mkdir()
    image = Image.new("RGB", (16, 16), (10, 20, 30))
    image.save(root / "ref_imgs" / "a.png")
    image.save(root / "dist_imgs" / "a_01_01.png")
    image.save(root / "dist_imgs" / "a_26_02.png")
    (root / KADIS_SCORES_FILE).write_text("\n".join([header, *rows]) + "\n")


def test_read_kadis_pairs_reads_the_vsi_and_teacher_columns(tmp_path):
    _kadis(tmp_path, "dist_img,ref_img,dist_type,dist_level,vsi,teacher",
           ["dist_imgs/a_01_01.png,ref_imgs/a.png,1,1,0.98,0.7", "dist_imgs/a_26_02.png,ref_imgs/a.png,26,2,0.95,0.5"])
    rows = acc.read_kadis_pairs(tmp_path)
    root = tmp_path.resolve()
    assert rows == [{"ref": root / "ref_imgs/a.png", "dist": root / "dist_imgs/a_01_01.png", "type": 1, "level": 1,
                     "vsi": 0.98, "teacher": 0.7},
                    {"ref": root / "ref_imgs/a.png", "dist": root / "dist_imgs/a_26_02.png", "type": 26, "level": 2,
                     "vsi": 0.95, "teacher": 0.5}]
    assert acc.read_kadis_pairs(tmp_path.parent / tmp_path.name, labels=("vsi",))[0].keys() == {
        "ref", "dist", "type", "level", "vsi"}


def test_read_kadis_pairs_without_a_teacher_column_and_with_bad_rows(tmp_path):
    _kadis(tmp_path, "dist_img,ref_img,dist_type,dist_level,vsi", ["dist_imgs/a_01_01.png,ref_imgs/a.png,1,1,0.98"])
    assert "teacher" not in acc.read_kadis_pairs(tmp_path)[0]
    (tmp_path / KADIS_SCORES_FILE).write_text("dist_img,ref_img,dist_type,dist_level,vsi\n"
                                              "dist_imgs/a_01_01.png,ref_imgs/a.png,1,1,high\n")
    with pytest.raises(ValueError, match="line 2"):
        acc.read_kadis_pairs(tmp_path)
    (tmp_path / KADIS_SCORES_FILE).write_text("dist_img,ref_img,dist_type,dist_level,ms_ssim\n")
    with pytest.raises(ValueError, match="expected one of the label columns"):
        acc.read_kadis_pairs(tmp_path)
    (tmp_path / KADIS_SCORES_FILE).write_text("dist_img,ref_img,dist_type,dist_level,vsi\n"
                                              "dist_imgs/gone.png,ref_imgs/a.png,1,1,0.9\n")
    with pytest.raises(FileNotFoundError, match="gone.png"):
        acc.read_kadis_pairs(tmp_path)
    with pytest.raises(FileNotFoundError, match=KADIS_SCORES_FILE):
        acc.read_kadis_pairs(tmp_path / "ref_imgs")


def test_read_mos_folder_reads_the_pairs_present_in_a_tid2013_fragment(tmp_path):
    (tmp_path / "distorted_images").mkdir()
    (tmp_path / "reference_images").mkdir()
    image = Image.new("RGB", (32, 32), (10, 20, 30))
    image.save(tmp_path / "reference_images" / "I01.BMP")
    image.save(tmp_path / "distorted_images" / "i01_08_2.bmp")
    image.save(tmp_path / "distorted_images" / "I01_10_5.BMP")
    (tmp_path / "mos_with_names.txt").write_text("4.5 I01_08_2.bmp\r\n3.1 i01_08_3.bmp\r\n2.2 i01_10_5.bmp\r\n"
                                                 "5.0 i02_01_1.bmp\r\n")
    refs, dists, mos = acc.read_mos_folder(tmp_path)
    assert [p.name for p in refs] == ["I01.BMP", "I01.BMP"] and mos == [4.5, 2.2]
    assert [p.name for p in dists] == ["i01_08_2.bmp", "I01_10_5.BMP"]
    (tmp_path / "mos_with_names.txt").write_text("4.5 I01_08_2.bmp\n4.5\n")
    with pytest.raises(ValueError, match="line 2"):
        acc.read_mos_folder(tmp_path)
    (tmp_path / "mos_with_names.txt").write_text("4.5 I09_08_2.bmp\n3.5 I09_08_3.bmp\n")
    with pytest.raises(FileNotFoundError, match="I09_08_2.bmp"):
        acc.read_mos_folder(tmp_path)
