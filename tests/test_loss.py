"""VTAMIQLoss: frozen, eval-pinned, differentiable w.r.t. the images, finite gradients."""

from __future__ import annotations

import pytest
import torch

from vtamiq_metric import VTAMIQLoss, score


def test_gradients_reach_dist_and_never_the_parameters(tiny_model, image_pair):
    ref, dist = image_pair
    dist = dist.clone().requires_grad_()
    loss_fn = VTAMIQLoss(tiny_model, num_patches=24)
    loss = loss_fn(ref, dist)
    loss.backward()
    assert loss.ndim == 0
    assert dist.grad is not None and torch.isfinite(dist.grad).all() and dist.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss_fn.parameters())


def test_ref_gets_gradients_when_it_requires_them(tiny_model, image_pair):
    ref, dist = (t.clone().requires_grad_() for t in image_pair)
    VTAMIQLoss(tiny_model, num_patches=16)(ref, dist).backward()
    assert ref.grad is not None and torch.isfinite(ref.grad).all()


def test_stays_in_eval_mode(tiny_model):
    loss_fn = VTAMIQLoss(tiny_model)
    container = torch.nn.Sequential(loss_fn).train()
    assert not loss_fn.training and not loss_fn.model.training and container.training
    assert all(not m.training for m in loss_fn.modules())


@pytest.mark.parametrize("kind", ["identical", "constant"])
def test_gradients_are_finite_for_identical_and_constant_images(tiny_model, kind):
    base = torch.full((1, 3, 32, 32), 0.5) if kind == "constant" else torch.rand(1, 3, 32, 32)
    dist = base.clone().requires_grad_()
    VTAMIQLoss(tiny_model, num_patches=16)(base, dist).backward()
    assert torch.isfinite(dist.grad).all()


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_reduction(tiny_model, reduction):
    gen = torch.Generator().manual_seed(0)
    ref = torch.rand(3, 3, 32, 32, generator=gen)
    dist = (ref + 0.1 * torch.rand(ref.shape, generator=gen)).clamp(0, 1)
    out = VTAMIQLoss(tiny_model, num_patches=16, reduction=reduction, resample=False)(ref, dist)
    per_pair = score(ref, dist, model=tiny_model, num_patches=16, precision="fp32")
    expected = {"none": per_pair, "mean": per_pair.mean(), "sum": per_pair.sum()}[reduction]
    torch.testing.assert_close(out.detach(), expected)


def test_resampling_default_and_fixed_positions(tiny_model, image_pair):
    ref, dist = image_pair
    moving = VTAMIQLoss(tiny_model, num_patches=16)
    fixed = VTAMIQLoss(tiny_model, num_patches=16, resample=False)
    assert moving(ref, dist) != moving(ref, dist)
    assert fixed(ref, dist) == fixed(ref, dist)
    # Fresh positions follow the seed sequence, so a new loss reproduces the same run.
    again = VTAMIQLoss(tiny_model, num_patches=16)
    first = again(ref, dist)
    assert first == VTAMIQLoss(tiny_model, num_patches=16)(ref, dist)


def test_bad_reduction_and_inputs(tiny_model):
    with pytest.raises(ValueError, match="reduction must be one of"):
        VTAMIQLoss(tiny_model, reduction="max")
    with pytest.raises(ValueError, match="same size"):
        VTAMIQLoss(tiny_model)(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 31))


def test_accepts_whatever_score_accepts(tiny_model, tmp_path):
    import numpy as np
    from PIL import Image

    from vtamiq_metric import score

    gen = np.random.default_rng(0)
    ref = gen.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    dist = np.clip(ref.astype(int) + gen.integers(-30, 31, ref.shape), 0, 255).astype(np.uint8)
    Image.fromarray(ref).save(tmp_path / "ref.png")
    refs, dists = [str(tmp_path / "ref.png"), Image.fromarray(ref)], [dist, Image.fromarray(dist)]
    loss_fn = VTAMIQLoss(tiny_model, num_patches=16, reduction="none", resample=False)
    expected = score(refs, dists, model=tiny_model, num_patches=16, seed=0, precision="fp32")
    torch.testing.assert_close(loss_fn(refs, dists), expected)


def test_takes_what_a_network_emits_clamped_with_a_straight_through_gradient(tiny_model, image_pair):
    ref, _ = image_pair
    gen = torch.Generator().manual_seed(3)
    raw = ref + 0.08 * torch.randn(ref.shape, generator=gen)  # an unconstrained conv's output: about -0.2 to 1.2
    assert raw.min() < -0.05 and raw.max() > 1.05
    loss_fn = VTAMIQLoss(tiny_model, num_patches=24, resample=False)
    with pytest.raises(ValueError, match=r"dist: expected values in \[0, 1\]"):
        score(ref, raw, model=tiny_model, num_patches=24)  # score() keeps its check
    out = raw.clone().requires_grad_()
    loss = loss_fn(ref, out)
    clamped = raw.clamp(0, 1).requires_grad_()
    expected = loss_fn(ref, clamped)
    assert loss.item() == expected.item()  # the metric sees the clamped image
    loss.backward()
    expected.backward()
    # Straight-through: every pixel gets the gradient of its clamped value, out-of-range ones included.
    torch.testing.assert_close(out.grad, clamped.grad, rtol=0, atol=0)
    outside = (raw < 0) | (raw > 1)
    assert out.grad[outside].abs().sum() > 0
    for bad in (float("nan"), float("inf")):
        broken = raw.clone()
        broken[0, 0, 0, 0] = bad
        with pytest.raises(ValueError, match="NaN|infinite"):
            loss_fn(ref, broken)


def test_the_call_counter_is_a_buffer_so_a_resumed_run_continues_the_seed_sequence(tiny_model, image_pair, tmp_path):
    ref, dist = image_pair
    run = VTAMIQLoss(tiny_model, num_patches=16)
    first = [run(ref, dist).item() for _ in range(3)]
    assert int(run.calls) == 3 and "calls" in run.state_dict()
    torch.save(run.state_dict(), tmp_path / "loss.pt")
    continued = [run(ref, dist).item() for _ in range(2)]
    resumed = VTAMIQLoss(tiny_model, num_patches=16)
    resumed.load_state_dict(torch.load(tmp_path / "loss.pt", weights_only=True))
    assert [resumed(ref, dist).item() for _ in range(2)] == continued  # seeds 3 and 4, not 0 and 1 again
    assert continued != first[:2]
    # A state dict saved before the counter existed still loads, strictly, and starts the count at 0.
    old = {k: v for k, v in run.state_dict().items() if k != "calls"}
    legacy = VTAMIQLoss(tiny_model, num_patches=16)
    legacy.load_state_dict(old)
    assert int(legacy.calls) == 0 and legacy(ref, dist).item() == first[0]
    # Inside a training module, under a prefix, too.
    holder = torch.nn.ModuleDict({"loss": VTAMIQLoss(tiny_model, num_patches=16)})
    holder.load_state_dict({f"loss.{k}": v for k, v in run.state_dict().items()})
    assert int(holder["loss"].calls) == 5
