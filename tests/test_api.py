"""score(): inputs, determinism, repeats, caching, precision, the pixel limit, lazy batches, and errors (tiny random
model on CPU)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import vtamiq_metric
from vtamiq_metric import VTAMIQ, _frontend, api, hub, score
from vtamiq_metric._validation import prepare_pair


def test_returns_one_finite_score_per_pair(tiny_model, image_pair):
    ref, dist = image_pair
    out = score(torch.cat([ref, ref]), torch.cat([dist, ref]), model=tiny_model, num_patches=24)
    assert out.shape == (2,) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_same_seed_same_scores_different_seed_different_scores(tiny_model, image_pair):
    ref, dist = image_pair
    a = score(ref, dist, model=tiny_model, num_patches=24, seed=5)
    b = score(ref, dist, model=tiny_model, num_patches=24, seed=5)
    c = score(ref, dist, model=tiny_model, num_patches=24, seed=6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_global_rng_is_untouched(tiny_model, image_pair):
    state, np_state = torch.get_rng_state(), np.random.get_state()
    score(*image_pair, model=tiny_model, num_patches=16, num_repeats=2)
    assert torch.equal(state, torch.get_rng_state())
    assert all(np.array_equal(a, b) for a, b in zip(np_state[1:2], np.random.get_state()[1:2], strict=True))


def test_repeats_average_seeded_draws_and_report_std(tiny_model, image_pair):
    ref, dist = image_pair
    mean, std = score(ref, dist, model=tiny_model, num_patches=16, num_repeats=3, seed=2, return_std=True)
    draws = torch.stack([score(ref, dist, model=tiny_model, num_patches=16, seed=s) for s in (2, 3, 4)])
    torch.testing.assert_close(mean, draws.mean(0))
    torch.testing.assert_close(std, draws.std(0, unbiased=False))
    _, zero = score(ref, dist, model=tiny_model, num_patches=16, return_std=True)
    assert torch.equal(zero, torch.zeros(1))


def test_accepts_paths_pil_numpy_and_lists(tmp_path, tiny_model, image_pair):
    ref, dist = image_pair
    ref8 = (ref[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    dist8 = (dist[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(ref8).save(tmp_path / "r.png")
    Image.fromarray(dist8).save(tmp_path / "d.png")
    from_arrays = score(ref8, dist8, model=tiny_model, num_patches=16)
    from_paths = score(str(tmp_path / "r.png"), tmp_path / "d.png", model=tiny_model, num_patches=16)
    from_pil = score(Image.open(tmp_path / "r.png"), Image.open(tmp_path / "d.png"), model=tiny_model,
                     num_patches=16)
    torch.testing.assert_close(from_arrays, from_paths)
    torch.testing.assert_close(from_arrays, from_pil)
    batch = score([ref8, ref8], [dist8, ref8], model=tiny_model, num_patches=16)
    assert batch.shape == (2,)
    torch.testing.assert_close(batch[0], from_arrays[0])


def test_chunking_does_not_change_scores(tiny_model):
    gen = torch.Generator().manual_seed(0)
    ref = torch.rand(5, 3, 40, 40, generator=gen)
    dist = (ref + 0.2 * torch.rand(ref.shape, generator=gen)).clamp(0, 1)
    whole = score(ref, dist, model=tiny_model, num_patches=16, batch_size=5)
    chunked = score(ref, dist, model=tiny_model, num_patches=16, batch_size=2)
    singles = torch.cat([score(ref[i:i + 1], dist[i:i + 1], model=tiny_model, num_patches=16) for i in range(5)])
    torch.testing.assert_close(whole, chunked)
    torch.testing.assert_close(whole, singles)


def test_named_models_are_cached_per_device(tmp_path, tiny_model, image_pair, monkeypatch):
    tiny_model.save_pretrained(tmp_path / "m")
    monkeypatch.setattr(_frontend, "_MODEL_CACHE", {})
    calls = []
    original = hub.load_model
    monkeypatch.setattr(hub, "load_model", lambda *a, **k: calls.append(a) or original(*a, **k))
    first = score(*image_pair, model=str(tmp_path / "m"), num_patches=16, device="cpu")
    second = score(*image_pair, model=str(tmp_path / "m"), num_patches=16, device="cpu")
    assert len(calls) == 1 and torch.equal(first, second)
    torch.testing.assert_close(first, score(*image_pair, model=tiny_model, num_patches=16))


@pytest.mark.parametrize("layout", ["directory", "file"])
def test_new_weights_saved_to_a_cached_path_are_loaded_again(tmp_path, image_pair, monkeypatch, layout):
    # Issue 23 item 12: score(model=path) kept the first model loaded from a path; after new weights were saved there
    # it still returned the old model's scores.
    from safetensors.torch import save_file

    from vtamiq_metric.model.serialization import CONFIG_META

    def save(seed):
        torch.manual_seed(seed)
        model = VTAMIQ("tiny").eval()
        if layout == "directory":
            model.save_pretrained(tmp_path / "m")
            return model, str(tmp_path / "m")
        path = tmp_path / "m.safetensors"  # the same size each time: a new file put in place of the old one
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "new"),
                  metadata={CONFIG_META: json.dumps(model.config.to_dict())})
        (tmp_path / "new").replace(path)
        return model, str(path)

    monkeypatch.setattr(_frontend, "_MODEL_CACHE", {})
    old, path = save(0)
    before = score(*image_pair, model=path, num_patches=16, device="cpu")
    torch.testing.assert_close(before, score(*image_pair, model=old, num_patches=16))
    new, _ = save(1)
    after = score(*image_pair, model=path, num_patches=16, device="cpu")
    torch.testing.assert_close(after, score(*image_pair, model=new, num_patches=16))
    assert not torch.equal(before, after)
    assert len(_frontend._MODEL_CACHE) == 1  # the stale model is dropped, not kept beside the new one


def test_the_identity_of_weights_changes_when_a_file_is_rewritten_in_place(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"first")
    first = _frontend.file_identity(path)
    with open(path, "r+b") as handle:  # the same inode and size, new content
        handle.write(b"again")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))  # however coarse the clock
    assert _frontend.file_identity(path) != first
    assert _frontend.file_identity("vtamiq_kadis_tiny") is None and _frontend.file_identity(tmp_path / "no") is None


def test_default_model_is_used_when_none_is_named(tmp_path, tiny_model, image_pair, monkeypatch):
    tiny_model.save_pretrained(tmp_path / "m")
    entry = hub.PretrainedCfg(name="vtamiq_test.tiny", sha256=hub.sha256sum(tmp_path / "m" / "model.safetensors"),
                              license="Apache-2.0", bundled_path=str(tmp_path / "m" / "model.safetensors"))
    monkeypatch.setitem(hub.PRETRAINED, entry.name, entry)
    monkeypatch.setattr(hub, "DEFAULT_MODEL", entry.name)
    monkeypatch.setattr(_frontend, "_MODEL_CACHE", {})
    torch.testing.assert_close(score(*image_pair, num_patches=16), score(*image_pair, model=tiny_model,
                                                                         num_patches=16))
    monkeypatch.setattr(hub, "DEFAULT_MODEL", None)
    with pytest.raises(ValueError, match="no default VTAMIQ model is bundled"):
        score(*image_pair)


def test_bf16_precision_is_close_to_fp32(tiny_model, image_pair):
    full = score(*image_pair, model=tiny_model, num_patches=32, precision="fp32")
    half = score(*image_pair, model=tiny_model, num_patches=32, precision="bf16")
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, atol=0.02, rtol=0.02)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_repeats": 0}, "num_repeats must be an int >= 1, got 0"),
    ({"num_patches": 0}, "num_patches must be an int >= 1, got 0"),
    ({"batch_size": 0}, "batch_size must be an int >= 1 or None, got 0"),
    ({"precision": "fp8"}, "precision must be one of"),
])
def test_bad_arguments_raise(tiny_model, image_pair, kwargs, match):
    with pytest.raises(ValueError, match=match):
        score(*image_pair, model=tiny_model, **kwargs)


def test_bad_images_raise_clear_errors(tmp_path, tiny_model):
    ref = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"same size.*\(32, 32\).*\(32, 30\)"):
        score(ref, torch.rand(1, 3, 32, 30), model=tiny_model)
    with pytest.raises(ValueError, match="at least 16"):
        score(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), model=tiny_model)
    with pytest.raises(ValueError, match=r"\[0, 1\].*255"):
        score(ref * 255, ref, model=tiny_model)
    bad = ref.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        score(ref, bad, model=tiny_model)
    with pytest.raises(ValueError, match="same number of images, got 2 ref and 1 dist"):
        score(torch.rand(2, 3, 32, 32), ref, model=tiny_model)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        score(str(tmp_path / "missing.png"), ref, model=tiny_model)
    (tmp_path / "corrupt.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="corrupt.png"):
        score(str(tmp_path / "corrupt.png"), ref, model=tiny_model)
    with pytest.raises(ValueError, match="channel"):
        score(torch.rand(1, 2, 32, 32), torch.rand(1, 2, 32, 32), model=tiny_model)
    with pytest.raises(TypeError, match="model must be a name"):
        score(ref, ref, model=3)


def test_public_api_is_small():
    assert sorted(vtamiq_metric.__all__) == sorted(
        ["VTAMIQ", "VTAMIQConfig", "VTAMIQLoss", "__version__", "damage_map", "list_pretrained", "load_model", "score"])


@pytest.mark.slow  # a fresh interpreter
def test_importing_the_package_does_not_import_training():
    import subprocess
    import sys

    code = "import sys, vtamiq_metric; print(any(m.startswith('vtamiq_metric.training') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


@pytest.mark.cuda
def test_cuda_scores_agree_with_cpu_within_bf16_tolerance(tiny_model, image_pair):
    ref, dist = image_pair
    cpu = score(ref, dist, model=tiny_model, num_patches=32, precision="fp32")
    cuda_model = tiny_model.to("cuda")
    gpu32 = score(ref.cuda(), dist.cuda(), model=cuda_model, num_patches=32, precision="fp32")
    gpu16 = score(ref.cuda(), dist.cuda(), model=cuda_model, num_patches=32)
    torch.testing.assert_close(gpu32.cpu(), cpu, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gpu16.cpu(), cpu, atol=0.02, rtol=0.02)


def test_property_sizes_dtypes_and_ranges_give_finite_scores_or_documented_errors(tiny_model):
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=30, deadline=None)
    @hypothesis.given(height=st.integers(8, 48), width=st.integers(8, 48),
                      dtype=st.sampled_from(["uint8", "uint16", "float32", "float64"]),
                      scale=st.sampled_from([1.0, 1.5, -0.1]), nan=st.booleans(), seed=st.integers(0, 2**16))
    def check(height, width, dtype, scale, nan, seed):
        rng = np.random.default_rng(seed)
        values = rng.random((height, width, 3)) * scale
        if nan:
            values[0, 0, 0] = np.nan
        if dtype == "uint8":
            ref = (np.nan_to_num(values).clip(0, 1) * 255).astype(np.uint8)
        elif dtype == "uint16":
            ref = (np.nan_to_num(values).clip(0, 1) * 65535).astype(np.uint16)
        else:
            ref = values.astype(dtype)
        dist = ref[::-1].copy()
        try:
            out = score(ref, dist, model=tiny_model, num_patches=8)
        except (ValueError, TypeError) as exc:
            valid_values = dtype in ("uint8", "uint16") or (scale == 1.0 and not nan)
            assert min(height, width) < 16 or not valid_values, exc
            return
        assert out.shape == (1,) and torch.isfinite(out).all()
        assert min(height, width) >= 16

    check()


def test_max_pixels_refuses_large_images_before_decoding(tiny_model):
    image = np.zeros((64, 80, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"ref\[1\]: expected at most max_pixels=5,000 pixels, got a 80x64 image"):
        prepare_pair([image[:32, :32], image], [image[:32, :32], image], max_pixels=5000)
    with pytest.raises(ValueError, match="max_pixels=100 pixels"):
        score(image, image, model=tiny_model, num_patches=8, max_pixels=100)
    assert score(image, image, model=tiny_model, num_patches=8, max_pixels=None).shape == (1,)
    with pytest.raises(ValueError, match="max_pixels must be an int >= 1 or None, got 0"):
        score(image, image, model=tiny_model, num_patches=8, max_pixels=0)


def test_lazy_batches_give_the_scores_of_one_batch_and_keep_uint8(tiny_model):
    gen = np.random.default_rng(0)
    refs = [gen.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(5)]
    dists = [np.clip(r.astype(int) + gen.integers(-30, 30, r.shape), 0, 255).astype(np.uint8) for r in refs]
    ref8, _ = prepare_pair(refs[0], dists[0], keep_uint8=True)
    assert ref8.dtype == torch.uint8
    floats = [torch.from_numpy(r.astype(np.float32) / np.float32(255)).permute(2, 0, 1) for r in refs]
    dfloats = [torch.from_numpy(d.astype(np.float32) / np.float32(255)).permute(2, 0, 1) for d in dists]
    options = {"model": tiny_model, "num_patches": 16, "precision": "fp32"}
    whole = score(torch.stack(floats), torch.stack(dfloats), **options)
    lazy = score(refs, dists, batch_size=2, **options)
    torch.testing.assert_close(lazy, whole, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"ref\[4\] and dist\[4\] must have the same size, got ref \(32, 48\) and "
                                         r"dist \(40, 48\)"):
        score(refs[:4] + [refs[4][:32]], dists, batch_size=2, **options)


def test_a_list_of_pairs_of_different_sizes_is_grouped_by_size_in_input_order(tiny_model, tmp_path):
    gen = np.random.default_rng(1)
    sizes = [(40, 48), (32, 32), (40, 48), (48, 40), (32, 32), (40, 48)]
    refs = [gen.integers(0, 256, (*size, 3), dtype=np.uint8) for size in sizes]
    dists = [np.clip(r.astype(int) + gen.integers(-40, 40, r.shape), 0, 255).astype(np.uint8) for r in refs]
    paths = []
    for i, (r, d) in enumerate(zip(refs, dists, strict=True)):
        Image.fromarray(r).save(tmp_path / f"r{i}.png")
        Image.fromarray(d).save(tmp_path / f"d{i}.png")
        paths.append((str(tmp_path / f"r{i}.png"), str(tmp_path / f"d{i}.png")))
    options = {"model": tiny_model, "num_patches": 16, "precision": "fp32", "num_repeats": 2}
    one_by_one = torch.cat([score(r, d, **options) for r, d in zip(refs, dists, strict=True)])
    for batch_size in (None, 2):
        mean, std = score(refs, dists, batch_size=batch_size, return_std=True, **options)
        torch.testing.assert_close(mean, one_by_one, rtol=1e-5, atol=1e-6)
        assert std.shape == (6,)
    files = score([p[0] for p in paths], [p[1] for p in paths], batch_size=2, **options)  # sizes from the headers
    torch.testing.assert_close(files, one_by_one, rtol=1e-5, atol=1e-6)
    tensors = score([torch.from_numpy(r).permute(2, 0, 1) for r in refs],  # uint8 (3, H, W) tensors
                    [torch.from_numpy(d).permute(2, 0, 1) for d in dists], **options)
    torch.testing.assert_close(tensors, one_by_one, rtol=1e-5, atol=1e-6)


def test_one_reference_against_many_distorted_images_is_broadcast(tiny_model, tmp_path):
    gen = np.random.default_rng(2)
    ref = gen.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    dists = [np.clip(ref.astype(int) + gen.integers(-k, k + 1, ref.shape), 0, 255).astype(np.uint8)
             for k in (5, 20, 60)]
    options = {"model": tiny_model, "num_patches": 16, "precision": "fp32"}
    repeated = score([ref] * 3, dists, **options)
    Image.fromarray(ref).save(tmp_path / "ref.png")
    for one in (ref, [ref], str(tmp_path / "ref.png"), torch.from_numpy(ref).permute(2, 0, 1)):
        torch.testing.assert_close(score(one, dists, batch_size=2, **options), repeated, rtol=1e-5, atol=1e-6)
    as_float = torch.from_numpy(ref).permute(2, 0, 1).float().div(255)  # (3, H, W)
    batch = torch.stack([torch.from_numpy(d).permute(2, 0, 1).float().div(255) for d in dists])  # (3, 3, H, W)
    torch.testing.assert_close(score(as_float, batch, **options), repeated, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(score(as_float[None], batch, **options), repeated, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="same number of images, got 2 ref and 3 dist"):
        score(batch[:2], batch, **options)


def test_uint8_tensors_score_like_uint8_arrays(tiny_model):
    gen = np.random.default_rng(3)
    ref = gen.integers(0, 256, (2, 40, 48, 3), dtype=np.uint8)
    dist = np.clip(ref.astype(int) + gen.integers(-30, 30, ref.shape), 0, 255).astype(np.uint8)
    options = {"model": tiny_model, "num_patches": 16, "precision": "fp32"}
    arrays = score(ref, dist, **options)
    tensors = score(torch.from_numpy(ref).permute(0, 3, 1, 2), torch.from_numpy(dist).permute(0, 3, 1, 2), **options)
    torch.testing.assert_close(tensors, arrays, rtol=0, atol=0)


def test_score_batch_is_the_core_of_score_and_batch_size_for_its_chunking(tiny_model, image_pair):
    ref, dist = image_pair
    options = api.ScoringOptions(num_patches=16, num_repeats=3, seed=2, precision="fp32")
    scorer = api.resolve(tiny_model, options)
    mean, std = api.score_batch(scorer, ref, dist)
    expected = score(ref, dist, model=tiny_model, num_patches=16, num_repeats=3, seed=2, precision="fp32",
                     return_std=True)
    torch.testing.assert_close((mean, std), expected)
    auto = api.auto_batch_size(tiny_model.config, 16, 48, 64, 10, torch.device("cpu"), half_precision=False)
    assert api.batch_size_for(scorer, 48, 64, 10) == auto
    assert api.batch_size_for(api.resolve(tiny_model, api.ScoringOptions(batch_size=3)), 48, 64, 10) == 3


def test_the_overloads_of_score_type_every_keyword_of_score():
    import inspect
    from typing import get_type_hints

    from vtamiq_metric import api

    keywords = {name for name, p in inspect.signature(api.score).parameters.items() if p.kind is p.KEYWORD_ONLY}
    typed = set(get_type_hints(api._ScoreOptions, globalns=vars(api)))
    assert typed == keywords - {"return_std"}
