"""``vtamiq_metric._precision``: what ``precision="auto"`` means, in the one place that decides it."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from vtamiq_metric import _precision, score
from vtamiq_metric._precision import PRECISIONS, autocast, autocast_dtype, cpu_has_native_bf16, uses_bf16, uses_half
from vtamiq_metric._validation import load_image

_IMAGES = Path(__file__).resolve().parents[1] / "examples" / "images"


@pytest.fixture
def native_bf16(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) native bf16 units."""
    def set_native(value: bool) -> None:
        monkeypatch.setattr(_precision, "cpu_has_native_bf16", lambda: value)
    return set_native


@pytest.fixture
def gpu_bf16(monkeypatch):
    """Pretend the GPU has (True: compute capability >= 8.0) or lacks (False: older) bf16 tensor cores."""
    def set_native(value: bool) -> None:
        monkeypatch.setattr(_precision, "cuda_has_native_bf16", lambda index=None: value)
    return set_native


def test_auto_picks_the_natively_supported_16_bit_type(native_bf16, gpu_bf16):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    bf16, fp16 = torch.bfloat16, torch.float16
    native_bf16(False)
    gpu_bf16(True)
    # PRECISIONS: auto, fp32, bf16, fp16
    assert [autocast_dtype(cpu, p) for p in PRECISIONS] == [None, None, bf16, fp16]
    assert [autocast_dtype(cuda, p) for p in PRECISIONS] == [bf16, None, bf16, fp16]
    gpu_bf16(False)  # e.g. a V100 or T4: fp16 tensor cores, bf16 only emulated
    assert [autocast_dtype(cuda, p) for p in PRECISIONS] == [fp16, None, bf16, fp16]
    assert uses_half(cuda, "auto") and not uses_bf16(cuda, "auto")
    native_bf16(True)
    assert [autocast_dtype(cpu, p) for p in PRECISIONS] == [bf16, None, bf16, fp16]
    assert autocast_dtype(torch.device("mps"), "auto") is None
    # The trainer: bf16 only on GPUs with native bf16, never fp16 (no loss scaling), never bf16 on a CPU.
    assert autocast_dtype(cpu, "auto", training=True) is None
    assert autocast_dtype(cuda, "auto", training=True) is None
    gpu_bf16(True)
    assert autocast_dtype(cuda, "auto", training=True) == bf16


def test_cuda_capability_decides_native_bf16(monkeypatch):
    _precision.cuda_has_native_bf16.cache_clear()
    try:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        for capability, native in (((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)):
            _precision.cuda_has_native_bf16.cache_clear()
            monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None, c=capability: c)
            assert _precision.cuda_has_native_bf16(0) is native, capability
        _precision.cuda_has_native_bf16.cache_clear()
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        assert _precision.cuda_has_native_bf16(0) is False
    finally:
        _precision.cuda_has_native_bf16.cache_clear()


def test_native_bf16_detection_asks_torch_and_falls_back_to_fp32(monkeypatch):
    cpu_has_native_bf16.cache_clear()
    try:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
        assert cpu_has_native_bf16() is True
        cpu_has_native_bf16.cache_clear()
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert cpu_has_native_bf16() is False
        cpu_has_native_bf16.cache_clear()
        monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
        monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
        assert cpu_has_native_bf16() is False  # a torch without the probes: fp32

        def broken() -> bool:
            raise RuntimeError("no cpuinfo")

        cpu_has_native_bf16.cache_clear()
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", broken, raising=False)
        assert cpu_has_native_bf16() is False
    finally:
        cpu_has_native_bf16.cache_clear()


def test_autocast_runs_the_chosen_dtype_and_checks_the_setting(native_bf16):
    x = torch.ones(2, 2)
    native_bf16(False)
    with autocast(torch.device("cpu"), "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp16"):
        assert (x @ x).dtype == torch.float16
    for precision in ("auto", "fp32"):
        with autocast(torch.device("cpu"), precision):
            assert (x @ x).dtype == torch.float32
    native_bf16(True)
    with autocast(torch.device("cpu"), "auto"):
        assert (x @ x).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "auto", training=True):
        assert (x @ x).dtype == torch.float32
    with pytest.raises(ValueError, match=r"precision must be one of \('auto', 'fp32', 'bf16', 'fp16'\), got 'fp8'"):
        autocast(torch.device("cpu"), "fp8")


