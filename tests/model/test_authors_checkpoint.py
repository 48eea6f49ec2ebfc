"""The authors' checkpoint taken directly (issue 21, item 10): ``load_model("vtamiq_kadis700k.pth")`` and ``vtamiq
score --model vtamiq_kadis700k.pth`` detect the era from the keys, convert strictly with ``weights_only=True``, and
cache the conversion as safetensors keyed by the file's sha256; the link to the weights is where users look."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import small_reference_state_dict
from vtamiq_metric import cli, hub, load_model
from vtamiq_metric._links import AUTHORS_WEIGHTS_URL
from vtamiq_metric.model import convert
from vtamiq_metric.model.convert import detect_reference_variant, from_reference_state_dict

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A small release2022 checkpoint in the container the authors' code saved: ``vtamiq_kadis700k.pth``."""
    state = small_reference_state_dict("keys-release2022.tsv")
    path = tmp_path / "vtamiq_kadis700k.pth"
    torch.save({"epoch": 5, "test_accuracy": 0.96, "model_state_dict": state}, path)
    return path


def _same_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0)


@pytest.mark.parametrize(("era", "drop", "variant"), [
    ("keys-release2022.tsv", (), "release2022"),
    ("keys-head2024.tsv", (), "head2024"),
    ("keys-head2024.tsv", ("extra_tokens", ".ls1.", ".ls2.", "diff_scale"), "head2024"),
])
def test_the_era_is_detected_from_the_keys(era, drop, variant):
    state = small_reference_state_dict(era, drop=drop)
    assert detect_reference_variant(state) == variant
    assert detect_reference_variant({"model_state_dict": {f"module.{k}": v for k, v in state.items()}}) == variant


def test_keys_that_two_eras_share_or_no_era_has_are_refused():
    paper = small_reference_state_dict("keys-paper2021.tsv")  # = release2022 without its scale embedding
    with pytest.raises(ValueError, match="fit both the paper2021 and the release2022 layout.*--variant"):
        detect_reference_variant(paper)
    with pytest.raises(ValueError, match="expected an authors' VTAMIQ checkpoint .* got 1 keys such as 'fc.weight'"):
        detect_reference_variant({"fc.weight": torch.zeros(2, 2)})


def test_load_model_takes_the_checkpoint_and_caches_its_conversion(checkpoint, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_model(checkpoint, cache_dir=cache)
    expected = from_reference_state_dict(torch.load(checkpoint, weights_only=True), "release2022")
    _same_weights(first, expected)
    assert first.config == expected.config
    digest = hub.sha256sum(checkpoint)
    assert first.provenance == {"converted_from": "release2022", "source_file": "vtamiq_kadis700k.pth",
                                "source_sha256": digest}
    stored = hub.converted_cache_dir(cache) / digest
    assert (stored / "model.safetensors").is_file() and (stored / "config.json").is_file()

    # The second load reads the safetensors copy: no torch.load, no conversion, not even a checksum of the .pth.
    def refuse(*args, **kwargs):
        raise AssertionError("the checkpoint was read again")

    monkeypatch.setattr(convert, "read_reference_checkpoint", refuse)
    monkeypatch.setattr(convert, "from_reference_state_dict", refuse)
    monkeypatch.setattr(hub, "sha256sum", refuse)
    second = load_model(str(checkpoint), cache_dir=cache)
    _same_weights(second, first)
    assert second.config == first.config and second.provenance["source_sha256"] == digest


def test_a_changed_checkpoint_is_converted_again(checkpoint, tmp_path):
    cache = tmp_path / "cache"
    first = load_model(checkpoint, cache_dir=cache)
    state = small_reference_state_dict("keys-head2024.tsv")
    torch.save(state, checkpoint)  # the same file name, other contents (and era)
    second = load_model(checkpoint, cache_dir=cache)
    assert second.provenance["converted_from"] == "head2024" != first.provenance["converted_from"]
    assert len([p for p in hub.converted_cache_dir(cache).iterdir() if p.name != "by-stat"]) == 2


def test_the_default_cache_is_beside_torchs_and_an_unwritable_cache_only_costs_a_conversion(checkpoint, tmp_path,
                                                                                          monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    assert hub.converted_cache_dir() == tmp_path / "torch_home" / "vtamiq_metric" / "converted"
    load_model(checkpoint)
    assert any((tmp_path / "torch_home" / "vtamiq_metric" / "converted").glob("*/model.safetensors"))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    model = load_model(checkpoint, cache_dir=blocked)
    assert model.provenance["converted_from"] == "release2022"


def test_the_checkpoint_is_read_with_weights_only(tmp_path):
    class Planted:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "planted.pth"
    path.write_bytes(pickle.dumps({"model_state_dict": Planted()}, protocol=2))
    with pytest.raises(ValueError, match="cannot read checkpoint .*planted.pth"):
        load_model(path, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.safetensors"))


def test_vtamiq_score_takes_the_checkpoint(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    dist = np.clip(ref.astype(int) + rng.integers(-30, 30, ref.shape), 0, 255).astype(np.uint8)
    Image.fromarray(ref).save(tmp_path / "ref.png")
    Image.fromarray(dist).save(tmp_path / "dist.png")
    args = ["score", str(tmp_path / "ref.png"), str(tmp_path / "dist.png"), "--model", str(checkpoint), "--patches",
            "32", "--device", "cpu", "--precision", "fp32"]
    assert cli.main(args) == 0
    printed = float(capsys.readouterr().out.strip())
    from vtamiq_metric import score

    model = from_reference_state_dict(torch.load(checkpoint, weights_only=True), "release2022")
    expected = score(str(tmp_path / "ref.png"), str(tmp_path / "dist.png"), model=model, num_patches=32,
                     precision="fp32").item()
    assert printed == pytest.approx(expected, abs=1e-6)


def test_vtamiq_convert_detects_the_era(checkpoint, tmp_path, capsys):
    assert cli.main(["convert", str(checkpoint), "--output", str(tmp_path / "out")]) == 0
    assert "(release2022, depth 2" in capsys.readouterr().out
    _same_weights(load_model(tmp_path / "out"), load_model(checkpoint, cache_dir=tmp_path / "cache"))


def test_the_link_to_the_authors_weights_is_where_users_look(capsys):
    assert AUTHORS_WEIGHTS_URL == hub.AUTHORS_WEIGHTS_URL
    assert "1ucEKoSOIyMn1fYpqOAG-8DtedVFg_i3-" in AUTHORS_WEIGHTS_URL  # the file id of the authors' published link
    with pytest.raises(SystemExit):
        cli.main(["convert", "--help"])
    assert AUTHORS_WEIGHTS_URL in capsys.readouterr().out
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    weights_section = readme[readme.index("## Weights"):readme.index("## Training")]
    assert AUTHORS_WEIGHTS_URL in weights_section
    card = (REPO / "vtamiq_metric" / "weights" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert AUTHORS_WEIGHTS_URL in card
    with pytest.raises(FileNotFoundError, match="downloaded from https://drive.google.com"):
        load_model("missing/vtamiq_kadis700k.pth")
