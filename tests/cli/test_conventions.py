"""The `vtamiq` command speaks its own language (issue 21, item 8) and pairs one reference with many distorted images
(item 9): flags in messages, Ctrl-C during start-up, one-line warnings, an unreachable Hub, stem matching of folders."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vtamiq_metric import _frontend, cli
from vtamiq_metric._checks import CLI, speaking
from vtamiq_metric.cli import scoring
from vtamiq_metric.cli.common import CLIError
from vtamiq_metric.cli.pairs import pairs_from_dirs


@pytest.fixture
def weights(tmp_path, tiny_model):
    return str(tiny_model.save_pretrained(tmp_path / "weights"))


def _image(path: Path, seed: int = 0, mode: str = "RGB", size: tuple[int, int] = (40, 48)) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Messages name the flags


def test_a_missing_gpu_is_named_by_its_flag(tmp_path, weights, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ref, dist = _image(tmp_path / "r.png"), _image(tmp_path / "d.png", 1)
    assert cli.main(["score", str(ref), str(dist), "--model", weights, "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("vtamiq: error: --device cuda was requested but no CUDA device is available "
                           "(torch.cuda.is_available() is False); use --device cpu or leave out --device")
    assert "device='cpu'" not in err


def test_the_default_model_notice_names_the_flag_under_the_command(monkeypatch, caplog):
    for words, expected in ((CLI, "pass --model for paper-grade weights"), (None, "pass model= for paper-grade")):
        monkeypatch.setattr(_frontend, "_DEFAULT_NOTICE_SHOWN", False)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vtamiq_metric._frontend"):
            if words is None:
                _frontend.default_model_name()
            else:
                with speaking(words):
                    _frontend.default_model_name()
        assert expected in caplog.text


def test_an_unreachable_hub_fails_at_once_naming_the_flag_and_hf_hub_offline(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise ConnectionError("[Errno -3] Temporary failure in name resolution")

    def download(*args, **kwargs):
        if not kwargs.get("local_files_only"):
            time.sleep(30)  # what huggingface_hub's retries cost without a network
        raise huggingface_hub.errors.LocalEntryNotFoundError("not in the cache")

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    ref, dist = _image(tmp_path / "r.png"), _image(tmp_path / "d.png", 1)
    started = time.perf_counter()
    assert cli.main(["score", str(ref), str(dist), "--model", "hf-hub:x/y", "--device", "cpu"]) == 1
    assert time.perf_counter() - started < 10
    err = capsys.readouterr().err
    assert "vtamiq: error: could not get x/y/model.safetensors: the Hugging Face Hub did not answer" in err
    assert "HF_HUB_OFFLINE=1" in err and "pass --model PATH" in err and "load_model" not in err


# ---------------------------------------------------------------------------------------------------------------
# Ctrl-C during start-up, warnings


def test_ctrl_c_during_start_up_exits_130_with_one_line(tmp_path, weights, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the model loads

    monkeypatch.setattr(scoring, "resolve", interrupted)
    ref, dist = _image(tmp_path / "r.png"), _image(tmp_path / "d.png", 1)
    assert cli.main(["score", str(ref), str(dist), "--model", weights]) == 130
    err = capsys.readouterr().err
    assert err == "vtamiq: interrupted (Ctrl-C)\n"


def test_a_cmyk_image_gives_a_one_line_notice_not_a_python_warning(tmp_path, weights, capsys):
    ref = _image(tmp_path / "ref.jpg", mode="CMYK")
    dist = _image(tmp_path / "dist.jpg", 1, mode="CMYK")
    assert cli.main(["score", str(ref), str(dist), "--model", weights, "--patches", "16", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    float(captured.out.strip())
    lines = [line for line in captured.err.splitlines() if "CMYK" in line]
    assert len(lines) == 2 and all(line.startswith("vtamiq: warning: ") for line in lines), captured.err
    assert "ref.jpg" in lines[0] and "dist.jpg" in lines[1]
    assert "UserWarning" not in captured.err and "warnings.warn" not in captured.err
    import warnings

    assert warnings.showwarning is not cli._one_line_warning  # restored after the command


# ---------------------------------------------------------------------------------------------------------------
# One reference, many distorted images


def test_distorted_files_find_the_reference_whose_stem_begins_their_name(tmp_path):
    refs, dists = tmp_path / "R", tmp_path / "D"
    for name in ("coffee.png", "I1.png", "I10.png", "same.png"):
        _image(refs / name)
    for name in ("coffee_blur1.png", "coffee_jpeg10.jpg", "I10_03.png", "I1_02.png", "same.png", "other.png"):
        _image(dists / name, 1)
    pairs = {Path(p.dist).name: Path(p.ref).name for p in pairs_from_dirs(refs, dists)}
    assert pairs == {"coffee_blur1.png": "coffee.png", "coffee_jpeg10.jpg": "coffee.png",
                     "I10_03.png": "I10.png",  # the longest matching stem, not I1
                     "I1_02.png": "I1.png", "same.png": "same.png"}  # exact names still pair; other.png is skipped


def test_a_tie_or_no_match_says_how_to_write_a_pairs_file(tmp_path):
    refs, dists = tmp_path / "R", tmp_path / "D"
    _image(refs / "coffee.png")
    _image(refs / "coffee.jpg")
    _image(dists / "coffee_blur1.png", 1)
    with pytest.raises(CLIError, match=r"coffee_blur1.png could be coffee.jpg or coffee.png.*--pairs.*'ref,dist'"):
        pairs_from_dirs(refs, dists)
    (refs / "coffee.jpg").unlink()
    (dists / "coffee_blur1.png").rename(dists / "tea_blur1.png")
    with pytest.raises(CLIError, match=r"no file in .*D has a reference in .*R.*--pairs.*coffee.png,.*tea_blur1.png"):
        pairs_from_dirs(refs, dists)


def test_vtamiq_score_pairs_one_reference_with_its_distorted_images(tmp_path, weights, tiny_model, capsys):
    from vtamiq_metric import score

    refs, dists = tmp_path / "R", tmp_path / "D"
    ref = _image(refs / "coffee.png")
    blur, jpeg = _image(dists / "coffee_blur1.png", 1), _image(dists / "coffee_jpeg10.png", 2)
    out = tmp_path / "scores.csv"
    assert cli.main(["score", "--ref-dir", str(refs), "--dist-dir", str(dists), "--model", weights, "--patches", "16",
                     "--output", str(out), "--no-progress", "--device", "cpu"]) == 0
    import csv

    rows = list(csv.DictReader(out.open()))
    assert [(Path(r["ref"]).name, Path(r["dist"]).name) for r in rows] == [("coffee.png", "coffee_blur1.png"),
                                                                           ("coffee.png", "coffee_jpeg10.png")]
    expected = score(str(ref), [str(blur), str(jpeg)], model=tiny_model, num_patches=16)
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected.numpy(), atol=1e-6)
