"""Saving and loading weights: strict round trips, clear errors, and the Hub path against a local cache."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from vtamiq_metric import hub
from vtamiq_metric.hub import PretrainedCfg, WeightsError, load_model, sha256sum


def _same_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_save_load_round_trip_directory_and_file(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "m", provenance={"seed": 3})
    assert json.loads((tmp_path / "m" / "config.json").read_text())["embed_dim"] == 32
    for source in (tmp_path / "m", tmp_path / "m" / "model.safetensors", str(tmp_path / "m")):
        loaded = load_model(source)
        _same_weights(tiny_model, loaded)
        assert loaded.config == tiny_model.config
        assert loaded.provenance["seed"] == 3
        assert not loaded.training
    pos = torch.rand(1, 8, 2) * 0.99
    patches = torch.randn(1, 8, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(tiny_model(patches, patches * 0.5, pos), loaded(patches, patches * 0.5, pos))


def test_load_rejects_wrong_key_shape_and_corrupt_bytes(tmp_path, tiny_model):
    from safetensors.torch import load_file, save_file

    tiny_model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    meta = {"vtamiq_config": tiny_model.config.to_json()}
    tensors = load_file(weights)

    extra = dict(tensors, **{"bogus.weight": torch.zeros(1)})
    save_file(extra, tmp_path / "extra.safetensors", metadata=meta)
    with pytest.raises(ValueError, match=r"unexpected keys \['bogus.weight'\]"):
        load_model(tmp_path / "extra.safetensors")

    missing = {k: v for k, v in tensors.items() if k != "head.fc2.bias"}
    save_file(missing, tmp_path / "missing.safetensors", metadata=meta)
    with pytest.raises(ValueError, match=r"missing keys \['head.fc2.bias'\]"):
        load_model(tmp_path / "missing.safetensors")

    wrong = dict(tensors, **{"head.fc2.bias": torch.zeros(3)})
    save_file(wrong, tmp_path / "wrong.safetensors", metadata=meta)
    with pytest.raises(ValueError, match=r"'head.fc2.bias' has shape \(3,\), the model expects \(1,\)"):
        load_model(tmp_path / "wrong.safetensors")

    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(WeightsError, match="not a valid safetensors file"):
        load_model(corrupt)

    save_file(tensors, tmp_path / "noconfig.safetensors")
    with pytest.raises(WeightsError, match="no 'vtamiq_config' entry"):
        load_model(tmp_path / "noconfig.safetensors")


def test_load_model_names_unknown_inputs(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'nonexistent'"):
        load_model("nonexistent")
    with pytest.raises(FileNotFoundError, match="no weights at"):
        load_model(tmp_path / "nope.safetensors")
    with pytest.raises(ValueError, match="expected 'hf-hub:org/repo'"):
        load_model("hf-hub:justarepo")


def _fill_hub_cache(cache, repo_id: str, files: dict, commit: str = "a" * 40) -> str:
    """Lay out a Hugging Face cache entry the way huggingface_hub writes it (refs + snapshots)."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    for name, src in files.items():
        shutil.copy(src, snap / name)
    return commit


