"""Golden equivalence with the authors' model classes (docs/background/authors-model.md §5).

Weights and inputs are rebuilt with the crc32-seeded generator the golden values were computed with, converted with
`from_reference_state_dict`, and compared to `tests/assets/reference/reference-golden.json`: float64 within 1e-10,
float32 within 1e-5 (q) and 1e-4 on intermediate features (the reference run measured float32 drift up to ~2e-6 there).
The JSON file and the key lists are described in docs/background/authors-model.md §2 and §5.
"""

from __future__ import annotations

import pytest
import torch

from tests.helpers import GOLDEN, VARIANTS, drop_keys, generated_state_dict, golden_inputs, golden_state_dict
from vtamiq_metric.model.convert import convert_reference_state_dict, from_reference_state_dict


def test_key_counts_match_the_spec():
    assert len(VARIANTS["head"][1]) == 243
    assert len(VARIANTS["head_min"][1]) == 229
    assert len(VARIANTS["rel"][1]) == 246
    assert len(VARIANTS["rel_noscale"][1]) == 245
    assert len(VARIANTS["paper"][1]) == 245


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_golden_outputs(name, dtype_name):
    variant, _ = VARIANTS[name]
    dtype = torch.float64 if dtype_name == "float64" else torch.float32
    model = from_reference_state_dict(golden_state_dict(name), variant).to(dtype).eval()
    p_ref, p_dist, pos, sc = golden_inputs(dtype)
    scale = sc if name == "rel" else None
    with torch.no_grad():
        feats = model.forward_features(p_ref, p_dist, pos, scale)
        q = model.head(feats["diffnet"])
    golden = GOLDEN[name][dtype_name]
    atol_q, atol_feat = (1e-10, 1e-10) if dtype == torch.float64 else (1e-5, 1e-4)
    torch.testing.assert_close(q, torch.tensor(golden["q"], dtype=dtype), atol=atol_q, rtol=0)
    torch.testing.assert_close(feats["cls_ref"][0, :4], torch.tensor(golden["cls_ref[0,:4]"], dtype=dtype),
                               atol=atol_feat, rtol=0)
    torch.testing.assert_close(feats["cls_ref"][1, :4], torch.tensor(golden["cls_ref[1,:4]"], dtype=dtype),
                               atol=atol_feat, rtol=0)
    torch.testing.assert_close(feats["diffnet"][0, :4], torch.tensor(golden["diffnet_out[0,:4]"], dtype=dtype),
                               atol=atol_feat, rtol=0)
    assert abs(feats["cls_ref"].sum().item() - golden["sum_cls_ref"]) < (1e-8 if dtype == torch.float64 else 1e-3)


def test_golden_model_equals_forward():
    model = from_reference_state_dict(golden_state_dict("rel"), "release2022").double().eval()
    p_ref, p_dist, pos, sc = golden_inputs(torch.float64)
    with torch.no_grad():
        q = model(p_ref, p_dist, pos, sc)
    torch.testing.assert_close(q, torch.tensor(GOLDEN["rel"]["float64"]["q"], dtype=torch.float64), atol=1e-10,
                               rtol=0)


def test_converter_infers_sizes_from_keys():
    config, _ = convert_reference_state_dict(golden_state_dict("rel"), "release2022")
    assert (config.depth, config.num_scales, config.num_extra_tokens, config.layer_scale) == (6, 5, 0, False)
    config, _ = convert_reference_state_dict(golden_state_dict("head"), "head2024")
    assert (config.depth, config.num_scales, config.num_extra_tokens, config.layer_scale, config.diff_scale) == (
        6, 1, 8, True, True)
    # A 4-layer checkpoint: drop blocks 4 and 5.
    keys = drop_keys(VARIANTS["paper"][1], "encoder.layer.4.", "encoder.layer.5.")
    config, _ = convert_reference_state_dict(generated_state_dict(keys), "paper2021")
    assert config.depth == 4


def test_converter_accepts_containers_and_module_prefix():
    sd = golden_state_dict("rel_noscale")
    container = {"epoch": 3, "test_accuracy": 0.9, "model_state_dict": {f"module.{k}": v for k, v in sd.items()}}
    model = from_reference_state_dict(container, "release2022")
    assert model.config.num_scales == 1


def test_converter_refuses_unknown_missing_and_misshaped_keys():
    sd = golden_state_dict("paper")
    with pytest.raises(ValueError, match="unexpected keys .*bogus.weight"):
        from_reference_state_dict({**sd, "bogus.weight": torch.zeros(1)}, "paper2021")
    broken = dict(sd)
    del broken["diff_net.2.body.1.body.2.bias"]
    with pytest.raises(KeyError, match="diff_net.2.body.1.body.2.bias"):
        from_reference_state_dict(broken, "paper2021")
    wrong = dict(sd)
    wrong["q_predictor.4.bias"] = torch.zeros(2)
    with pytest.raises(ValueError, match="head.fc2.bias"):
        from_reference_state_dict(wrong, "paper2021")
    # Cross-era load: the release checkpoint is not a head2024 checkpoint.
    with pytest.raises(KeyError, match="transformer.encoder.layers"):
        from_reference_state_dict(sd, "head2024")
    with pytest.raises(ValueError, match="variant must be one of"):
        from_reference_state_dict(sd, "r22")
    with pytest.raises(ValueError, match="unexpected keys .* in checkpoint container"):
        from_reference_state_dict({"model_state_dict": sd, "junk": 1}, "paper2021")
