"""Model-in-the-loop pairs: what make_adversarial_set writes, that it resumes, and that it refuses mixed folders."""

import csv
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vtamiq_metric.training.adversarial import (
    ADVERSARIAL_CSV,
    AdversarialSettings,
    make_adversarial_set,
    optimise_towards_reference,
)
from vtamiq_metric.training.datasets.csv import CSVDataset

SETTINGS = AdversarialSettings(starts=3, crop=32, steps=3, snapshots=(1, 3), num_patches=4, precision="fp32",
                               batch_size=2, seed=5)


def _label(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    return 1 / (1 + (ref - dist).abs().mean(dim=(1, 2, 3)))


@pytest.fixture
def refs(tmp_path):
    folder = tmp_path / "refs_in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for index in range(2):
        path = folder / f"crop{index}.png"
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _rows(folder):
    with open(folder / ADVERSARIAL_CSV, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_optimising_with_a_loss_moves_towards_its_minimum():
    ref = torch.full((1, 3, 8, 8), 0.7)
    start = torch.full((1, 3, 8, 8), 0.2)
    snaps = optimise_towards_reference(lambda r, d: (r - d).abs().mean(), ref, start, steps=20, lr=0.1,
                                       snapshots=(5, 20))
    assert sorted(snaps) == [5, 20]
    assert (snaps[20] - ref).abs().mean() < (snaps[5] - ref).abs().mean() < (start - ref).abs().mean()


def test_the_set_holds_every_start_and_snapshot_labelled_and_reads_as_a_csv_dataset(tiny_model, refs, tmp_path):
    out = tmp_path / "adv"
    make_adversarial_set(tiny_model, refs, out, _label, settings=SETTINGS)
    rows = _rows(out)
    assert len(rows) == SETTINGS.starts * (1 + len(SETTINGS.snapshots) * len(SETTINGS.lrs))
    assert sorted({row["level"] for row in rows}) == ["0", "1", "3"]
    for row in rows:
        ref = np.asarray(Image.open(out / row["ref"]), dtype=np.float32) / 255
        dist = np.asarray(Image.open(out / row["dist"]), dtype=np.float32) / 255
        assert ref.shape == dist.shape == (32, 32, 3)
        expected = _label(torch.from_numpy(ref).permute(2, 0, 1)[None], torch.from_numpy(dist).permute(2, 0, 1)[None])
        assert float(row["score"]) == pytest.approx(float(expected), abs=1e-6)
        assert row["ref_id"] in {"crop0", "crop1"}
    assert len(CSVDataset(out / ADVERSARIAL_CSV, higher_is_better=True)) == len(rows)


def test_an_interrupted_run_resumes_to_the_same_set(tiny_model, refs, tmp_path):
    whole = tmp_path / "whole"
    make_adversarial_set(tiny_model, refs, whole, _label, settings=SETTINGS)

    class Interrupted(Exception):
        pass

    def stop_after_first_batch(text):
        raise Interrupted(text)

    resumed = tmp_path / "resumed"
    with pytest.raises(Interrupted):
        make_adversarial_set(tiny_model, refs, resumed, _label, settings=SETTINGS, log=stop_after_first_batch)
    assert not (resumed / ADVERSARIAL_CSV).exists()
    assert len(list((resumed / "parts").glob("*.csv"))) == 1
    messages = []
    make_adversarial_set(tiny_model, refs, resumed, _label, settings=SETTINGS, log=messages.append)
    assert messages[-1] == "adversarial: 3/3 starting points"
    assert _rows(resumed) == _rows(whole)
    for row in _rows(whole):
        assert (resumed / row["dist"]).read_bytes() == (whole / row["dist"]).read_bytes()


def test_a_folder_generated_with_other_settings_is_refused(tiny_model, refs, tmp_path):
    out = tmp_path / "adv"
    make_adversarial_set(tiny_model, refs, out, _label, settings=SETTINGS)
    other = AdversarialSettings(**{**SETTINGS.__dict__, "steps": 4, "snapshots": (4,)})
    with pytest.raises(ValueError, match=r"other settings \['snapshots', 'steps'\]"):
        make_adversarial_set(tiny_model, refs, out, _label, settings=other)
    with pytest.raises(ValueError, match="other reference files"):
        make_adversarial_set(tiny_model, refs[:1], out, _label, settings=SETTINGS)
    (out / "request.json").write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="not readable JSON"):
        make_adversarial_set(tiny_model, refs, out, _label, settings=SETTINGS)


@pytest.mark.parametrize(("field", "value"), [("starts", 0), ("snapshots", (41,)), ("lrs", (float("nan"),)),
                                              ("precision", "fp16")])
def test_settings_are_checked(field, value):
    with pytest.raises(ValueError, match=f"AdversarialSettings.{field}"):
        AdversarialSettings(**{field: value})


def test_references_smaller_than_the_crop_are_refused(tiny_model, refs, tmp_path):
    small = AdversarialSettings(**{**SETTINGS.__dict__, "crop": 64})
    with pytest.raises(ValueError, match="at least 64 x 64 pixels"):
        make_adversarial_set(tiny_model, refs, tmp_path / "adv", _label, settings=small)
    with pytest.raises(ValueError, match="expected reference image files, got none"):
        make_adversarial_set(tiny_model, [], tmp_path / "adv", _label, settings=SETTINGS)


@pytest.fixture(scope="module")
def robust():

    return runpy.run_path(str(Path(__file__).resolve().parents[2] / "examples" / "bundled_model" / "robust.py"))


def test_merge_joins_kadis_and_optimised_pairs_repeating_the_optimised_ones(tiny_model, refs, tmp_path, robust):
    adversarial = tmp_path / "adv"
    make_adversarial_set(tiny_model, refs, adversarial, _label, settings=SETTINGS)
    kadis = tmp_path / "kadis"
    (kadis / "dist_imgs").mkdir(parents=True)
    for ref, name in zip(refs, ("crop0_27_02.png", "crop1_03_05.png"), strict=True):
        (kadis / "dist_imgs" / name).write_bytes(ref.read_bytes())
    (kadis / "kadis700k_scores.csv").write_text(
        "dist_img,ref_img,dist_type,dist_level,vsi,teacher\n"
        f"crop0_27_02.png,{refs[0]},27,2,0.99,0.4\ncrop1_03_05.png,{refs[1]},3,5,0.9,0.2\n")
    out = tmp_path / "round1.csv"
    assert robust["main"](["merge", "--kadis", str(kadis), "--adversarial", str(adversarial),
                           "--adversarial-repeats", "3", "--out", str(out)]) == 0
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    kadis_rows = rows[:2]  # the make-kadis folders' rows come first
    assert [(row["dist_type"], row["level"], row["score"]) for row in kadis_rows] == [("kadis27", "2", "0.4"),
                                                                                       ("kadis03", "5", "0.2")]
    assert kadis_rows[0]["dist"] == str((kadis / "dist_imgs" / "crop0_27_02.png").resolve())
    assert len(rows) - len(kadis_rows) == 3 * len(_rows(adversarial))
    assert len(CSVDataset(out, higher_is_better=True, validate_images=False)) == len(rows)
    with pytest.raises(SystemExit):
        robust["main"](["merge", "--adversarial-repeats", "0", "--out", str(out)])


def test_grow_adds_parameters_and_keeps_every_trained_tensor(tiny_model, tmp_path, robust):
    from vtamiq_metric.hub import load_model

    tiny_model.save_pretrained(tmp_path / "m", provenance={"seed": 3})
    assert robust["main"](["grow", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "g"),
                           "--set", "patch_fidelity=true"]) == 0
    grown = load_model(tmp_path / "g")
    assert grown.config.patch_fidelity and not tiny_model.config.patch_fidelity
    state = grown.state_dict()
    for key, tensor in tiny_model.state_dict().items():
        assert torch.equal(state[key], tensor), key
    assert set(state) > set(tiny_model.state_dict())
    assert grown.provenance["parent_provenance"]["seed"] == 3
    with pytest.raises(SystemExit, match="KEY=JSON"):
        robust["main"](["grow", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "g2"), "--set", "oops"])
