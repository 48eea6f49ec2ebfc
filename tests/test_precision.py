"""``vtamiq_metric._precision``: what ``precision="auto"`` means, in the one place that decides it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from vtamiq_metric import _precision, score
from vtamiq_metric._precision import PRECISIONS, autocast, cpu_has_native_bf16, uses_bf16
from vtamiq_metric._validation import load_image

_IMAGES = Path(__file__).resolve().parents[1] / "examples" / "images"


@pytest.fixture
def native_bf16(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) native bf16 units."""
    def set_native(value: bool) -> None:
        monkeypatch.setattr(_precision, "cpu_has_native_bf16", lambda: value)
    return set_native


def test_auto_is_bf16_on_cuda_and_on_cpus_with_native_bf16(native_bf16):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    native_bf16(False)
    assert [uses_bf16(cpu, p) for p in PRECISIONS] == [False, False, True]
    assert [uses_bf16(cuda, p) for p in PRECISIONS] == [True, False, True]
    native_bf16(True)
    assert [uses_bf16(cpu, p) for p in PRECISIONS] == [True, False, True]
    assert not uses_bf16(torch.device("mps"), "auto")
    # The trainer keeps "auto" = CUDA only.
    assert [uses_bf16(cpu, p, training=True) for p in PRECISIONS] == [False, False, True]
    assert uses_bf16(cuda, "auto", training=True)


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


def test_autocast_is_bf16_or_nothing_and_checks_the_setting(native_bf16):
    x = torch.ones(2, 2)
    native_bf16(False)
    with autocast(torch.device("cpu"), "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    for precision in ("auto", "fp32"):
        with autocast(torch.device("cpu"), precision):
            assert (x @ x).dtype == torch.float32
    native_bf16(True)
    with autocast(torch.device("cpu"), "auto"):
        assert (x @ x).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "auto", training=True):
        assert (x @ x).dtype == torch.float32
    with pytest.raises(ValueError, match=r"precision must be one of \('auto', 'fp32', 'bf16'\), got 'fp16'"):
        autocast(torch.device("cpu"), "fp16")


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
