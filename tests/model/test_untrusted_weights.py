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
    # Issue 23 item 11: finite in float64, infinite in float32 (the scores were NaN).
    ({"mean": [1e300, 0.0, 0.0]}, r"mean must be finite in float32"),
    ({"mean": [3e38, 0.0, 0.0]}, r"mean and std must map pixel values in \[0, 1\] to finite float32 values"),
    ({"norm_eps": 1e-50}, r"norm_eps must be a finite number > 0 in float32"),
    ({"head_dropout": "0.1"}, r"head_dropout must be a number \(a float\), got '0.1' \(str\)"),
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
    with pytest.raises(WeightsError, match=r"expected floating-point tensors of dtype float16, bfloat16, float32 or "
                                           r"float64, got torch.int32 for 'head.fc2.weight'"):
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


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_float8_weights_are_refused_by_name(tmp_path, tiny_model, dtype):
    # Issue 23 item 15: float8_e4m3fn raised NotImplementedError ("isfinite" not implemented) from the finiteness
    # check, and float8_e5m2 loaded a model that no device can run.
    tensors = {k: v.to(dtype) for k, v in tiny_model.state_dict().items()}
    path = _write(tmp_path / "f8.safetensors", tensors, tiny_model.config.to_json())
    with pytest.raises(WeightsError, match=rf"float16, bfloat16, float32 or float64, got {dtype} for '"):
        load_model(path)


def test_config_floats_are_checked_in_the_dtype_of_the_weights(tmp_path, tiny_model):
    # Finite in float32, infinite in float16: (0 - 4e4) / 0.5 = -8e4 is beyond float16's 65504.
    config = _config_with(tiny_model, mean=[4e4, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    half = {k: v.half() for k, v in tiny_model.state_dict().items()}
    with pytest.raises(WeightsError, match=r"to finite float16 values"):
        load_model(_write(tmp_path / "half.safetensors", half, config))
    assert load_model(_write(tmp_path / "float.safetensors", tiny_model.state_dict(), config)).config.mean[0] == 4e4
    loaded = load_model(_write(tmp_path / "ok.safetensors", half, tiny_model.config.to_json()))
    assert next(loaded.parameters()).dtype == torch.float16


def test_non_utf8_config_json_names_the_file(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_bytes(b'{"embed_dim": 32, "name": "\xff\xfe"}')
    with pytest.raises(WeightsError, match=r"invalid model config in .*m/config\.json: expected UTF-8 JSON text, got a "
                                           r"byte that is not UTF-8 at offset 27"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize(("key", "shape", "message"), [
    # Issue 23 item 15: a zero-row channel attention made the converter divide by zero.
    ("diff_net.0.body.0.body.4.conv_du.0.weight", (0, 768, 1, 1), r"non-empty dimension 0, got shape \(0, 768, 1, 1\)"),
    ("diff_net.0.body.0.body.4.conv_du.0.weight", (800, 768, 1, 1), r"at most 768 channels wide .* got 800"),
    ("transformer.embeddings.cls_token", (), r"'transformer.embeddings.cls_token' to be a 3-D tensor"),
    ("transformer.embeddings.positional_embeddings.positional_embeddings", (1, 1, 768), r"1 \+ G\*G .* G >= 1"),
    ("q_predictor.1.weight", (0, 768), r"'q_predictor.1.weight' to be a 2-D tensor with a non-empty dimension 0"),
])
def test_converter_refuses_empty_or_misranked_size_tensors_by_name(key, shape, message):
    sd = {**golden_state_dict("paper"), key: torch.zeros(shape)}
    with pytest.raises(ValueError, match=message):
        convert_reference_state_dict(sd, "paper2021")
