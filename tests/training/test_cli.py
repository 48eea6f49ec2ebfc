"""The ``vtamiq-train`` command, in-process, on a tiny fake KADID-10k."""

from __future__ import annotations

import json

import pytest

from vtamiq_metric.training import cli


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


def test_cli_reports_bad_inputs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --output (runs/vtamiq) is relative: keep it out of the repository
    assert cli.main(["train", "--dataset", "kadid10k", "--data-root", str(tmp_path / "none"), "--model-preset",
                     "tiny", "--no-progress"]) == 1
    assert "vtamiq-train: error" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # a run that cannot start leaves no config.json behind
    assert cli.main(["train", "--dataset", "kadid10k"]) == 1
    assert "no data root" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--loss", "huber"])


def test_train_flags_are_derived_from_the_config_dataclass(capsys):
    import dataclasses

    from vtamiq_metric.training.config import TrainConfig

    parser = cli._build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    flags = {option for action in train._actions for option in action.option_strings}
    for field in dataclasses.fields(TrainConfig):
        if field.name != "dataset_options":
            assert f"--{field.name.replace('_', '-')}" in flags, field.name
    assert "--dataset-option" in flags and "--no-progress" in flags
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    usage = " ".join(capsys.readouterr().out.split())
    # help texts come from the TrainConfig docstring, defaults from its fields
    assert "--lr-milestones [LR_MILESTONES ...]" in usage and "(default: [12])" in usage
    assert "{l1,l2}" in usage and "{auto,fp32,bf16}" in usage
    assert "DataLoader worker processes (decoding and CAPS sampling run there). (default: 2)" in usage


def test_train_settings_precedence_stage_file_flags_and_dataset_options(kadid, tmp_path):
    config_file = tmp_path / "run.toml"
    config_file.write_text('epochs = 3\nlr = 0.002\ndataset_options = {label = "vsi", linearize = false}\n')
    args = cli._build_parser().parse_args(
        ["train", "--stage", "kadis700k-pretrain", "--config", str(config_file), "--epochs", "2", "--data-root",
         str(kadid), "--dataset-option", "exclude_types=[15]", "--dataset-option", "linearize=true",
         "--no-progress", "--val-fraction", "0.25"])
    config = cli._train_config(args)
    assert (config.dataset, config.epochs, config.lr, config.progress, config.val_fraction) == (
        "kadis700k", 2, 0.002, False, 0.25)  # stage < file < flags
    assert config.dataset_options.kwargs() == {"label": "vsi", "exclude_types": (15,), "linearize": True}
    bad = cli._build_parser().parse_args(["train", "--data-root", str(kadid), "--dataset-option", "lable=vsi"])
    with pytest.raises(ValueError, match=r"unknown dataset options \['lable'\]; known options are \['label'"):
        cli._train_config(bad)


