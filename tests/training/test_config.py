"""``TrainConfig``, ``DatasetOptions``, the stage presets and config files."""

from __future__ import annotations

import pytest

from vtamiq_metric.training.config import STAGES, TrainConfig, load_config_file


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


def test_dataset_options_are_typed_and_keep_the_dict_form(tmp_path):
    from vtamiq_metric.training.config import DatasetOptions

    config = TrainConfig.from_dict(STAGES["bundled-default"])
    assert config.dataset_options == DatasetOptions(label="vsi")
    assert config.to_dict()["dataset_options"] == {"label": "vsi"}  # config.json keeps its old form
    assert TrainConfig.from_dict(config.to_dict()) == config
    options = DatasetOptions.from_dict({"exclude_types": [15], "linearize": False, "parts": ["train", "val"]})
    assert options.kwargs() == {"exclude_types": (15,), "linearize": False, "parts": ("train", "val")}
    assert options.to_dict() == {"exclude_types": [15], "linearize": False, "parts": ["train", "val"]}
    (tmp_path / "c.toml").write_text('dataset = "kadis700k"\ndataset_options = {label = "ms_ssim"}\n')
    assert TrainConfig.from_dict(load_config_file(tmp_path / "c.toml")).dataset_options.label == "ms_ssim"
    with pytest.raises(ValueError, match=r"unknown dataset options \['lable'\]"):
        TrainConfig(dataset_options={"lable": "vsi"})
    with pytest.raises(ValueError, match="dataset option linearize must be a bool, got 'no'"):
        DatasetOptions(linearize="no")
    with pytest.raises(ValueError, match=r"dataset option exclude_types must be a list of int, got \['15'\]"):
        DatasetOptions(exclude_types=["15"])
    with pytest.raises(ValueError, match="dataset_options must be a table of reader options, got list"):
        TrainConfig(dataset_options=["label=vsi"])


def test_example_config_files_load_and_kadis_toml_is_complete():
    import dataclasses
    import re
    from pathlib import Path

    from vtamiq_metric.training.config import STAGES, TrainConfig, load_config_file

    root = Path(__file__).resolve().parents[2]
    files = sorted((root / "examples").glob("*.toml")) + sorted((root / "examples").glob("*.y*ml"))
    assert root / "examples" / "kadis.toml" in files
    for path in files:
        TrainConfig.from_dict(load_config_file(path))
    text = (root / "examples" / "kadis.toml").read_text()
    written = set(re.findall(r"^#? ?(\w+) = ", text, flags=re.M))
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= written  # every setting, commented when None
    settings = load_config_file(root / "examples" / "kadis.toml")
    assert {k: settings[k] for k in STAGES["kadis700k-pretrain"]} == STAGES["kadis700k-pretrain"]
    # every config file a README command names is shipped
    names = re.findall(r"--config ([\w./-]+\.(?:toml|ya?ml|json))", (root / "README.md").read_text())
    assert "examples/kadis.toml" in names
    for name in names:
        assert (root / name).is_file(), name
