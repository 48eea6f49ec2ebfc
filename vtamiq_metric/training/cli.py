"""The ``vtamiq-train`` command: train, stages, evaluate, plot, export, splits, make-kadis.

Examples::

    vtamiq-train train --stage finetune-kadid10k --data-root ~/data/kadid10k --init runs/pretrain/best
    vtamiq-train stages kadis700k-pretrain
    vtamiq-train train --config examples/kadis.toml --epochs 2 --output runs/try
    vtamiq-train train --config examples/kadis.toml --output runs/try --resume
    vtamiq-train evaluate --model runs/try/best --dataset tid2013 --data-root ~/data/tid2013
    vtamiq-train evaluate --model runs/try --dataset tid2013 --data-root ~/data/tid2013 --plot scatter.png
    vtamiq-train plot runs/try --out curves.png
    vtamiq-train export --model runs/try --out my-model/
    vtamiq-train splits --dataset kadid10k --data-root ~/data/kadid10k --seed 0 --out split.json
    vtamiq-train make-kadis --refs ~/data/kadis700k/ref_imgs --out ~/data/kadis700k

``train`` and ``evaluate`` also run under ``torchrun`` with the same command line, one process per GPU (see
:mod:`vtamiq_metric.training.train` for the effective batch size and learning rate)::

    torchrun --standalone --nproc_per_node=8 -m vtamiq_metric.training.cli train --config my_run.toml
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import json
import logging
import math
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _torchrun as torchrun
from .._io import atomic_path, atomic_write_text
from ..cli import parse_shard
from .config import STAGE_INIT, STAGES, DatasetOptions, TrainConfig, load_config_file

if TYPE_CHECKING:
    from ..model.vtamiq import VTAMIQ

__all__ = ["TRAIN_EXTRA_MODULES", "main", "make_kadis_main", "make_kadis_parser"]

_logger = logging.getLogger(__name__)

#: Modules of the ``train`` extra that every ``vtamiq-train`` command needs (datasets, metrics, distortions, labels).
TRAIN_EXTRA_MODULES = ("scipy", "piq")

_EXTRA_HINT = ("pip install 'vtamiq-metric[train]' (not on PyPI yet; from a checkout of the repository: "
               "pip install '.[train]')")

# TrainConfig fields that are not plain flags: dataset_options has --dataset-option KEY=VALUE.
_SPECIAL_FIELDS = ("dataset_options",)


def _attribute_docs(cls: type) -> dict[str, str]:
    """Each attribute's description from the "Attributes:" section of a Google-style class docstring."""
    docs: dict[str, str] = {}
    name = None
    in_section = False
    for line in (inspect.getdoc(cls) or "").splitlines():
        if line.strip() == "Attributes:":
            in_section = True
        elif in_section and line.startswith("        ") and name is not None:
            docs[name] += " " + line.strip()
        elif in_section and line.startswith("    ") and ":" in line:
            name, text = line.strip().split(":", 1)
            docs[name] = text.strip()
        elif in_section and line.strip():
            break
    return docs


