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
    with pytest.raises(TypeError, match="dataset_options must be a table of reader options, got list"):
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
    written = set(re.findall(r"^#? ?(\w+) = ", text, flags=re.MULTILINE))
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= written  # every setting, commented when None
    settings = load_config_file(root / "examples" / "kadis.toml")
    assert {k: settings[k] for k in STAGES["kadis700k-pretrain"]} == STAGES["kadis700k-pretrain"]
    # every config file a README command names is shipped
    names = re.findall(r"--config ([\w./-]+\.(?:toml|ya?ml|json))", (root / "README.md").read_text())
    assert "examples/kadis.toml" in names
    for name in names:
        assert (root / name).is_file(), name


@pytest.mark.parametrize(("changes", "error", "message"), [
    # Issue 23 item 13: each of these was misread or failed later with a message that named no field.
    ({"lr_milestones": "12"}, TypeError, (r"TrainConfig.lr_milestones must be a list of ints, got '12' \(a string\); "
                                         r"write a list, e\.g\. \[12\]")),
    ({"lr_gamma": float("nan")}, ValueError, r"TrainConfig.lr_gamma must be a finite number, got nan"),
    ({"lr": "1e-3"}, TypeError, (r"TrainConfig.lr must be a finite number, got '1e-3' \(a string\); write the number "
                                r"without quotes \(in YAML with a dot, 1\.0e-3")),
    ({"lr": float("inf")}, ValueError, r"TrainConfig.lr must be a finite number, got inf"),
    ({"weight_decay": 10**400}, ValueError, r"TrainConfig.weight_decay must be a finite number"),
    ({"epochs": 5.0}, TypeError, r"TrainConfig.epochs must be an int, got 5.0 \(a float\)"),
    ({"epochs": True}, TypeError, r"TrainConfig.epochs must be an int, got True"),
    ({"freeze": "backbone"}, TypeError, r"TrainConfig.freeze must be a list of strings, got 'backbone'"),
    ({"lr_milestones": [3, 2.5]}, TypeError, (r"TrainConfig.lr_milestones must be a list of ints, got \[3, 2.5\] "
                                             r"\(holding 2.5, a float\)")),
    ({"lr_milestones": [-1]}, ValueError, r"TrainConfig.lr_milestones must be a list of epochs >= 0"),
    ({"lr_gamma": 0.0}, ValueError, r"TrainConfig.lr_gamma must be a finite number > 0"),
    ({"progress": "yes"}, TypeError, r"TrainConfig.progress must be true or false, got 'yes'"),
    ({"precision": "fp64"}, ValueError, r"TrainConfig.precision must be one of"),
    ({"precision": "fp16"}, ValueError, r"TrainConfig.precision must be 'auto', 'fp32' or 'bf16' \(fp16 training needs "
                                        r"loss scaling"),
    ({"device": 0}, TypeError, r"TrainConfig.device must be a string, got 0 \(an int\)"),
    ({"seed": -1}, ValueError, r"TrainConfig.seed must be an int >= 0, got -1"),
    ({"val_fraction": 0.6, "test_fraction": 0.5}, ValueError, r"val_fraction \+ test_fraction < 1"),
    ({"grad_clip": float("nan")}, ValueError, r"TrainConfig.grad_clip must be a finite number, got nan"),
])
def test_every_field_is_type_and_finiteness_checked_with_its_name(changes, error, message):
    with pytest.raises(error, match=message):
        TrainConfig(**changes)
    with pytest.raises(error, match=message):
        TrainConfig.from_dict(changes)


def test_checked_fields_are_normalised():
    from pathlib import Path

    import numpy as np

    config = TrainConfig(lr=1, lr_milestones=(3, np.int64(5)), freeze=("backbone",), output=Path("/tmp/run"),
                         epochs=np.int64(4), lr_gamma=np.float32(0.5))
    assert (config.lr, config.lr_milestones, config.freeze, config.output, config.epochs, config.lr_gamma) == \
        (1.0, [3, 5], ["backbone"], "/tmp/run", 4, 0.5)
    assert type(config.lr) is float and type(config.epochs) is int and type(config.lr_milestones[1]) is int
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(("text", "error", "message"), [
    ('lr_milestones = "12"\n', TypeError, r"c\.toml: TrainConfig.lr_milestones must be a list of ints, got '12'"),
    ("lr_gamma = nan\n", ValueError, r"c\.toml: TrainConfig.lr_gamma must be a finite number, got nan"),
    ('lr = "1e-3"\n', TypeError, r"c\.toml: TrainConfig.lr must be a finite number, got '1e-3'"),
])
def test_config_files_name_the_file_and_the_field(tmp_path, text, error, message):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(error, match=message):
        load_config_file(tmp_path / "c.toml")


def test_yaml_exponent_without_a_dot_is_explained(tmp_path):
    (tmp_path / "c.yaml").write_text("lr: 1e-3\n")  # YAML 1.1 (PyYAML) reads this as the string '1e-3'
    with pytest.raises(TypeError, match=r"c\.yaml: TrainConfig.lr must be a finite number, got '1e-3'.*PyYAML"):
        load_config_file(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text("lr: 1.0e-3\n")
    assert TrainConfig.from_dict(load_config_file(tmp_path / "c.yaml")).lr == 1e-3


def test_non_utf8_config_file_names_the_file(tmp_path):
    (tmp_path / "c.toml").write_bytes(b'dataset = "kadid10k"\noutput = "runs/\xe9t\xe9"\n')
    with pytest.raises(ValueError, match=r"cannot read config file .*c\.toml: expected UTF-8 text, got a byte that is "
                                         r"not UTF-8 at offset 36"):
        load_config_file(tmp_path / "c.toml")


def test_train_flags_with_nan_are_refused_before_anything_runs(tmp_path, capsys):
    from vtamiq_metric.training import cli

    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", "kadid10k", "--data-root", str(tmp_path), "--output", str(out),
                     "--lr-gamma", "nan"]) == 1
    assert "TrainConfig.lr_gamma must be a finite number, got nan" in capsys.readouterr().err
    assert not out.exists()


def test_every_stage_that_does_not_start_from_scratch_says_what_init_it_expects():
    from vtamiq_metric.training.config import STAGE_INIT

    from_scratch = {"bundled-default"}  # trained from random weights by design
    assert set(STAGE_INIT) == set(STAGES) - from_scratch
