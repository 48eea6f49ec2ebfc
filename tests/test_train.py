"""The trainer and `vtamiq-train` on a tiny fake KADID-10k (official layout), tiny preset, CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import build_fake_kadid
from vtamiq_metric import load_model, score
from vtamiq_metric.training import cli
from vtamiq_metric.training.config import STAGES, TrainConfig, load_config_file
from vtamiq_metric.training.data import PairPatches, TripletPatches, derive_seed
from vtamiq_metric.training.train import fit


@pytest.fixture(scope="module")
def kadid(tmp_path_factory):
    """5 references x 4 distortions, 32x40 PNGs, MOS falling with the noise level."""
    return build_fake_kadid(tmp_path_factory.mktemp("kadid10k"), levels=4)


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


def test_cli_train_with_config_file_flags_and_workers(kadid, tmp_path, capsys):
    config_file = tmp_path / "run.toml"
    config_file.write_text(f'dataset = "kadid10k"\ndata_root = "{kadid}"\nmodel_preset = "tiny"\nepochs = 5\n'
                           f'batch_size = 4\ntrain_patches = 8\neval_patches = 8\n')
    code = cli.main(["train", "--config", str(config_file), "--epochs", "1", "--workers", "1", "--output",
                     str(tmp_path / "cli_run"), "--no-progress", "--max-steps-per-epoch", "2"])
    assert code == 0
    saved = json.loads((tmp_path / "cli_run" / "config.json").read_text())
    assert saved["epochs"] == 1 and saved["workers"] == 1 and saved["max_steps_per_epoch"] == 2
    assert "best epoch 0" in capsys.readouterr().out


def test_cli_evaluate_and_splits(kadid, tmp_path, tiny_model, capsys):
    tiny_model.save_pretrained(tmp_path / "m")
    out = tmp_path / "eval.json"
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "m"), "--dataset", "kadid10k", "--data-root",
                     str(kadid), "--patches", "8", "--workers", "0", "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    assert "kadid10k" in json.dumps(data) and out.with_suffix(".md").is_file()
    assert "SROCC" in capsys.readouterr().out
    assert cli.main(["splits", "--dataset", "kadid10k", "--data-root", str(kadid), "--out",
                     str(tmp_path / "s.json")]) == 0
    assert "3/1/1" in capsys.readouterr().out


def test_cli_reports_bad_inputs(tmp_path, capsys):
    assert cli.main(["train", "--dataset", "kadid10k", "--data-root", str(tmp_path / "none"), "--model-preset",
                     "tiny", "--no-progress"]) == 1
    assert "vtamiq-train: error" in capsys.readouterr().err
    assert cli.main(["train", "--dataset", "kadid10k"]) == 1
    assert "no data root" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--loss", "huber"])


def test_config_validation_and_files(tmp_path):
    with pytest.raises(ValueError, match="unknown training settings \\['epocs'\\]"):
        TrainConfig.from_dict({"epocs": 3})
    with pytest.raises(ValueError, match="TrainConfig.batch_size must be an int >= 1"):
        TrainConfig(batch_size=0)
    (tmp_path / "c.yaml").write_text("epochs: 3\nlr: 0.001\n")
    assert load_config_file(tmp_path / "c.yaml") == {"epochs": 3, "lr": 0.001}
    (tmp_path / "c.txt").write_text("x")
    with pytest.raises(ValueError, match="must end in .toml"):
        load_config_file(tmp_path / "c.txt")
    assert STAGES["kadis700k-pretrain"]["epochs"] == 5 and STAGES["finetune-tid2013"]["lr_milestones"] == [12]
    paper = TrainConfig()
    assert (paper.lr, paper.lr_milestones, paper.epochs, paper.batch_size, paper.train_patches,
            paper.eval_patches) == (1e-5, [12], 20, 20, 256, 1024)


def test_fresh_positions_each_epoch_and_reproducible(kadid):
    from vtamiq_metric.training.datasets import get_dataset
    from vtamiq_metric.sampling import SamplingConfig

    records = get_dataset("kadid10k", kadid).records
    items = PairPatches(records, 8, 16, SamplingConfig(), seed=0)
    items.set_epoch(0)
    a = items[3]["pos"]
    items.set_epoch(1)
    b = items[3]["pos"]
    items.set_epoch(0)
    assert torch.equal(a, items[3]["pos"]) and not torch.equal(a, b)
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2) != derive_seed(0, 2, 1)


def test_triplets_share_positions(tmp_path):
    from vtamiq_metric.training.datasets.base import PairwiseRecord
    from vtamiq_metric.sampling import SamplingConfig

    rng = np.random.default_rng(0)
    paths = []
    for name in ("r", "a", "b"):
        path = tmp_path / f"{name}.png"
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    record = PairwiseRecord(ref=paths[0], dist_a=paths[1], dist_b=paths[2], prob_a=0.7, ref_id="r")
    item = TripletPatches([record], 6, 16, SamplingConfig(), seed=0)[0]
    b = torch.from_numpy(np.asarray(Image.open(paths[2]), dtype=np.float32) / 255).permute(2, 0, 1)
    top = (item["pos"] * 40 - 8).round().long()
    for k in range(6):
        r, c = top[k].tolist()
        assert torch.allclose(item["dist_b"][k], b[:, r:r + 16, c:c + 16])