def _flag_options(hint: Any) -> dict[str, Any]:
    """``add_argument`` options for a dataclass field of type ``hint``: type, choices, nargs or a boolean action."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None: the flag takes an X
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(hint) is typing.Literal:
        return {"choices": typing.get_args(hint)}
    if typing.get_origin(hint) is list:
        return {"nargs": "*", "type": typing.get_args(hint)[0]}
    return {"type": hint}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field (``--lr-milestones`` for ``lr_milestones``), typed and documented from
    the dataclass itself; every default is None so that only the flags given override the stage and config file."""
    hints = typing.get_type_hints(TrainConfig)
    docs = _attribute_docs(TrainConfig)
    for item in dataclasses.fields(TrainConfig):
        if item.name in _SPECIAL_FIELDS:
            continue
        default = item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default
        help_text = f"{docs.get(item.name, '')} (default: {default})".replace("%", "%%")
        parser.add_argument(f"--{item.name.replace('_', '-')}", default=None, help=help_text,
                            **_flag_options(hints[item.name]))


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtamiq-train", description="Train and evaluate VTAMIQ models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p_train = sub.add_parser("train", help="train a model (one run, or --runs N on N seeded splits)",
                             description="Train a model. Settings: dataclass defaults < --stage < --config < flags "
                                         "(each flag's default below is the dataclass default). "
                                         "`vtamiq-train stages NAME` prints what a stage sets.")
    p_train.add_argument("--config", type=Path, default=None,
                         help="TOML/YAML/JSON file of TrainConfig settings, e.g. examples/kadis.toml (default: none)")
    p_train.add_argument("--stage", choices=sorted(STAGES), default=None,
                         help="one of the paper's stage presets; `vtamiq-train stages NAME` shows its settings "
                              "(default: none)")
    p_train.add_argument("--resume", action="store_true",
                         help="continue from <output>/checkpoints/last.pt (default: off)")
    p_train.add_argument("--overwrite", action="store_true",
                         help="start afresh in an output folder that holds a previous run, removing its files "
                              "(default: off; without it or --resume a non-empty output folder is refused)")
    p_train.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                         help="dataset reader option (repeatable), e.g. label=vsi; VALUE is read as JSON when it "
                              f"parses; options: {', '.join(f.name for f in dataclasses.fields(DatasetOptions))} "
                              "(default: none)")
    _add_config_flags(p_train)

    p_stages = sub.add_parser("stages", help="print the settings of the paper's stage presets (--stage)")
    p_stages.add_argument("name", nargs="?", choices=sorted(STAGES), help="one stage (default: all)")

    p_eval = sub.add_parser("evaluate", help="SROCC/KROCC/PLCC of a model on datasets")
    p_eval.add_argument("--model", "--checkpoint", dest="model", required=True,
                        help="model directory, .safetensors, run folder or registered name (--checkpoint is an alias)")
    p_eval.add_argument("--dataset", action="append", required=True, help="dataset name (repeatable)")
    p_eval.add_argument("--data-root", action="append", required=True, help="root per --dataset, same order")
    p_eval.add_argument("--split-file", help="evaluate only the test part of this split")
    p_eval.add_argument("--patches", type=_int_at_least(1), default=1024, help="patches per image (default 1024)")
    p_eval.add_argument("--repeats", type=_int_at_least(1), default=1,
                        help="seeded draws averaged per image (default 1)")
    p_eval.add_argument("--batch-size", type=_int_at_least(1), default=20, help="pairs per batch (default 20)")
    p_eval.add_argument("--workers", type=_int_at_least(0), default=2, help="DataLoader workers (default 2)")
    p_eval.add_argument("--device")
    p_eval.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of the patch draws (default 0)")
    p_eval.add_argument("--output", type=Path, help="write results as JSON (and a Markdown table beside it)")
    p_eval.add_argument("--plot", type=Path, metavar="FIG",
                        help="draw predicted score against MOS per dataset with the logistic fit (.png, .pdf, .svg; "
                             "needs vtamiq-metric[plot])")

    p_plot = sub.add_parser("plot", help="draw a run's training loss and validation metrics per epoch "
                                         "(needs vtamiq-metric[plot])")
    p_plot.add_argument("run", type=Path, help="run folder (with metrics.jsonl, or run_*/ of --runs N)")
    p_plot.add_argument("--out", type=Path, help="figure file (default: RUN/curves.png)")

    p_export = sub.add_parser("export", help="write a safetensors model directory with a model card")
    p_export.add_argument("--model", "--checkpoint", dest="model", required=True, type=Path,
                          help="run folder (uses best/) or model directory (--checkpoint is an alias)")
    p_export.add_argument("--out", required=True, type=Path)

    p_splits = sub.add_parser("splits", help="draw and save a train/val/test split by reference image")
    p_splits.add_argument("--dataset", required=True)
    p_splits.add_argument("--data-root", required=True)
    p_splits.add_argument("--seed", type=int, default=0)
    p_splits.add_argument("--val-fraction", type=float, default=0.2)
    p_splits.add_argument("--test-fraction", type=float, default=0.2)
    p_splits.add_argument("--out", type=Path, required=True)

    p_kadis = sub.add_parser("make-kadis", help="generate KADIS-700k distortions and VSI labels",
                             description=_MAKE_KADIS_DESCRIPTION)
    _add_make_kadis_arguments(p_kadis)
    return parser