def test_make_kadis_is_an_argparse_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["make-kadis", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--refs REFS" in out and "--shard I/N" in out and "--merge" in out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["make-kadis", "--refs", "r", "--out", "o", "--shard", "2/2"])
    assert exit_info.value.code == 2
    assert "expected I/N with 0 <= I < N (e.g. 3/8), got '2/2'" in capsys.readouterr().err


def test_train_help_gives_a_help_text_and_default_for_every_flag(capsys):
    parser = cli._build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    for action in train._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and "default" in action.help, action.option_strings


def test_stages_prints_what_a_stage_sets(capsys, tmp_path):
    from vtamiq_metric.training.config import STAGES, TrainConfig, load_config_file

    assert cli.main(["stages", "kadis700k-pretrain"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# --stage kadis700k-pretrain\n")
    (tmp_path / "stage.toml").write_text(out)
    settings = load_config_file(tmp_path / "stage.toml")
    assert settings == STAGES["kadis700k-pretrain"]  # printed as TOML that a config file can hold
    TrainConfig.from_dict(settings)
    assert cli.main(["stages"]) == 0
    assert capsys.readouterr().out.count("# --stage ") == len(STAGES)


def test_missing_train_extra_names_the_extra_to_install(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "scipy", None)  # importlib.util.find_spec("scipy") is then None
    assert cli.main(["make-kadis", "--refs", "r", "--out", "o"]) == 1
    err = capsys.readouterr().err
    assert "missing: scipy" in err and "pip install '.[train]'" in err and "vtamiq-metric[train]" in err


@pytest.mark.parametrize("stage", ["kadis700k-pretrain", "pieapp-pretrain", "finetune-tid2013"])
def test_a_stage_without_init_warns_and_says_what_init_expects(tmp_path, caplog, stage):
    # Issue 21 item 13: --stage kadis700k-pretrain without --init silently trained ViT-B from random weights.
    args = ["train", "--stage", stage, "--data-root", str(tmp_path / "none"), "--output", str(tmp_path / "o")]
    with caplog.at_level("WARNING"):
        assert cli.main(args) == 1  # the data root does not exist: the warning comes before that error
    assert f"--stage {stage} without --init: the paper2021 model starts from random weights" in caplog.text
    expected = {"kadis700k-pretrain": "npz:PATH (Google's ViT-B_16.npz", "pieapp-pretrain": "runs/kadis/best",
                "finetune-tid2013": "runs/pieapp/best"}[stage]
    assert expected in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert cli.main([*args, "--init", "npz:ViT-B_16.npz"]) == 1
    assert "without --init" not in caplog.text
    with caplog.at_level("WARNING"):
        assert cli.main(["train", "--stage", "bundled-default", "--data-root", str(tmp_path / "none"), "--output",
                         str(tmp_path / "o")]) == 1
    assert "without --init" not in caplog.text  # the bundled model is trained from scratch by design


def test_stages_print_what_init_expects(capsys):
    assert cli.main(["stages", "kadis700k-pretrain"]) == 0
    assert "# --init: ImageNet ViT-B/16 weights for the backbone: npz:PATH" in capsys.readouterr().out


def test_evaluate_refuses_a_pairwise_dataset_with_a_message(tmp_path, tiny_model, capsys, monkeypatch):
    # Found by mypy (issue 22 item 8): `evaluate --dataset pieapp` drew (ref, dist) patches from (ref, A, B) records
    # and crashed with "AttributeError: 'PairwiseRecord' object has no attribute 'dist'".
    from vtamiq_metric.training import datasets
    from vtamiq_metric.training.datasets import PieAPPPairwiseDataset

    monkeypatch.setattr(datasets, "get_dataset", lambda name, root: object.__new__(PieAPPPairwiseDataset))
    tiny_model.save_pretrained(tmp_path / "m")
    assert cli.main(["evaluate", "--model", str(tmp_path / "m"), "--dataset", "pieapp", "--data-root",
                     str(tmp_path), "--patches", "8", "--workers", "0"]) == 1
    assert "pieapp: evaluate reports the correlations of scored (reference, distorted) pairs, but this dataset holds " \
           "pairwise preferences" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value"), [("--repeats", "0"), ("--patches", "0"), ("--batch-size", "-1"),
                                             ("--workers", "-1"), ("--repeats", "two")])
def test_evaluate_refuses_counts_below_their_minimum_as_a_usage_error(tmp_path, capsys, flag, value):
    # Issue 23 item 15: `evaluate --repeats 0` ended with the message 'pred' (a KeyError).
    with pytest.raises(SystemExit) as info:
        cli.main(["evaluate", "--model", str(tmp_path), "--dataset", "kadid10k", "--data-root", str(tmp_path),
                  flag, value])
    assert info.value.code == 2
    assert f"argument {flag}: expected an integer >=" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["evaluate", "--dataset", "tid2013", "--data-root", "d"],
                                     ["export", "--out", "o"]])
def test_model_flag_names_the_model_and_checkpoint_stays_an_alias(command):
    parser = cli._build_parser()
    assert str(parser.parse_args([*command, "--model", "runs/a"]).model) == "runs/a"
    assert str(parser.parse_args([*command, "--checkpoint", "runs/a"]).model) == "runs/a"