def test_hub_name_loads_from_a_local_cache_offline(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    tiny_model.save_pretrained(tmp_path / "m")
    commit = _fill_hub_cache(tmp_path / "cache", "org/vtamiq-tiny",
                             {"model.safetensors": tmp_path / "m" / "model.safetensors"})
    for spec in ("hf-hub:org/vtamiq-tiny", f"hf-hub:org/vtamiq-tiny@{commit}"):
        _same_weights(tiny_model, load_model(spec, cache_dir=tmp_path / "cache"))


def test_registered_weights_are_pinned_and_checksummed(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    tiny_model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    commit = _fill_hub_cache(tmp_path / "cache", "org/vtamiq-tiny", {"model.safetensors": weights})
    good = PretrainedCfg(name="vtamiq_test.tiny", sha256=sha256sum(weights), license="Apache-2.0",
                         hf_hub_id="org/vtamiq-tiny", revision=commit)
    monkeypatch.setitem(hub.PRETRAINED, good.name, good)
    assert good.name in hub.list_pretrained()
    _same_weights(tiny_model, load_model(good.name, cache_dir=tmp_path / "cache"))

    bad = PretrainedCfg(name="vtamiq_test.bad", sha256="0" * 64, license="Apache-2.0", hf_hub_id="org/vtamiq-tiny",
                        revision=commit)
    monkeypatch.setitem(hub.PRETRAINED, bad.name, bad)
    with pytest.raises(WeightsError, match="checksum mismatch"):
        load_model(bad.name, cache_dir=tmp_path / "cache")


def test_offline_miss_explains_how_to_work_offline(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match=r"could not get org/absent/model.safetensors@v1.*hf download org/absent"):
        load_model("hf-hub:org/absent@v1", cache_dir=tmp_path / "empty")


def test_load_model_on_a_missing_gpu_says_what_score_says(tiny_model, tmp_path, monkeypatch):
    from vtamiq_metric import score
    from vtamiq_metric._checks import CLI, speaking

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without a GPU
    weights = tiny_model.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError) as from_score:
        score(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), model=tiny_model, device="cuda")
    with pytest.raises(ValueError) as from_load:
        load_model(weights, device="cuda")  # torch alone: RuntimeError("Found no NVIDIA driver ...")
    assert str(from_load.value) == str(from_score.value)
    assert str(from_load.value) == ("device='cuda' was requested but no CUDA device is available "
                                    "(torch.cuda.is_available() is False); use device='cpu' or leave device unset")
    with speaking(CLI), pytest.raises(ValueError, match=r"--device cuda was requested .* use --device cpu or leave "
                                                        r"out --device$"):
        load_model(weights, device="cuda")
    with pytest.raises(ValueError, match="device: expected 'cpu', 'cuda'"):
        load_model(weights, device="gpu0")


def _no_network(monkeypatch, calls: list[dict]) -> None:
    """huggingface_hub as it behaves without a network: every request fails to connect; a download that is not
    local_files_only would retry for about 30 s (recorded here instead)."""
    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise ConnectionError("[Errno -3] Temporary failure in name resolution")

    real_download = huggingface_hub.hf_hub_download

    def download(*args, **kwargs):
        calls.append(kwargs)
        if not kwargs.get("local_files_only"):
            raise AssertionError("a download with network retries was started")
        return real_download(*args, **kwargs)

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)


def test_without_a_network_a_hub_model_fails_at_once_naming_hf_hub_offline_and_the_cache(tmp_path, monkeypatch):
    import time

    from vtamiq_metric._checks import CLI, speaking

    calls: list[dict] = []
    _no_network(monkeypatch, calls)
    started = time.perf_counter()
    with pytest.raises(OSError) as info:
        load_model("hf-hub:x/y", cache_dir=tmp_path / "cache")
    assert time.perf_counter() - started < 5
    message = str(info.value)
    assert "the Hugging Face Hub did not answer" in message and "HF_HUB_OFFLINE=1" in message
    assert str(tmp_path / "cache") in message and "hf download x/y model.safetensors" in message
    assert "pass a local path to load_model" in message
    assert [call["local_files_only"] for call in calls] == [True]  # only the cache was asked
    with speaking(CLI), pytest.raises(OSError, match="pass --model PATH"):
        load_model("hf-hub:x/y", cache_dir=tmp_path / "cache")


def test_without_a_network_a_cached_hub_model_still_loads(tmp_path, tiny_model, monkeypatch):
    calls: list[dict] = []
    _no_network(monkeypatch, calls)
    tiny_model.save_pretrained(tmp_path / "m")
    _fill_hub_cache(tmp_path / "cache", "org/vtamiq-tiny", {"model.safetensors": tmp_path / "m" / "model.safetensors"})
    _same_weights(tiny_model, load_model("hf-hub:org/vtamiq-tiny", cache_dir=tmp_path / "cache"))
    assert calls and all(call["local_files_only"] for call in calls)


def test_retired_names_say_what_became_of_them(monkeypatch):
    assert not set(hub.RETIRED) & set(hub.PRETRAINED)  # a retired name is never also registered
    monkeypatch.setitem(hub.RETIRED, "vtamiq_old.tag", "it was replaced; use the default model")
    with pytest.raises(ValueError, match="model 'vtamiq_old.tag' is no longer registered: it was replaced"):
        hub.load_model("vtamiq_old.tag")
    with pytest.raises(ValueError, match="'vtamiq_tiny_patch16.kadis_photos' is no longer registered: .* git show"):
        hub.load_model("vtamiq_tiny_patch16.kadis_photos")  # the first bundled default