def _int_at_least(minimum: int) -> Any:
    """An argparse ``type`` for integers >= ``minimum`` (a usage error names the flag otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"int >= {minimum}"
    return parse


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--dataset-option expects KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _train_config(args: argparse.Namespace) -> TrainConfig:
    settings: dict[str, Any] = {}
    if args.stage:
        settings.update(STAGES[args.stage])
    if args.config:
        settings.update(load_config_file(args.config))
    for item in dataclasses.fields(TrainConfig):
        value = getattr(args, item.name, None)
        if item.name not in _SPECIAL_FIELDS and value is not None:
            settings[item.name] = value
    if args.dataset_option:
        options = settings.get("dataset_options", {})
        options = options.to_dict() if isinstance(options, DatasetOptions) else dict(options)
        settings["dataset_options"] = {**options, **dict(_parse_option(o) for o in args.dataset_option)}
    config = TrainConfig.from_dict(settings)
    if not config.data_root:
        raise ValueError("no data root: pass --data-root DIR (or data_root in the config file)")
    if args.stage in STAGE_INIT and config.init is None:
        _logger.warning("--stage %s without --init: the %s model starts from random weights, which is not the "
                        "paper's protocol; --init expects %s", args.stage, config.model_preset, STAGE_INIT[args.stage])
    return config


def _train(args: argparse.Namespace) -> int:
    from .train import run

    if args.resume and args.overwrite:
        raise ValueError("expected --resume or --overwrite, got both")
    config = _train_config(args)
    try:
        results = run(config, resume=args.resume, overwrite=args.overwrite)
    except KeyboardInterrupt:
        if torchrun.is_main():
            print("vtamiq-train: interrupted; resume with the same command and --resume", file=sys.stderr)
        return 130
    finally:
        torchrun.shutdown()
    if torchrun.env_ranks()[0] != 0:
        return 0
    for result in results:
        test = "" if result.test is None else f", test SROCC {result.test.get('srocc', float('nan')):.4f}"
        if math.isfinite(result.best_score):
            print(f"{result.output}: best epoch {result.best_epoch} (val {result.best_score:.4f}){test}")
        else:
            print(f"{result.output}: kept the last epoch {result.best_epoch} (no validation score){test}")
    return 0


def _stages(args: argparse.Namespace) -> int:
    """Print what each stage (or the one named) sets, as the TOML lines a config file would hold."""
    names = [args.name] if args.name else sorted(STAGES)
    for number, name in enumerate(names):
        if number:
            print()
        print(f"# --stage {name}")
        if name in STAGE_INIT:
            print(f"# --init: {STAGE_INIT[name]}")
        for key, value in STAGES[name].items():
            print(f"{key} = {_toml_value(value)}")
    return 0


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)


def _resolve_model(path: str) -> str:
    """``--model``: a run folder means its ``best/`` model directory; anything else is passed on as it is."""
    candidate = Path(path)
    if (candidate / "best" / "model.safetensors").is_file():
        return str(candidate / "best")
    return path


def _evaluate(args: argparse.Namespace) -> int:
    from ..hub import load_model

    if len(args.dataset) != len(args.data_root):
        raise ValueError(f"give one --data-root per --dataset, got {len(args.dataset)} datasets and "
                         f"{len(args.data_root)} roots")
    if args.plot is not None:
        from .._plotting import check_figure_path

        check_figure_path(args.plot)  # a missing matplotlib or a bad suffix fails before the evaluation runs
    config = TrainConfig(batch_size=args.batch_size, workers=args.workers, device=args.device,
                         eval_patches=args.patches, precision="auto")
    ctx = torchrun.init_from_env(args.device)
    try:
        return _evaluate_datasets(args, config, ctx, load_model(_resolve_model(args.model),
                                                                device=ctx.device))
    finally:
        torchrun.shutdown()


def _evaluate_datasets(args: argparse.Namespace, config: TrainConfig, ctx: torchrun.DistContext,
                       model: VTAMIQ) -> int:
    """Evaluate on every dataset; under torchrun the items are sharded over the ranks and rank 0 reports."""
    import numpy as np

    from .data import PairPatches
    from .datasets import PairwiseDataset, get_dataset
    from .datasets.splits import Split, split_dataset
    from .evaluate import correlations, cross_dataset_table
    from .train import predict

    results: dict[str, dict[str, Any]] = {}
    predictions: dict[str, dict[str, Any]] = {}
    for name, root in zip(args.dataset, args.data_root, strict=True):
        dataset = get_dataset(name, root)
        if isinstance(dataset, PairwiseDataset):
            raise ValueError(f"{name}: evaluate reports the correlations of scored (reference, distorted) pairs, but "
                             f"this dataset holds pairwise preferences (training on it reports the preference "
                             f"accuracy of its validation part)")
        if args.split_file:
            dataset = split_dataset(dataset, Split.load(args.split_file))[2]
        items = PairPatches(dataset.records, args.patches, model.config.patch_size, model.config.sampling, args.seed,
                            downsample_side=model.config.downsample_side)
        preds = predict(model, items, config, ctx.device, repeats=args.repeats, tag="test", shard=ctx.distributed)
        metrics = correlations(preds["pred"], preds["target"])
        predictions[name if name not in predictions else f"{name} ({Path(root).name})"] = preds
        results[name] = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in metrics.items()}
        if ctx.is_main:
            print(f"{name}: SROCC {metrics['srocc']:.4f}  KROCC {metrics['krocc']:.4f}  PLCC {metrics['plcc']:.4f}  "
                  f"(n={len(items)})")
    if args.output and ctx.is_main:
        data, table = cross_dataset_table({Path(args.model).name: results})
        args.output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.output, json.dumps(data, indent=2, default=float) + "\n")
        atomic_write_text(args.output.with_suffix(".md"), table + "\n")
    if args.plot and ctx.is_main:
        from .._plotting import save_figure
        from .plots import plot_predictions

        title = f"predictions against MOS: {Path(args.model).name}"
        save_figure(plot_predictions(predictions, title=title), args.plot)
        print(f"wrote {args.plot}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .._plotting import check_figure_path, save_figure
    from .plots import plot_training_curves

    out = args.out if args.out is not None else args.run / "curves.png"
    check_figure_path(out)
    save_figure(plot_training_curves(args.run), out)
    print(f"wrote {out}")
    return 0


def _model_card(model: VTAMIQ, source: Path) -> str:
    provenance = json.dumps(model.provenance, indent=2, sort_keys=True, default=str)
    config = json.dumps(model.config.to_dict(), indent=2, sort_keys=True)
    return (f"# VTAMIQ model\n\nExported from `{source}` by `vtamiq-train export`.\n\n"
            "Scores are distortions: 0 means identical and higher means worse.\n\n"
            f"## Training data and metrics\n\n```json\n{provenance}\n```\n\n## Config\n\n```json\n{config}\n```\n")


def _export(args: argparse.Namespace) -> int:
    from ..hub import load_model

    source = Path(_resolve_model(str(args.model)))
    model = load_model(source)
    run_config = args.model / "config.json"
    extra = {"training_config": _read_json(run_config)} if run_config.is_file() else {}
    test_file = args.model / "test.json"
    if test_file.is_file():
        extra["test_metrics"] = _read_json(test_file)
    model.save_pretrained(args.out, provenance=extra)
    atomic_write_text(args.out / "README.md", _model_card(load_model(args.out), source))
    print(f"wrote {args.out}")
    return 0


def _read_json(path: Path) -> Any:
    """A run's JSON file; text that is not UTF-8 or not JSON is a ValueError naming the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"cannot read {path}: expected UTF-8 JSON text, got a byte that is not UTF-8 at offset "
                         f"{exc.start} ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"cannot read {path}: expected JSON, got {exc}") from None
    except RecursionError:
        raise ValueError(f"cannot read {path}: the JSON is nested too deeply") from None


