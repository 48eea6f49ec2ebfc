"""The model: config round trip, presets, input checks, attention path, and ImageNet backbone converters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vtamiq_metric import VTAMIQ, VTAMIQConfig
from vtamiq_metric.model.config import PRESETS
from vtamiq_metric.model.convert import (
    backbone_from_npz,
    backbone_from_timm,
    load_backbone,
    resample_pos_embed,
)
from vtamiq_metric.sampling import SamplingConfig


def _inputs(batch=2, num=8, patch=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ref = torch.randn(batch, num, 3, patch, patch, generator=gen)
    dist = ref + 0.3 * torch.randn(ref.shape, generator=gen)
    pos = torch.rand(batch, num, 2, generator=gen) * 0.999
    return ref, dist, pos


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_json_round_trip(name):
    config = PRESETS[name]
    assert VTAMIQConfig.from_json(config.to_json()) == config


def test_config_rejects_bad_values_and_unknown_keys():
    with pytest.raises(ValueError, match="embed_dim .* divisible by num_heads"):
        VTAMIQConfig(embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="pos_index must be one of"):
        VTAMIQConfig(pos_index="raster")
    with pytest.raises(ValueError, match=r"unknown VTAMIQConfig keys \['depht'\]"):
        VTAMIQConfig.from_dict({**PRESETS["tiny"].to_dict(), "depht": 3})
    with pytest.raises(ValueError, match="depth must be a positive int"):
        VTAMIQConfig(depth=0)


@pytest.mark.parametrize("name, expected", [("paper2021", 57_306_274), ("release2022", 57_310_882),
                                            ("head2024", 57_322_386)])
def test_preset_parameter_counts_match_the_authors(name, expected):
    with torch.device("meta"):
        model = VTAMIQ(name)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_forward_shape_direction_attribute_and_identical_inputs(tiny_model):
    ref, dist, pos = _inputs()
    with torch.no_grad():
        out = tiny_model(ref, dist, pos)
        same = tiny_model(ref, ref, pos)
    assert out.shape == (2,) and torch.isfinite(out).all()
    assert VTAMIQ.higher_is_better is False
    # Identical inputs give a zero difference, so the score is the head applied to DiffNet(0): equal for every pair.
    assert torch.allclose(same[0], same[1])


def test_forward_rejects_bad_positions_scales_and_shapes(tiny_model):
    ref, dist, pos = _inputs()
    with pytest.raises(ValueError, match=r"pos must hold patch centres \(row, col\) in \[0, 1\)"):
        tiny_model(ref, dist, pos + 1.0)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        tiny_model(ref, dist, pos - 0.5)
    nan_pos = pos.clone()
    nan_pos[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="pos must hold"):
        tiny_model(ref, dist, nan_pos)
    with pytest.raises(ValueError, match=r"pos must be a float tensor of shape \(2, 8, 2\)"):
        tiny_model(ref, dist, pos[:, :4])
    with pytest.raises(ValueError, match=r"ref_patches must have shape \(B, N, 3, 16, 16\), got \(2, 8, 3, 8, 8\)"):
        tiny_model(ref[..., :8, :8], dist, pos)
    with pytest.raises(ValueError, match="same shape"):
        tiny_model(ref, dist[:1], pos)
    with pytest.raises(ValueError, match=r"scale must be in \[0, 0\]"):
        tiny_model(ref, dist, pos, torch.ones(2, 8, dtype=torch.long))


def test_multiscale_model_uses_scale_embedding():
    config = PRESETS["tiny"].replace(num_scales=3, sampling=SamplingConfig(num_scales=3))
    torch.manual_seed(0)
    model = VTAMIQ(config).eval()
    ref, dist, pos = _inputs()
    scale0 = torch.zeros(2, 8, dtype=torch.long)
    with torch.no_grad():
        a = model(ref, dist, pos, scale0)
        b = model(ref, dist, pos, scale0 + 2)
        c = model(ref, dist, pos, None)
    assert not torch.allclose(a, b)
    assert torch.equal(a, c)  # None means every patch at full resolution
    with pytest.raises(ValueError, match=r"scale must be an integer tensor"):
        model(ref, dist, pos, scale0.float())


def test_attention_is_fused_sdpa_not_materialised(tiny_model, monkeypatch):
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    ref, dist, pos = _inputs()
    with torch.no_grad():
        tiny_model(ref, dist, pos)
    assert len(calls) == tiny_model.config.depth
    assert all(block.attn.fused_attn for block in tiny_model.backbone.blocks)  # the default


def test_every_parameter_gets_a_gradient_in_training():
    config = PRESETS["tiny"].replace(num_extra_tokens=2, layer_scale=True, diff_scale=True, num_scales=2,
                                     scale_embed_cls=True)
    torch.manual_seed(0)
    model = VTAMIQ(config).train()
    ref, dist, pos = _inputs()
    model(ref, dist, pos, torch.randint(0, 2, (2, 8))).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    # Register tokens reach the output only through attention; all parameters must still be trained.
    assert missing == []


@pytest.mark.parametrize("extra_tokens", [0, 2])
def test_zero_identity_and_token_distance_anchor_the_score_at_zero(extra_tokens):
    config = PRESETS["tiny"].replace(zero_identity=True, token_distance=True, num_extra_tokens=extra_tokens)
    torch.manual_seed(0)
    model = VTAMIQ(config).eval()
    assert model.state_dict()["token_distance.weight"].shape == (config.depth + 1, config.embed_dim)
    ref, dist, pos = _inputs(batch=3)
    with torch.no_grad():
        same = model(ref, ref.clone(), pos)
        feats = model.forward_features(ref, dist, pos)
    assert same.tolist() == [0.0, 0.0, 0.0]  # exactly, at every batch position
    assert bool((feats["score"] > 0).all()) and bool((feats["head"] >= 0).all())
    assert torch.allclose(feats["score"], feats["head"] + feats["distance"])
    # The head's own value at zero difference is subtracted: without the offset the score would be far from 0.
    raw = model.head(model.diffnet(torch.zeros(1, config.embed_dim)))
    assert float(raw.abs()) > 1e-4


def test_token_distance_gradient_is_a_positive_map_of_the_error():
    config = PRESETS["tiny"].replace(token_distance=True)
    torch.manual_seed(1)
    model = VTAMIQ(config).eval()
    ref, _, pos = _inputs(batch=1, num=16)
    dist = (ref + 0.05 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(3))).requires_grad_(True)
    distance = model.forward_features(ref, dist, pos)["distance"]
    (grad,) = torch.autograd.grad(distance.sum(), dist)
    cosine = torch.nn.functional.cosine_similarity(grad.flatten(), (dist - ref).detach().flatten(), dim=0)
    assert float(cosine) > 0.2  # gradient descent on the distance moves dist towards ref


def test_paper_presets_keep_the_plain_head():
    for name in ("paper2021", "release2022", "head2024"):
        assert not PRESETS[name].zero_identity and not PRESETS[name].token_distance
    model = VTAMIQ("tiny")
    assert model.token_distance is None and "token_distance.weight" not in model.state_dict()
    with pytest.raises(TypeError, match="token_distance must be a bool"):
        PRESETS["tiny"].replace(token_distance=1)


def test_bf16_autocast_forward_is_close_to_fp32(tiny_model):
    ref, dist, pos = _inputs()
    with torch.no_grad():
        full = tiny_model(ref, dist, pos)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = tiny_model(ref, dist, pos)
    assert half.dtype in (torch.bfloat16, torch.float32)
    torch.testing.assert_close(half.float(), full, atol=0.05, rtol=0.05)


# ---------------------------------------------------------------------------------------------------------------
# ImageNet backbone converters


def _google_npz(dim=32, heads=2, depth=3, patch=4, grid=4, mlp=64, seed=0):
    rng = np.random.default_rng(seed)
    head_dim = dim // heads
    w = {
        "embedding/kernel": rng.normal(size=(patch, patch, 3, dim)),
        "embedding/bias": rng.normal(size=(dim,)),
        "cls": rng.normal(size=(1, 1, dim)),
        "Transformer/posembed_input/pos_embedding": rng.normal(size=(1, 1 + grid * grid, dim)),
        "Transformer/encoder_norm/scale": 1 + 0.1 * rng.normal(size=(dim,)),
        "Transformer/encoder_norm/bias": rng.normal(size=(dim,)),
        "head/kernel": rng.normal(size=(dim, 10)),
        "head/bias": rng.normal(size=(10,)),
    }
    for i in range(depth):
        b = f"Transformer/encoderblock_{i}"
        a = f"{b}/MultiHeadDotProductAttention_1"
        for ln in ("LayerNorm_0", "LayerNorm_2"):
            w[f"{b}/{ln}/scale"] = 1 + 0.1 * rng.normal(size=(dim,))
            w[f"{b}/{ln}/bias"] = 0.1 * rng.normal(size=(dim,))
        for n in ("query", "key", "value"):
            w[f"{a}/{n}/kernel"] = 0.1 * rng.normal(size=(dim, heads, head_dim))
            w[f"{a}/{n}/bias"] = 0.1 * rng.normal(size=(heads, head_dim))
        w[f"{a}/out/kernel"] = 0.1 * rng.normal(size=(heads, head_dim, dim))
        w[f"{a}/out/bias"] = 0.1 * rng.normal(size=(dim,))
        w[f"{b}/MlpBlock_3/Dense_0/kernel"] = 0.1 * rng.normal(size=(dim, mlp))
        w[f"{b}/MlpBlock_3/Dense_0/bias"] = 0.1 * rng.normal(size=(mlp,))
        w[f"{b}/MlpBlock_3/Dense_1/kernel"] = 0.1 * rng.normal(size=(mlp, dim))
        w[f"{b}/MlpBlock_3/Dense_1/bias"] = 0.1 * rng.normal(size=(dim,))
    return {k: v.astype(np.float32) for k, v in w.items()}


def test_npz_loading_agrees_with_timm_loader(tmp_path):
    from timm.models.vision_transformer import VisionTransformer, _load_weights

    npz = _google_npz()
    path = tmp_path / "vit.npz"
    np.savez(path, **npz)
    timm_vit = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=3, num_heads=2, mlp_ratio=2,
                                 num_classes=10).eval()
    _load_weights(timm_vit, str(path))

    config = VTAMIQConfig(embed_dim=32, depth=2, num_heads=2, mlp_dim=64, patch_size=4, pos_grid=4, num_groups=1,
                          blocks_per_group=1, ca_reduction=4, head_hidden=8)
    model = load_backbone(VTAMIQ(config).eval(), backbone_from_npz(path, config))
    # Same weights from timm's own state_dict, through the timm converter.
    from_timm = backbone_from_timm(timm_vit.state_dict(), config)
    for key, value in from_timm.items():
        torch.testing.assert_close(model.state_dict()[key], value, atol=0, rtol=0, msg=key)

    tokens = torch.randn(2, 9, 32)
    with torch.no_grad():
        ours, theirs = tokens, tokens
        for i in range(config.depth):
            ours = model.backbone.blocks[i](ours)
            theirs = timm_vit.blocks[i](theirs)
            torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)
        # Patch embedding: our Linear on a (C, H, W)-flattened patch equals timm's conv.
        image = torch.randn(1, 3, 4, 4)
        torch.testing.assert_close(model.backbone.patch_embed(image.reshape(1, -1)),
                                   timm_vit.patch_embed.proj(image).reshape(1, -1), atol=1e-5, rtol=1e-5)


def test_npz_loading_reports_missing_keys(tmp_path):
    npz = _google_npz(depth=1)
    config = VTAMIQConfig(embed_dim=32, depth=2, num_heads=2, mlp_dim=64, patch_size=4, pos_grid=4, num_groups=1,
                          blocks_per_group=1, ca_reduction=4, head_hidden=8)
    with pytest.raises(KeyError, match="encoderblock_1"):
        backbone_from_npz(npz, config)


def test_pos_embed_resampling_matches_scipy_zoom_and_keeps_cls():
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    table = torch.randn(1, 1 + 14 * 14, 8, dtype=torch.float64)
    out = resample_pos_embed(table, 24)
    assert out.shape == (1, 1 + 24 * 24, 8)
    assert torch.equal(out[:, 0], table[:, 0])
    grid = table[0, 1:].reshape(14, 14, 8).numpy()
    expected = scipy_ndimage.zoom(grid, (24 / 14, 24 / 14, 1), order=1)
    np.testing.assert_allclose(out[0, 1:].reshape(24, 24, 8).numpy(), expected, atol=1e-6)
    # A backbone with a different grid from the config loads after resampling.
    npz = _google_npz(grid=3)
    config = VTAMIQConfig(embed_dim=32, depth=1, num_heads=2, mlp_dim=64, patch_size=4, pos_grid=6, num_groups=1,
                          blocks_per_group=1, ca_reduction=4, head_hidden=8)
    weights = backbone_from_npz(npz, config)
    assert weights["backbone.pos_embed"].shape == (1, 37, 32)
    load_backbone(VTAMIQ(config), weights)
