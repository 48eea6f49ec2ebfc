"""`PatchFidelity` and the exact zero at identity of models with ``zero_identity``."""

from __future__ import annotations

import pytest
import torch

from vtamiq_metric import VTAMIQ
from vtamiq_metric.model.config import PRESETS
from vtamiq_metric.model.fidelity import PatchFidelity

_CONFIG = PRESETS["tiny"].replace(zero_identity=True, token_distance=True, patch_fidelity=True, mean=(0.5,) * 3,
                                  std=(0.5,) * 3)


def _patches(batch: int = 3, num: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[0, 1] patches with some structure, normalised with mean 0.5 / std 0.5."""
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.rand(batch, num, 3, 16, 16, generator=gen)
    pos = torch.rand(batch, num, 2, generator=gen) * 0.999
    return (pixels - 0.5) / 0.5, pos


def _model(seed: int = 0) -> VTAMIQ:
    torch.manual_seed(seed)
    return VTAMIQ(_CONFIG).eval()


def test_state_dict_key_and_default_off():
    assert _model().state_dict()["patch_fidelity.weight"].shape == (2, 2, 3)
    assert VTAMIQ("tiny").patch_fidelity is None
    for name in ("paper2021", "release2022", "head2024"):
        assert PRESETS[name].patch_fidelity is False
    with pytest.raises(TypeError, match="patch_fidelity must be a bool"):
        PRESETS["tiny"].replace(patch_fidelity="yes")


def test_fidelity_is_zero_for_identical_patches_and_positive_otherwise():
    fidelity = PatchFidelity(_CONFIG)
    ref, _ = _patches()
    dist = ref.clone()
    dist[1] += 0.2  # a brightness shift of 0.1 in [0, 1] units on every channel
    dist[2] = dist[2] * torch.tensor([1.2, 1.0, 0.8]).view(3, 1, 1)  # a cast
    out = fidelity(ref, dist)
    assert out[0].item() == 0.0
    assert bool((out[1:] > 0).all())


def test_fidelity_sees_a_colour_cast_that_keeps_the_luminance():
    fidelity = PatchFidelity(_CONFIG)
    ref = torch.full((1, 4, 3, 16, 16), 0.0)  # mid-grey in normalised units
    # +0.1 on red, -0.1 on green: (R + G + B) / 3 is unchanged, red-green moves by 0.2.
    dist = ref + torch.tensor([0.2, -0.2, 0.0]).view(3, 1, 1)
    assert fidelity(ref, dist).item() > 0.01


def test_fidelity_gradient_pulls_towards_the_reference():
    fidelity = PatchFidelity(_CONFIG)
    ref, _ = _patches(batch=1, num=16, seed=1)
    dist = (ref + 0.1 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(2))).requires_grad_(True)
    (grad,) = torch.autograd.grad(fidelity(ref, dist).sum(), dist)
    cosine = torch.nn.functional.cosine_similarity(grad.flatten(), (dist - ref).detach().flatten(), dim=0)
    assert float(cosine) > 0.3


def test_fidelity_is_float32_under_autocast_and_refuses_odd_patches():
    fidelity = PatchFidelity(_CONFIG)
    ref, _ = _patches()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fidelity(ref, ref * 0.9).dtype == torch.float32
    with pytest.raises(ValueError, match="even patch_size"):
        PatchFidelity(_CONFIG.replace(patch_size=15))


def test_score_sums_its_parts():
    model = _model()
    ref, pos = _patches()
    with torch.no_grad():
        feats = model.forward_features(ref, ref * 0.9, pos)
    assert torch.allclose(feats["score"], feats["head"].float() + feats["distance"] + feats["fidelity"])


@pytest.mark.parametrize("position", [0, 1, 3])
def test_identical_pairs_score_exactly_zero_with_zero_gradient_at_every_batch_position(position):
    model = _model()
    ref, pos = _patches(batch=4, seed=position)
    dist = (ref + 0.3 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(5)))
    dist[position] = ref[position]
    dist.requires_grad_(True)
    score = model(ref, dist, pos)
    assert score[position].item() == 0.0
    assert bool((score[torch.arange(4) != position] > 0).all())
    (grad,) = torch.autograd.grad(score.sum(), dist)
    assert grad[position].abs().max().item() == 0.0
    assert grad[(position + 1) % 4].abs().max().item() > 0.0


def test_a_training_step_does_not_move_an_identical_pair_away():
    # SGD started exactly at the reference stays there (the gradient at identity is exactly zero).
    model = _model()
    ref, pos = _patches(batch=2)
    dist = ref.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([dist], lr=1.0)
    for _ in range(3):
        optimizer.zero_grad()
        model(ref, dist, pos).sum().backward()
        optimizer.step()
    assert torch.equal(dist.detach(), ref)


def test_a_saved_model_with_fidelity_loads_and_scores_the_same(tmp_path):
    # Models are built on the meta device and filled from the state dict: nothing the module needs may live outside it.
    from vtamiq_metric import load_model

    model = _model()
    with torch.no_grad():
        model.patch_fidelity.weight.fill_(0.5)
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"))
    ref, pos = _patches()
    with torch.no_grad():
        assert torch.equal(loaded(ref, ref * 0.8, pos), model(ref, ref * 0.8, pos))


def test_near_identical_patches_give_a_finite_non_negative_fidelity():
    # float32 variances E[x^2] - mu^2 of bright windows that differ by one grey level round so that the structure
    # term comes out slightly negative (-8e-4 here); its square root was NaN (a validation prediction of a KADIS
    # "level 1" pair was).
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(4096, 3, 1, 1, generator=gen) * 2 - 0.5  # opponent channels span about [-1, 1.5]
    ref = base + torch.randint(0, 3, (4096, 3, 16, 16), generator=gen).float() / 255
    dist = ref.clone()
    dist[:, :, 3, 5] += 1 / 255
    for mean_term, structure_term in PatchFidelity._terms(ref, dist):  # quarter windows, whole patch
        assert bool((structure_term >= 0).all()) and bool((mean_term >= 0).all())
    fidelity = PatchFidelity(_CONFIG)
    rgb = torch.rand(2, 64, 3, 1, 1, generator=gen) * 0.8 + 0.1 + torch.zeros(2, 64, 3, 16, 16)
    near = rgb.clone()
    near[:, :, :, 3, 5] += 1 / 255
    out = fidelity((rgb - 0.5) / 0.5, (near - 0.5) / 0.5)
    assert bool(torch.isfinite(out).all()) and bool((out >= 0).all())


def test_the_whole_patch_statistics_equal_pooling_the_whole_patch():
    """The whole-patch terms come from the quarters' statistics (one pooling pass); they equal pooling directly."""
    gen = torch.Generator().manual_seed(3)
    ref = torch.rand(64, 3, 16, 16, generator=gen)
    dist = (ref + 0.2 * torch.randn(ref.shape, generator=gen)).clamp(0, 1)
    (_, _), (mean_term, structure_term) = PatchFidelity._terms(ref.double(), dist.double())
    mu_r, mu_d = ref.double().mean((-2, -1)), dist.double().mean((-2, -1))
    var_r = (ref.double() ** 2).mean((-2, -1)) - mu_r**2
    var_d = (dist.double() ** 2).mean((-2, -1)) - mu_d**2
    cov = (ref.double() * dist.double()).mean((-2, -1)) - mu_r * mu_d
    torch.testing.assert_close(mean_term, (mu_r - mu_d) ** 2, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(structure_term, 1 - (2 * cov + 0.03**2) / (var_r + var_d + 0.03**2), rtol=1e-10,
                               atol=1e-12)