def _splits(args: argparse.Namespace) -> int:
    from .datasets import get_dataset
    from .datasets.splits import make_split

    dataset = get_dataset(args.dataset, args.data_root)
    split = make_split(dataset.ref_ids(), seed=args.seed, val_fraction=args.val_fraction,
                       test_fraction=args.test_fraction)
    with atomic_path(args.out) as tmp:
        split.save(tmp)
    train, val, test = split.counts()
    print(f"{args.dataset}: {train}/{val}/{test} reference images (train/val/test) -> {args.out}")
    return 0


def _configure_logging(verbose: bool) -> None:
    """INFO (DEBUG with -v) on rank 0; under torchrun the other ranks log warnings and errors only, tagged."""
    try:
        rank, world, _ = torchrun.env_ranks()
    except ValueError:
        rank, world = 0, 1
    level = logging.DEBUG if verbose else logging.INFO
    if rank != 0:
        level = max(level, logging.WARNING)
    prefix = f"[rank {rank}/{world}] " if world > 1 else ""
    logging.basicConfig(level=level, format=f"{prefix}%(levelname)s %(message)s")


# ----------------------------------------------------------------------------------------------------------------
# make-kadis


def _parse_int_list(text: str) -> list[int]:
    """``"1,2,5"`` or ``"1-3,5"`` -> [1, 2, 3, 5]; ``"none"`` or ``""`` -> []."""
    values: list[int] = []
    if text.strip().lower() in ("", "none"):
        return values
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                values.extend(range(lo, hi + 1))
            else:
                values.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected integers like '1,2,5' or '1-5', got {text!r}") from None
    return values


