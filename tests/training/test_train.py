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
    base = dict(dataset="kadid10k", data_root=str(kadid), output=str(tmp_path / "run"), model_preset="tiny",
                epochs=2, lr=1e-3, lr_milestones=[1], batch_size=4, train_patches=8, eval_patches=12, workers=0,
                progress=False, val_fraction=0.2, test_fraction=0.2)
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
