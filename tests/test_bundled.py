"""The bundled default model: the file ships in the package, matches its registry entry, and works offline.

"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vtamiq_metric import hub
from vtamiq_metric.hub import load_file, sha256sum

BUNDLED_NAME = "vtamiq_tiny_patch16.kadis_synthetic"
WEIGHTS = Path(hub.__file__).resolve().parent / "weights" / "vtamiq_tiny_patch16.safetensors"
MODEL_CARD = WEIGHTS.parent / "MODEL_CARD.md"
IMAGES = Path(__file__).resolve().parents[1] / "examples" / "images"

needs_images = pytest.mark.skipif(not (IMAGES / "coffee_ref.png").is_file(),
                                  reason=f"example images not found in {IMAGES} (not a source checkout)")


def test_bundled_file_loads_strictly_with_its_provenance():
    assert WEIGHTS.stat().st_size <= 20 * 2**20
    model = load_file(WEIGHTS)  # strict: a missing, unexpected or mis-shaped tensor raises
    assert not model.training
    assert model.config.embed_dim == 192 and model.config.depth == 6
    info = model.provenance
    for key in ("seed", "commit", "data", "metrics", "training_config"):
        assert key in info, f"provenance lacks {key!r}: {sorted(info)}"
    sources = info["data"]["sources"]
    assert {s["name"] for s in sources if s["held_out"]} == {"astronaut", "chelsea", "coffee"}
    assert all(s["licence"] for s in sources)
    assert MODEL_CARD.is_file() and BUNDLED_NAME in MODEL_CARD.read_text()


def test_registry_entry_matches_the_bundled_file():
    entry = hub.PRETRAINED[BUNDLED_NAME]
    assert entry.license == "Apache-2.0"
    assert entry.bundled_path is not None
    assert (Path(hub.__file__).resolve().parent / entry.bundled_path) == WEIGHTS
    assert sha256sum(WEIGHTS) == entry.sha256
    model = hub.load_model(BUNDLED_NAME)  # verifies the checksum again
    assert model.config == load_file(WEIGHTS).config


@needs_images
def test_score_with_only_two_images_works_offline(tmp_path):
    # A fresh interpreter with the Hub switched off and an empty cache: only the bundled file can serve the model.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf")}
    code = ("import sys, vtamiq_metric; "
            "print(float(vtamiq_metric.score(sys.argv[1], sys.argv[2])[0]))")
    out = subprocess.run([sys.executable, "-c", code, str(IMAGES / "coffee_ref.png"),
                          str(IMAGES / "coffee_jpeg10.png")], check=False, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    value = float(out.stdout.strip().splitlines()[-1])
    assert math.isfinite(value) and value > 0  # a distortion was seen
    assert not any((tmp_path / "hf").rglob("*.safetensors"))  # nothing was downloaded


@needs_images
@pytest.mark.parametrize("name", ["coffee", "astronaut"])
def test_identical_pair_scores_below_every_distorted_example(name):
    from vtamiq_metric import score

    ref = str(IMAGES / f"{name}_ref.png")
    dists = [ref] + [str(IMAGES / f"{name}_{kind}.png") for kind in ("blur2", "jpeg10", "noise005")]
    scores = score([ref] * len(dists), dists, num_patches=256, device="cpu")
    assert torch.isfinite(scores).all()
    assert scores[0] < scores[1:].min(), f"{name}: identical {scores[0]:.4f} vs distorted {scores[1:].tolist()}"


def test_default_model_is_the_bundled_one(monkeypatch):
    from vtamiq_metric import api

    monkeypatch.setattr(api, "_MODEL_CACHE", {})
    model = api.resolve_model(None, torch.device("cpu"))
    state, reference = model.state_dict(), load_file(WEIGHTS).state_dict()
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[k], reference[k]) for k in state)
    assert json.dumps(model.provenance, sort_keys=True, default=str) == json.dumps(
        load_file(WEIGHTS).provenance, sort_keys=True, default=str)


# ---------------------------------------------------------------------------------------------------------------
# The scripts that make and check the bundled model (examples/bundled_model/, benchmarks/eval_bundled.py)

REPO = Path(__file__).resolve().parents[1]


def _module(path: Path) -> dict:
    import runpy

    return runpy.run_path(str(path), run_name=path.stem)


def test_prepare_data_crops_are_deterministic_and_inside_the_image():
    prepare = _module(REPO / "examples" / "bundled_model" / "prepare_data.py")
    image = (np.random.default_rng(0).random((300, 420, 3)) * 255).astype(np.uint8)
    first = prepare["make_crops"](image, "x", 6, (64, 96), 0.4, seed=0)
    again = prepare["make_crops"](image, "x", 6, (64, 96), 0.4, seed=0)
    other = prepare["make_crops"](image, "x", 6, (64, 96), 0.4, seed=1)
    assert [info for _, info in first] == [info for _, info in again]
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(first, again))
    assert [info for _, info in first] != [info for _, info in other]
    for crop, info in first:
        assert crop.shape == (info["side"], info["side"], 3) and info["side"] in (64, 96)
        assert 0.4 <= info["scale"] <= 1.0
        assert info["top"] + info["side"] <= max(info["side"], round(300 * info["scale"]))
        assert info["left"] + info["side"] <= max(info["side"], round(420 * info["scale"]))


def test_prepare_data_holds_out_sources_and_records_licences():
    prepare = _module(REPO / "examples" / "bundled_model" / "prepare_data.py")
    names = [s.name for s in prepare["SOURCES"]]
    assert len(names) == len(set(names))
    assert set(prepare["HELD_OUT"]) <= set(names)
    assert all(s.licence and s.licence_text for s in prepare["SOURCES"])
    assert not {"moon", "page", "motorcycle_left", "grace_hopper"} & set(names)  # no licence stated for these


def test_eval_monotonicity_counts_rising_sequences():
    evaluate = _module(REPO / "benchmarks" / "eval_bundled.py")
    rows, pred, target = [], [], []
    for ref, scores in (("a", [1, 2, 3]), ("b", [1, 3, 2])):
        for level, value in enumerate(scores, start=1):
            rows.append({"ref": ref, "type": 1, "level": level})
            pred.append(value)
            target.append(level)  # the label rises in both sequences
    result = evaluate["monotonicity"](rows, np.array(pred, float), np.array(target, float))
    assert result["sequences"] == 2
    assert result["score_rises_with_level"] == 0.5 and result["label_rises_with_level"] == 1.0
    assert result["follows_label_order"] == 0.5 and result["score_rises_where_label_rises"] == 0.5
    assert result["per_type"]["01_gblur"]["n"] == 2
    assert result["score_rises_with_strength"] == 0.5  # gblur: strength is the level


def test_eval_strength_rises_away_from_the_no_change_level_of_mean_shift():
    evaluate = _module(REPO / "benchmarks" / "eval_bundled.py")
    assert evaluate["strength_chains"](1, [1, 2, 3, 4, 5]) == [[0, 1, 2, 3, 4]]
    assert evaluate["strength_chains"](18, [1, 2, 3, 4, 5]) == [[2, 1, 0], [2, 3, 4]]  # parameter 0 at level 3
    assert evaluate["strength_chains"](25, [2, 3, 4]) == [[1, 0], [1, 2]]
    rows = [{"ref": ref, "type": 18, "level": level} for ref in "ab" for level in range(1, 6)]
    pred = np.array([0.5, 0.3, 0.0, 0.2, 0.4,  # V-shaped around level 3: rises with strength
                     0.5, 0.3, 0.0, 0.4, 0.2], float)  # level 5 below level 4: does not
    result = evaluate["monotonicity"](rows, pred, pred)
    assert result["score_rises_with_strength"] == 0.5 and result["score_rises_with_level"] == 0.0
    assert result["per_type"]["18_meanshift"]["label_rises_with_strength"] == 0.5


def test_eval_bundled_runs_end_to_end(tmp_path, tiny_model, monkeypatch, capsys):
    from PIL import Image

    from vtamiq_metric.training.kadis import generate_kadis

    refs = tmp_path / "refs"
    refs.mkdir()
    yy, xx = np.mgrid[0:64, 0:64] / 64
    image = np.stack([xx, yy, 0.5 + 0.4 * np.sin(9 * xx * yy)], axis=-1)
    Image.fromarray((image * 255).astype(np.uint8)).save(refs / "r.png")
    generate_kadis(refs, tmp_path / "out", seed=0, types_per_ref=2, workers=1, progress=False)
    tiny_model.save_pretrained(tmp_path / "m")
    evaluate = _module(REPO / "benchmarks" / "eval_bundled.py")
    code = evaluate["main"]([str(tmp_path / "m"), str(tmp_path / "out"), "--patches", "8", "--stability-patches",
                             "8", "--stability-pairs", "3", "--stability-seeds", "2", "--output",
                             str(tmp_path / "e.json")])
    assert code == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert result == json.loads(capsys.readouterr().out)
    assert result["pairs"] == 10 and result["references"] == 1 and result["stability"]["pairs"] == 3
    assert -1.0 <= result["srocc"] <= 1.0
    assert set(result["targets"]) == {"srocc>=0.90", "monotonic>=0.90", "identical_below_all",
                                      "stability_max_std<5%"}