def _parse_labels(text: str) -> list[str]:
    from .labels import LABELS

    if text.strip().lower() in ("", "none"):
        return []
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in LABELS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown label(s) {unknown}; expected names among {sorted(LABELS)}")
    return names


_MAKE_KADIS_DESCRIPTION = ("Distort pristine reference images with the 25 KADID/KADIS-700k distortions (our Python "
                           "port), optionally plus our additional types (--extra-types), and label each pair (VSI by "
                           "default). Resumable: rerun the same command after an interruption.")


def _add_make_kadis_arguments(parser: argparse.ArgumentParser) -> None:
    from .distortions import EXTRA_DISTORTIONS
    from .kadis import ALL_LEVELS, DEFAULT_SKIP_TYPES
    from .labels import LABELS

    extras = ", ".join(f"{t.id} {t.name}" for t in EXTRA_DISTORTIONS.values())

    parser.add_argument("--refs", required=True, type=Path, help="folder of pristine images (png/jpg/bmp)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (dist_imgs/, kadis700k_scores.csv)")
    parser.add_argument("--ref-csv", type=Path, default=None,
                        help="KADIS-700k kadis700k_ref_imgs.csv (column 2 = type per reference)")
    parser.add_argument("--seed", type=int, default=0, help="global seed (default 0)")
    parser.add_argument("--types-per-ref", type=int, default=1,
                        help="types drawn per reference without --ref-csv (default 1)")
    parser.add_argument("--levels", type=_parse_int_list, default=list(ALL_LEVELS),
                        help="levels, e.g. '1-5' or '1,3,5' (default 1-5)")
    parser.add_argument("--label", type=_parse_labels, default=["vsi"],
                        help=f"comma-separated labels among {', '.join(sorted(LABELS))}, or 'none' (default vsi)")
    parser.add_argument("--skip-types", type=_parse_int_list, default=list(DEFAULT_SKIP_TYPES),
                        help="type ids never generated, e.g. '15' or 'none' (default 15: denoise, skipped by VTAMIQ)")
    parser.add_argument("--extra-types", type=_parse_int_list, nargs="+", default=[], metavar="IDS",
                        help=f"additional types given to every reference on top of its KADIS types, e.g. '26-32' or "
                             f"'26 27 29' (ours: {extras}); the KADIS types drawn stay the same (default: none)")
    parser.add_argument("--extra-types-per-ref", type=int, default=None, metavar="K",
                        help="draw K of --extra-types per reference instead of all of them (a seed stream of its own)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all CPU cores)")
    parser.add_argument("--limit", type=int, default=None, help="process only the first N references")
    parser.add_argument("--skip-bad-refs", action="store_true",
                        help="leave unreadable references out of the CSV instead of failing")
    parser.add_argument("--png-compress-level", type=int, default=1,
                        help="PNG zlib level 0-9 (default 1: fast; 6-9: smaller files)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--shard", type=parse_shard, default=None, metavar="I/N",
                      help="process only references k %% N == I of the sorted list (one machine of N; no CSV); then "
                           "--merge")
    mode.add_argument("--merge", action="store_true",
                      help="check that the shards (same --refs/--out/settings) left nothing missing or duplicated, "
                           "write the CSV")


