"""The trainer (``fit``) on a tiny fake KADID-10k (official layout), tiny preset, CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vtamiq_metric import load_model, score
from vtamiq_metric.training import cli
from vtamiq_metric.training.config import TrainConfig
from vtamiq_metric.training.data import PairPatches
from vtamiq_metric.training.train import fit


def _config(kadid, tmp_path, **changes) -> TrainConfig:
    base = {"dataset": "kadid10k", "data_root": str(kadid), "output": str(tmp_path / "run"), "model_preset": "tiny",
            "epochs": 2, "lr": 1e-3, "lr_milestones": [1], "batch_size": 4, "train_patches": 8, "eval_patches": 12,
            "workers": 0, "progress": False, "val_fraction": 0.2, "test_fraction": 0.2}
    return TrainConfig(**{**base, **changes})


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def test_two_epoch_run_writes_checkpoints_metrics_and_a_usable_model(kadid, tmp_path):
    result = fit(_config(kadid, tmp_path))
    out = result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows[1]["lr"] == pytest.approx(1e-4)  # decayed x0.1 at the milestone
    assert all(np.isfinite(r["train_loss"]) for r in rows)
    assert (out / "metrics.csv").read_text().splitlines()[0].startswith("epoch,")
    assert (out / "checkpoints" / "last.pt").is_file() and not list(out.glob("checkpoints/.*.tmp"))
    split = json.loads((out / "split.json").read_text())
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (3, 1, 1)
    assert result.test is not None and set(result.test) >= {"srocc", "krocc", "plcc"}

    export = tmp_path / "export"
    assert cli.main(["export", "--checkpoint", str(out), "--out", str(export)]) == 0
    model = load_model(export)
    assert model.provenance["training_config"]["dataset"] == "kadid10k"
    assert "Scores are distortions" in (export / "README.md").read_text()
    ref, dist = kadid / "images" / "I01.png", kadid / "images" / "I01_01_04.png"
    assert torch.isfinite(score(str(ref), str(dist), model=model, num_patches=12)).all()


def test_run_without_validation_items_warns_and_keeps_the_last_epoch(kadid, tmp_path, caplog):
    with caplog.at_level("WARNING"):
        result = fit(_config(kadid, tmp_path, val_fraction=0.0, max_steps_per_epoch=1))
    assert "no validation items" in caplog.text
    assert result.best_epoch == 1  # the last of 2 epochs
    assert load_model(result.best_dir).provenance["epoch"] == 1


def test_tied_validation_scores_keep_the_later_epoch():
    from vtamiq_metric.training.checkpoint import Progress

    progress = Progress()
    assert progress.update(0, 1.0) and progress.best_epoch == 0
    assert progress.update(1, 1.0) and progress.best_epoch == 1  # a tie: the later epoch (was: epoch 0 kept)
    assert not progress.update(2, 0.9) and progress.best_epoch == 1
    assert not progress.update(3, float("nan")) and (progress.best_epoch, progress.best_score) == (1, 1.0)
    first_nan = Progress()
    assert first_nan.update(0, float("nan")) and first_nan.best_score == float("-inf")
    assert first_nan.update(1, -1.0) and first_nan.best_epoch == 1


def test_a_run_whose_validation_srocc_ties_selects_the_last_tied_epoch(kadid, tmp_path, monkeypatch):
    # Issue 21 item 13: with validation SROCC 1.0 in every epoch (a tiny set), epoch 0 stayed "best".
    from vtamiq_metric.training import train

    monkeypatch.setattr(train, "_validate", lambda *args, **kwargs: {"srocc": 1.0, "selection": 1.0})
    result = fit(_config(kadid, tmp_path, epochs=3, max_steps_per_epoch=1))
    assert (result.best_epoch, result.best_score) == (2, 1.0)
    assert load_model(result.best_dir).provenance["epoch"] == 2


def test_predict_refuses_zero_repeats(kadid, tmp_path, tiny_model):
    from vtamiq_metric.training.datasets import get_dataset
    from vtamiq_metric.training.train import predict

    items = PairPatches(get_dataset("kadid10k", str(kadid)).records[:2], 8, 16, tiny_model.config.sampling, 0)
    with pytest.raises(ValueError, match=r"repeats must be an int >= 1 \(seeded draws averaged per item\), got 0"):
        predict(tiny_model, items, _config(kadid, tmp_path), torch.device("cpu"), repeats=0)


@pytest.mark.slow
def test_resume_after_interruption_matches_an_uninterrupted_run(kadid, tmp_path, monkeypatch):
    full = fit(_config(kadid, tmp_path / "a"))
    expected = _state(full.output / "checkpoints" / "last.pt")

    original = PairPatches.set_epoch

    def interrupt_at_epoch_1(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        original(self, epoch)

    monkeypatch.setattr(PairPatches, "set_epoch", interrupt_at_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        fit(_config(kadid, tmp_path / "b"))
    monkeypatch.setattr(PairPatches, "set_epoch", original)
    assert json.loads((tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 0
    resumed = fit(_config(kadid, tmp_path / "b"), resume=True)
    got = _state(resumed.output / "checkpoints" / "last.pt")
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert len((resumed.output / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_failing_validation_keeps_the_trained_epoch(kadid, tmp_path, monkeypatch, caplog):
    # A non-finite validation prediction ended a run after an hour of training and lost the epoch.
    from vtamiq_metric.training import train

    original = train._validate

    def fail_at_epoch_0(model, items, config, device, *, shard=False):
        raise ValueError("expected finite pred, got 1 non-finite value(s) out of 2")

    monkeypatch.setattr(train, "_validate", fail_at_epoch_0)
    with caplog.at_level("ERROR"), pytest.raises(ValueError, match="non-finite"):
        fit(_config(kadid, tmp_path))
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0
    assert "epoch 0 is trained and checkpointed" in caplog.text
    monkeypatch.setattr(train, "_validate", original)
    resumed = fit(_config(kadid, tmp_path), resume=True)
    assert [json.loads(line)["epoch"] for line in (resumed.output / "metrics.jsonl").read_text().splitlines()] == [1]