def test_fp16_scores_match_fp32_and_an_overflow_is_an_error(tiny_model, image_pair):
    ref, dist = image_pair
    exact = score(ref, dist, model=tiny_model, num_patches=16, precision="fp32")
    half = score(ref, dist, model=tiny_model, num_patches=16, precision="fp16")
    torch.testing.assert_close(half, exact, rtol=2e-2, atol=2e-3)
    loud = copy.deepcopy(tiny_model)
    with torch.no_grad():
        loud.head.fc2.weight.mul_(1e6)  # the head's output exceeds float16's 65504
    assert torch.isfinite(score(ref, dist, model=loud, num_patches=16, precision="fp32")).all()
    with pytest.raises(RuntimeError, match="precision='fp16' ran the model in float16 and an activation overflowed"):
        score(ref, dist, model=loud, num_patches=16, precision="fp16")


def test_every_face_defaults_to_the_documented_precision(tiny_model):
    """score() and the metric evaluate ("auto"); the loss and the damage map differentiate ("fp32")."""
    import inspect

    from vtamiq_metric import VTAMIQLoss, damage_map

    defaults = {"score": inspect.signature(score).parameters["precision"].default,
                "VTAMIQLoss": VTAMIQLoss(tiny_model).precision,
                "damage_map": inspect.signature(damage_map).parameters["precision"].default}
    try:
        from vtamiq_metric.metrics import VTAMIQMetric
    except ImportError:
        pass
    else:
        defaults["VTAMIQMetric"] = VTAMIQMetric(tiny_model).precision
    expected = {"score": "auto", "VTAMIQMetric": "auto", "VTAMIQLoss": "fp32", "damage_map": "fp32"}
    assert defaults == {face: expected[face] for face in defaults}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for face, value in expected.items():
        assert f"| `{face}` | `{value}` |" in readme, face


def _distorted_photographs() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The two example photographs under four synthetic distortions at three levels each (24 pairs)."""
    gen = torch.Generator().manual_seed(0)
    refs, dists = [], []
    for name in ("astronaut", "coffee"):
        ref = load_image(_IMAGES / f"{name}_ref.png")[None]  # (1, 3, H, W)
        for level in (1, 2, 3):
            noise = ref + 0.02 * level * torch.randn(ref.shape, generator=gen)
            k = 2 * level + 1
            blur = F.avg_pool2d(F.pad(ref, (k // 2,) * 4, mode="replicate"), k, stride=1)
            contrast = (ref - 0.5) * (1 - 0.2 * level) + 0.5
            step = 2 ** (6 - level)  # posterisation: 32, 16, 8 levels
            quant = torch.floor(ref * step) / step
            for dist in (noise, blur, contrast, quant):
                refs.append(ref[0])
                dists.append(dist.clamp(0, 1)[0])
    return refs, dists


@pytest.mark.slow  # about 20 s on 2 CPU cores: 48 forwards of the bundled model at 1024 patches
def test_bf16_ranks_the_bundled_models_scores_of_photographs_like_fp32():
    refs, dists = _distorted_photographs()
    # The two photographs differ in size: score each one's 12 pairs as a batch.
    exact = np.concatenate([score(refs[i:i + 12], dists[i:i + 12], precision="fp32", device="cpu").numpy()
                            for i in (0, 12)])
    fast = np.concatenate([score(refs[i:i + 12], dists[i:i + 12], precision="bf16", device="cpu").numpy()
                           for i in (0, 12)])
    assert np.ptp(exact) > 10 * np.abs(fast - exact).max()  # the pairs spread well beyond the bf16 error
    srocc = spearmanr(exact, fast).statistic
    print(f"SROCC(bf16, fp32) = {srocc:.5f} over {len(exact)} pairs, largest error {np.abs(fast - exact).max():.2e}")
    assert srocc >= 0.999
    # precision="auto" on this CPU is one of the two, as _precision decides.
    auto = score(refs[:2], dists[:2], device="cpu").numpy()
    expected = fast[:2] if uses_bf16(torch.device("cpu"), "auto") else exact[:2]
    np.testing.assert_allclose(auto, expected, rtol=1e-5, atol=1e-6)