def make_kadis_parser() -> argparse.ArgumentParser:
    """The ``vtamiq-train make-kadis`` arguments as a parser of their own (the subcommand uses the same ones)."""
    parser = argparse.ArgumentParser(prog="vtamiq-train make-kadis", description=_MAKE_KADIS_DESCRIPTION)
    _add_make_kadis_arguments(parser)
    return parser


def _make_kadis(args: argparse.Namespace) -> int:
    """Exit status 0 on success, 1 if some references failed, 2 for invalid arguments or inputs."""
    from .kadis import KadisGenerationError, KadisSettings, generate_kadis, merge_kadis

    try:
        settings = KadisSettings(ref_csv=args.ref_csv, seed=args.seed, types_per_ref=args.types_per_ref,
                                 levels=args.levels, labels=args.label, skip_types=args.skip_types, limit=args.limit,
                                 png_compress_level=args.png_compress_level,
                                 extra_types=tuple(t for group in args.extra_types for t in group),
                                 extra_types_per_ref=args.extra_types_per_ref)
        if args.merge:
            path = merge_kadis(args.refs, args.out, settings)
        else:
            path = generate_kadis(args.refs, args.out, settings, workers=args.workers,
                                  on_error="skip" if args.skip_bad_refs else "raise", progress=not args.no_progress,
                                  shard=args.shard)
    except KadisGenerationError as error:
        print(f"vtamiq-train make-kadis: error: {error}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, TypeError) as error:
        print(f"vtamiq-train make-kadis: error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


def make_kadis_main(argv: Sequence[str] | None = None) -> int:
    """``vtamiq-train make-kadis ARGS``: the same as ``main(["make-kadis", *argv])``.

    Args:
        argv: arguments after ``make-kadis`` (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 if some references failed, 2 for invalid arguments or inputs.
    """
    return main(["make-kadis", *(sys.argv[1:] if argv is None else argv)])


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``vtamiq-train``; returns the exit status (0 ok, 1 error, 2 usage, 130 interrupted).

    Without the ``train`` extra (scipy, piq) it says which extra to install and returns 1.
    """
    missing = [name for name in TRAIN_EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        print(f"vtamiq-train: error: the training tools need the 'train' extra, which is not installed (missing: "
              f"{', '.join(missing)}); install it with {_EXTRA_HINT}", file=sys.stderr)
        return 1
    args = _build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    handlers = {"train": _train, "evaluate": _evaluate, "export": _export, "splits": _splits,
                "make-kadis": _make_kadis, "plot": _plot, "stages": _stages}
    try:
        return handlers[args.command](args)
    except (OSError, ValueError, KeyError, TypeError, FloatingPointError, ImportError) as exc:
        print(f"vtamiq-train: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
