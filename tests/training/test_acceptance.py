"""The acceptance checks of vtamiq_metric.training.acceptance measure what they claim (tiny models, small images)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vtamiq_metric import VTAMIQ
from vtamiq_metric.model.config import get_preset
from vtamiq_metric.training import acceptance as acc


@pytest.fixture
def textured():
    """A (3, 64, 80) image with edges and texture in [0.1, 0.9]."""
    gen = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.linspace(0, 6, 64), torch.linspace(0, 8, 80), indexing="ij")
    base = torch.stack([torch.sin(xx * 2) * torch.cos(yy), (xx > 4).float() - 0.5, torch.sin(xx + yy * 3)])
    return (0.5 + 0.35 * base + 0.05 * torch.rand(3, 64, 80, generator=gen)).clamp(0, 1)


@pytest.fixture
def distance_model():
    """The tiny preset with the identity anchor and the token distance, random weights."""
    torch.manual_seed(0)
    return VTAMIQ(get_preset("tiny").replace(zero_identity=True, token_distance=True)).eval()


@pytest.mark.parametrize("family", sorted(acc.LADDERS))
def test_every_ladder_gets_worse_level_by_level(textured, family):
    errors = [float((acc.degrade(textured, family, value, seed=1) - textured).square().mean())
              for value in acc.LADDERS[family]]
    assert all(b > a for a, b in zip(errors, errors[1:])), errors
    out = acc.degrade(textured, family, acc.LADDERS[family][0], seed=1)
    assert out.shape == textured.shape and 0 <= float(out.min()) and float(out.max()) <= 1


def test_degrade_is_seeded_and_checks_its_input(textured):
    a = acc.degrade(textured, "white_noise", 0.1, seed=5)
    assert torch.equal(a, acc.degrade(textured, "white_noise", 0.1, seed=5))
    assert not torch.equal(a, acc.degrade(textured, "white_noise", 0.1, seed=6))
    with pytest.raises(ValueError, match="unknown degradation"):
        acc.degrade(textured, "fog", 1.0)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        acc.degrade(textured[None], "jpeg", 50)


def test_severity_check_counts_ordered_level_pairs(textured):
    result = acc.severity_check([textured, textured.flip(-1)], {"psnr": acc.psnr_scorer,
                                                                 "reversed": lambda r, d: acc.psnr(r, d)})
    assert result["psnr"]["pair_accuracy"] == 1.0 and result["psnr"]["monotone"] == 1.0
    assert result["reversed"]["pair_accuracy"] == 0.0 and result["reversed"]["monotone"] == 0.0
    assert result["psnr"]["pairs"] == 2 * len(acc.LADDERS) * 10 and result["psnr"]["ladders"] == 12


def test_label_and_mos_checks_correlate_in_the_right_direction(textured):
    dists = [acc.degrade(textured, "white_noise", s, seed=0) for s in (0.02, 0.05, 0.1, 0.2)]
    refs = [textured] * 4
    label = np.array([0.1, 0.2, 0.3, 0.4])
    assert acc.label_check(refs, dists, label, {"psnr": acc.psnr_scorer})["psnr"]["srocc"] == pytest.approx(1.0)
    assert acc.mos_check(refs, dists, 5 - label, {"psnr": acc.psnr_scorer})["psnr"]["srocc"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="as many labels"):
        acc.label_check(refs, dists, label[:3], {"psnr": acc.psnr_scorer})


def test_identity_check_sees_zero_at_identity(textured, distance_model):
    scorer = acc.model_scorer(distance_model, num_patches=16)
    dists = [[acc.degrade(textured, "gaussian_blur", 2.0), textured.clone()]]
    result = acc.identity_check(scorer, [textured], dists)
    assert result["max_abs_identical"] < 1e-5
    assert result["min_score"] >= 0 and result["pixel_identical_left_out"] == 1
    assert result["below_all_distorted"] == 1.0


def test_token_distance_gradient_points_towards_the_reference(textured, distance_model):
    refs = [textured] * 3
    dists = [acc.degrade(textured, f, v, seed=2) for f, v in (("gaussian_blur", 2.0), ("white_noise", 0.08),
                                                                 ("jpeg", 10))]
    assert float(np.median(acc.gradient_cosines(distance_model, refs, dists, num_patches=32, draws=2))) > 0.1
    # The paper's architecture without the distance has no such property at random initialisation.
    torch.manual_seed(0)
    plain = VTAMIQ("tiny").eval()
    assert abs(float(np.median(acc.gradient_cosines(plain, refs, dists, num_patches=32, draws=2)))) < 0.1


def test_pixel_optimisation_reports_before_and_after(textured, distance_model):
    dist = acc.degrade(textured, "white_noise", 0.1, seed=0)
    result = acc.pixel_optimisation(distance_model, [textured], [dist], steps=3, num_patches=16)
    assert len(result["psnr_before"]) == 1 and result["steps"] == 3
    assert result["psnr_before"][0] == pytest.approx(float(acc.psnr(textured[None], dist[None])))


def test_restoration_benefit_compares_equal_runs(textured, distance_model):
    result = acc.restoration_benefit(distance_model, [textured], [textured], "denoise", steps=2, batch_size=2,
                                     crop=32, num_patches=8)
    assert set(result) >= {"l1", "l1+vtamiq", "degraded", "weight", "vsi_gain", "psnr_change"}
    assert result["weight"] > 0
    assert result["psnr_change"] == pytest.approx(result["l1+vtamiq"]["psnr"] - result["l1"]["psnr"])
    with pytest.raises(ValueError, match="unknown task"):
        acc.restoration_benefit(distance_model, [textured], [textured], "inpaint")
    with pytest.raises(ValueError, match="at least 96"):
        acc.restoration_benefit(distance_model, [textured], [textured], "denoise", crop=96)


def test_stability_check_reports_the_spread_over_seeds(textured, distance_model):
    dist = acc.degrade(textured, "jpeg", 20)
    result = acc.stability_check(distance_model, [textured], [dist], score_range=1.0, seeds=3, num_patches=16)
    assert result["seeds"] == 3 and result["max_std"] >= 0
    assert result["max_std_over_range"] == result["max_std"]


def test_read_mos_folder_reads_a_tid2013_fragment(tmp_path):
    from PIL import Image

    (tmp_path / "distorted_images").mkdir()
    (tmp_path / "reference_images").mkdir()
    image = Image.new("RGB", (32, 32), (10, 20, 30))
    image.save(tmp_path / "reference_images" / "I01.BMP")
    image.save(tmp_path / "distorted_images" / "i01_08_2.bmp")
    (tmp_path / "mos_with_names.txt").write_text("4.5 I01_08_2.bmp\n3.1 i01_08_3.bmp\n")
    refs, dists, mos = acc.read_mos_folder(tmp_path)
    assert [p.name for p in refs] == ["I01.BMP"] and [p.name for p in dists] == ["i01_08_2.bmp"] and mos == [4.5]
    image.save(tmp_path / "distorted_images" / "i02_01_1.bmp")
    with pytest.raises(ValueError, match="expected a MOS for i02_01_1.bmp"):
        acc.read_mos_folder(tmp_path)


def test_read_kadis_pairs_resolves_paths_and_names_bad_rows(tmp_path):
    (tmp_path / "kadis700k_scores.csv").write_text("dist_img,ref_img,dist_type,dist_level,vsi\n"
                                                   "dist_imgs/a_01_01.png,ref_imgs/a.png,1,1,0.98\n")
    rows = acc.read_kadis_pairs(tmp_path)
    assert rows == [{"ref": tmp_path / "ref_imgs/a.png", "dist": tmp_path / "dist_imgs/a_01_01.png", "type": 1,
                     "vsi": 0.98}]
    (tmp_path / "kadis700k_scores.csv").write_text("dist_img,ref_img,dist_type,dist_level,vsi\nx.png,a.png,one,1,0.9\n")
    with pytest.raises(ValueError, match="line 2"):
        acc.read_kadis_pairs(tmp_path)


def test_full_size_pairs_label_every_type_with_vsi_at_its_viewing_distance(textured):
    assert acc.FULL_SIZE_TYPES == tuple(t for t in range(1, 26) if t != 15)
    photo = torch.nn.functional.interpolate(textured[None], size=(192, 160), mode="bilinear")[0].clamp(0, 1)
    types = (1, 10, 11, 16)  # blur, JPEG, white noise, brighten: fast, and each worse at level 5 than at level 1
    refs, dists, label, kinds = acc.full_size_pairs([photo], types=types, levels=(1, 5))
    assert kinds == [1, 1, 10, 10, 11, 11, 16, 16]
    assert all(r.shape == d.shape == photo.shape for r, d in zip(refs, dists))
    assert all(r is refs[0] for r in refs)  # one reference tensor per photograph, not one copy per pair
    from vtamiq_metric.training.labels.vsi import vsi

    assert label[2] == pytest.approx(1 - float(vsi(refs[2][None], dists[2][None])[0]))
    assert np.all(label[1::2] > label[0::2]), label
    again = acc.full_size_pairs([photo], types=types, levels=(1, 5))
    assert all(torch.equal(a, b) for a, b in zip(dists, again[1]))  # seeded
