"""Hostile or broken weight files fail fast with a clear error (issue 13, items 2, 3 and the convert message of 12)."""

from __future__ import annotations

import json
import os
import pickle
import time

import pytest
import torch
from safetensors.torch import save_file

from tests.helpers import golden_state_dict
from vtamiq_metric import load_model
from vtamiq_metric.model.convert import convert_reference_state_dict, load_reference_checkpoint
from vtamiq_metric.model.serialization import CONFIG_META, WeightsError


def _write(path, tensors, config_json):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={CONFIG_META: config_json})
    return path


def _config_with(model, **changes):
    return json.dumps({**model.config.to_dict(), **changes})


@pytest.mark.parametrize(("changes", "message"), [
    ({"depth": 10**6}, r"depth=1000000, expected encoder blocks .* 0\.\.999999, but the file holds indices 0\.\.1"),
    ({"num_groups": 10**7}, r"num_groups=10000000"),
    ({"blocks_per_group": 10**5}, r"blocks_per_group=100000"),
    ({"embed_dim": 2**30, "num_heads": 1}, r"embed_dim=1073741824, larger than every tensor dimension"),
    ({"pos_grid": 10**5}, r"pos_grid=100000"),
    ({"std": [float("nan"), 0.5, 0.5]}, r"std must be finite"),
    ({"std": [1e-300, 0.5, 0.5]}, r"std must be at least 0\.001"),
])
def test_config_in_metadata_is_checked_against_the_tensors_before_building(tmp_path, tiny_model, changes, message):
    path = _write(tmp_path / "m.safetensors", tiny_model.state_dict(), _config_with(tiny_model, **changes))
    started = time.perf_counter()
    with pytest.raises(WeightsError, match=message):
        load_model(path)
    assert time.perf_counter() - started < 5


def test_deeply_nested_config_json_is_a_weights_error(tmp_path, tiny_model):
    path = _write(tmp_path / "m.safetensors", tiny_model.state_dict(), "[" * 100_000 + "]" * 100_000)
    with pytest.raises(WeightsError, match="nested too deeply"):
        load_model(path)


def test_integer_and_non_finite_tensors_are_refused(tmp_path, tiny_model):
    config = tiny_model.config.to_json()
    ints = {k: v.to(torch.int32) if k == "head.fc2.weight" else v for k, v in tiny_model.state_dict().items()}
    with pytest.raises(WeightsError, match=r"expected floating-point tensors, got torch.int32 for 'head.fc2.weight'"):
        load_model(_write(tmp_path / "int.safetensors", ints, config))
    nan = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    nan["diffnet.out.bias"][3] = float("nan")
    with pytest.raises(WeightsError, match=r"expected finite weights, got NaN or infinity in 'diffnet.out.bias'"):
        load_model(_write(tmp_path / "nan.safetensors", nan, config))


def test_config_json_of_a_directory_is_checked_too(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(_config_with(tiny_model, depth=10**6))
    with pytest.raises(WeightsError, match="depth=1000000"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{" * 50_000)
    with pytest.raises(WeightsError, match="invalid model config in .*config.json"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("key", ["diff_net.99999.body.0.body.1.weight", "diff_net.0.body.99999.body.1.weight",
                                 "transformer.encoder.layer.99999.ffn.fc1.weight"])
def test_converter_refuses_huge_indices_before_building_anything(key):
    sd = {**golden_state_dict("paper"), key: torch.zeros(1)}
    started = time.perf_counter()
    with pytest.raises(ValueError, match=rf"indices below \d+ .* got index 99999 in key '{key}'"):
        convert_reference_state_dict(sd, "paper2021")
    assert time.perf_counter() - started < 5


def test_converter_refuses_gaps_in_indices():
    sd = golden_state_dict("paper")
    sd = {k.replace("transformer.encoder.layer.5.", "transformer.encoder.layer.9."): v for k, v in sd.items()}
    with pytest.raises(ValueError, match=r"indices 0\.\.9 without gaps, got 6 indices with \[5, 6, 7, 8\] missing"):
        convert_reference_state_dict(sd, "paper2021")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_convert_names_the_problem_of_a_junk_file(tmp_path):
    cases = {
        "empty.pth": (b"", "got an empty file"),
        "fake.pth": (b"174812789 junk", r"got 14 bytes that are neither, starting with b'17481278'"),
        "int.pth": (pickle.dumps(174812789, protocol=2), "got a pickle of something else"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        expected = rf"cannot read checkpoint .*{name}: expected a PyTorch checkpoint.*{message}"
        with pytest.raises(ValueError, match=expected):
            load_reference_checkpoint(tmp_path / name, "paper2021")
    marker = tmp_path / "pwned"
    torch.save({"model_state_dict": _Payload(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match=r"pickle holding other Python objects .*GLOBAL posix.mkdir.*nothing in it"):
        load_reference_checkpoint(tmp_path / "evil.pth", "paper2021")
    assert not marker.exists()
