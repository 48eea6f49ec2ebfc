"""`TrainConfig`: every setting of a training run, the paper's stage presets, and config-file loading.

Precedence, lowest first: dataclass defaults (the paper's fine-tuning protocol) < ``--stage`` preset < config file
(TOML or YAML) < command-line flags.

Paper defaults (Chubarau & Clark 2021, §4): AdamW, learning rate 1e-5 decayed x0.1 at epoch 12, 20 epochs, batch 20,
256 patches per image in training and 1024 at validation and test; pre-training on KADIS-700k for 5 epochs (3 at
1e-4, then 2 at 1e-5). Where the authors' code differs (docs/background/training.md §2) the paper is followed; the
code's values are one flag away (e.g. ``--lr 1e-4 --lr-milestones 14 18`` for the release-era schedule).

Several processes (``torchrun --nproc_per_node=N``): ``batch_size`` is per process, so the effective batch size is
``batch_size x N`` (the paper's 20 is ``batch_size=20`` on one GPU, or e.g. ``batch_size=5`` on 4). ``lr`` is used
as configured whatever N is; if you change N, scale it yourself (for instance linearly with the effective batch).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["STAGES", "STAGE_INIT", "DatasetOptions", "TrainConfig", "load_config_file"]

Loss = Literal["l1", "l2"]
#: The trainer's precisions: those of the package without "fp16", whose gradients need loss scaling (not done here).
TrainPrecision = Literal["auto", "fp32", "bf16"]


@dataclass(frozen=True)
class DatasetOptions:
    """Options for the dataset reader, passed as ``get_dataset(name, root, **options.kwargs())``.

    None (the default of every field) leaves the reader's own default. A reader accepts only the options of its
    constructor: an option it does not take (e.g. ``label`` for ``kadid10k``) raises ``TypeError`` naming it when the
    dataset is opened. In a config file the options form a table (TOML ``dataset_options = {label = "vsi"}``); on the
    command line, ``--dataset-option KEY=VALUE`` (repeatable, VALUE read as JSON when it parses).

    Attributes:
        label: ``kadis700k``: the label column used as the score (``"vsi"`` in the paper).
        exclude_types: ``kadis700k``: type ids to drop (KADID's 1..25, ours 26 and up).
        linearize: histogram-equalise the targets (every reader; default True except ``pieapp_test``).
        validate_images: decode every image once when the dataset is opened.
        skip_missing: drop pairs whose images are missing (with a warning) instead of raising.
        higher_is_better: ``csv``: whether the CSV's score is higher-is-better (``csv`` requires it).
        label_file: ``csiq``: the label file to read instead of the official one.
        scores: ``live``: ``"realigned"`` or ``"original"`` DMOS.
        parts: ``pieapp``: the parts to read, e.g. ``["train"]`` or ``["train", "val"]``.
        probability: ``pieapp``: ``"processed"`` or ``"raw"`` preference probabilities.
    """

    label: str | None = None
    exclude_types: tuple[int, ...] | None = None
    linearize: bool | None = None
    validate_images: bool | None = None
    skip_missing: bool | None = None
    higher_is_better: bool | None = None
    label_file: str | None = None
    scores: str | None = None
    parts: tuple[str, ...] | None = None
    probability: str | None = None

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if value is None:
                continue
            kind = typing.get_args(typing.get_type_hints(DatasetOptions)[item.name])[0]  # X of "X | None"
            if typing.get_origin(kind) is tuple:
                element = typing.get_args(kind)[0]
                if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not all(
                        isinstance(v, element) and not isinstance(v, bool) for v in value):
                    raise ValueError(f"dataset option {item.name} must be a list of {element.__name__}, got {value!r}")
                object.__setattr__(self, item.name, tuple(value))
            elif not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise ValueError(f"dataset option {item.name} must be a {kind.__name__}, got {value!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetOptions:
        """Build from a dict of options; unknown keys raise with the list of known ones."""
        if not isinstance(data, Mapping):
            raise TypeError(f"dataset_options must be a table of reader options, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown dataset options {unknown}; known options are {known}")
        return cls(**data)

    def kwargs(self) -> dict[str, Any]:
        """The options that are set (not None), as keyword arguments for the reader."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the options that are set (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.kwargs().items()}


# Like VTAMIQConfig (model/config.py), a flat dataclass of typed fields with defaults, documented in "Attributes:" and
# checked in __post_init__; the command line derives its flags from these fields and their docstring
# (training/cli.py), so the similar shape of the two configs is deliberate.
@dataclass
class TrainConfig:
    """One training run.

    Attributes:
        dataset: dataset name (see ``vtamiq_metric.training.datasets.DATASETS``).
        data_root: folder holding the dataset in its official layout.
        dataset_options: options for the dataset reader (:class:`DatasetOptions`, e.g. ``label="vsi"`` for
            KADIS-700k); a dict of them is accepted and converted.
        output: run folder (checkpoints, metrics, exported model).
        model_preset: ``VTAMIQConfig`` preset of a model built from scratch.
        init: initial weights: ``npz:PATH`` (Google ViT-B/16 .npz), ``timm:PATH`` (a timm ViT state_dict file), or
            anything ``vtamiq_metric.load_model`` accepts (a previous stage's export); None = random initialisation.
        freeze: parameter-name prefixes to freeze, e.g. ``["backbone"]`` or ``["backbone.blocks.0"]``.
        epochs: training epochs.
        lr: AdamW learning rate, used as given for any number of processes (not rescaled with the effective batch
            size; scale it yourself when you change the number of processes).
        lr_milestones: epochs (0-based, counted from the start) at which the learning rate is multiplied by
            ``lr_gamma``.
        lr_gamma: decay factor.
        weight_decay: AdamW weight decay.
        batch_size: image pairs (or PieAPP triplets) per step and per process; under ``torchrun`` with N processes
            the effective batch size is ``batch_size x N``.
        train_patches: patches per image in training; positions are drawn afresh every time an image is seen.
        eval_patches: patches per image at validation and test.
        eval_repeats: seeded draws averaged per image at test time.
        loss: ``"l1"`` (MAE, the paper) or ``"l2"`` regression term; the pairwise rank loss (paper Eq. 5) is added.
        rank_weight: weight of the rank loss (paper: simple summation, 1).
        grad_clip: gradient-norm clipping (0 disables).
        seed: seed of model initialisation, data order, CAPS draws and dropout.
        split_seed: seed of the train/val/test split by reference image.
        split_file: a saved split to reuse instead of drawing one.
        val_fraction: share of reference images for validation (test uses the same share).
        test_fraction: share of reference images for test.
        runs: independent runs with split seeds ``split_seed .. split_seed + runs - 1`` (the paper averages 20).
        workers: DataLoader worker processes (decoding and CAPS sampling run there).
        precision: ``"auto"`` (bf16 autocast on GPUs with native bf16, compute capability 8.0 or more; fp32
            elsewhere), ``"fp32"`` or ``"bf16"``. ``"fp16"`` is refused: its gradients need loss scaling, which the
            trainer does not do.
        device: ``"cpu"``, ``"cuda"``...; None = CUDA when available. Under ``torchrun`` a bare ``"cuda"`` (or None
            with CUDA) means ``cuda:LOCAL_RANK``, and ``"cpu"`` selects the gloo backend.
        max_steps_per_epoch: cap on steps per epoch (smoke tests); None = full epochs.
        progress: show progress bars.
    """

    dataset: str = "kadid10k"
    data_root: str = ""
    dataset_options: DatasetOptions = field(default_factory=DatasetOptions)
    output: str = "runs/vtamiq"
    model_preset: str = "paper2021"
    init: str | None = None
    freeze: list[str] = field(default_factory=list)
    epochs: int = 20
    lr: float = 1e-5
    lr_milestones: list[int] = field(default_factory=lambda: [12])
    lr_gamma: float = 0.1
    weight_decay: float = 0.01
    batch_size: int = 20
    train_patches: int = 256
    eval_patches: int = 1024
    eval_repeats: int = 1
    loss: Loss = "l1"
    rank_weight: float = 1.0
    grad_clip: float = 1.0
    seed: int = 0
    split_seed: int = 0
    split_file: str | None = None
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    runs: int = 1
    workers: int = 2
    precision: TrainPrecision = "auto"
    device: str | None = None
    max_steps_per_epoch: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        """Check every field's type (and finiteness), then its range; the message names the field.

        Types follow the annotations: an ``int`` field takes an integer (not a bool, not ``5.0``), a ``float`` field
        any finite real number (converted to float), a ``list[int]``/``list[str]`` field a list or tuple of those
        (never a bare string: ``"12"`` is not ``[1, 2]``), a path-like ``str`` field (``data_root``, ``output``,
        ``split_file``, ``init``) a str or an ``os.PathLike`` (converted to str).

        Raises:
            TypeError: a value of the wrong type (e.g. ``lr = "1e-3"`` in a config file).
            ValueError: a value out of range, or NaN or infinite.
        """
        # A config file or a caller may still say "fp16" (outside the annotation): refused with the reason first.
        _require("precision", self.precision != "fp16",  # type: ignore[comparison-overlap]
                 "'auto', 'fp32' or 'bf16' (fp16 training needs loss scaling, which the trainer does not do)",
                 self.precision)
        hints = typing.get_type_hints(TrainConfig)
        for item in dataclasses.fields(self):
            if item.name != "dataset_options":
                setattr(self, item.name, _checked(item.name, hints[item.name], getattr(self, item.name)))
        for name in ("epochs", "batch_size", "train_patches", "eval_patches", "eval_repeats", "runs"):
            _require(name, getattr(self, name) >= 1, "an int >= 1", getattr(self, name))
        _require("workers", self.workers >= 0, "an int >= 0", self.workers)
        _require("seed", self.seed >= 0, "an int >= 0", self.seed)
        _require("split_seed", self.split_seed >= 0, "an int >= 0", self.split_seed)
        _require("max_steps_per_epoch", self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
                 "an int >= 1 or None", self.max_steps_per_epoch)
        _require("lr", self.lr > 0, "a finite number > 0", self.lr)
        _require("lr_gamma", self.lr_gamma > 0, "a finite number > 0 (the factor of every milestone)", self.lr_gamma)
        _require("lr_milestones", all(m >= 0 for m in self.lr_milestones), "a list of epochs >= 0",
                 self.lr_milestones)
        for name in ("weight_decay", "rank_weight", "grad_clip"):
            _require(name, getattr(self, name) >= 0, "a finite number >= 0", getattr(self, name))
        for name in ("val_fraction", "test_fraction"):
            _require(name, 0 <= getattr(self, name) < 1, "a number in [0, 1)", getattr(self, name))
        _require("test_fraction", self.val_fraction + self.test_fraction < 1,
                 f"a number that leaves training references (val_fraction + test_fraction < 1; val_fraction is "
                 f"{self.val_fraction})", self.test_fraction)
        _require("dataset", bool(self.dataset), "a dataset name", self.dataset)
        _require("output", bool(self.output), "a folder", self.output)
        if not isinstance(self.dataset_options, DatasetOptions):
            self.dataset_options = DatasetOptions.from_dict(self.dataset_options)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field (``dataset_options`` holds only the options that are set)."""
        return {**dataclasses.asdict(self), "dataset_options": self.dataset_options.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys raise with the list of known ones, values are checked as in the class.

        Raises:
            TypeError: ``data`` is not a mapping, or a value of the wrong type (the field is named).
            ValueError: an unknown key, or a value out of range (the field is named).
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"expected a table of training settings, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known settings are {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with some fields changed."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})


# Fields whose str may be given as a path (pathlib.Path from Python code).
_PATH_FIELDS = ("data_root", "output", "split_file", "init")


def _type_name(value: Any) -> str:
    name = "string" if isinstance(value, str) else type(value).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def _wrong_type(name: str, expected: str, value: Any) -> TypeError:
    hint = ""
    if isinstance(value, str) and expected.startswith("a finite number"):
        hint = "; write the number without quotes (in YAML with a dot, 1.0e-3: PyYAML reads 1e-3 as a string)"
    elif isinstance(value, str) and expected.startswith("an int"):
        hint = "; write the number without quotes"
    elif isinstance(value, str) and expected == "a list of ints":
        hint = f"; write a list, e.g. [{value}]" if value.strip().isdigit() else "; write a list, e.g. [12]"
    elif isinstance(value, str) and expected == "a list of strings":
        hint = f"; write a list, e.g. [{json.dumps(value)}]"
    return TypeError(f"TrainConfig.{name} must be {expected}, got {value!r} ({_type_name(value)}){hint}")


def _require(name: str, ok: bool, expected: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"TrainConfig.{name} must be {expected}, got {value!r}")


def _checked(name: str, hint: Any, value: Any) -> Any:
    """``value`` checked against the annotation ``hint`` of field ``name`` and normalised (see __post_init__)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
        if value is None:
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"TrainConfig.{name} must be one of {choices}, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _wrong_type(name, "true or false", value)
        return value
    if hint is int:
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise _wrong_type(name, "an int", value)
        return int(value)
    if hint is float:
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise _wrong_type(name, "a finite number", value)
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ValueError(f"TrainConfig.{name} must be a finite number, got {value!r}")
        return number
    if hint is str:
        if name in _PATH_FIELDS and isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise _wrong_type(name, "a string", value)
        return value
    if typing.get_origin(hint) is list:
        element = typing.get_args(hint)[0]
        expected = {int: "a list of ints", str: "a list of strings"}[element]
        if not isinstance(value, (list, tuple)):
            raise _wrong_type(name, expected, value)
        return [_checked_element(name, element, expected, v, value) for v in value]
    raise TypeError(f"TrainConfig.{name}: no check for the annotation {hint!r}")  # a new field needs a rule here


def _checked_element(name: str, element: type, expected: str, value: Any, whole: Any) -> Any:
    if element is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if element is str and isinstance(value, str):
        return value
    raise TypeError(f"TrainConfig.{name} must be {expected}, got {whole!r} (holding {value!r}, "
                    f"{_type_name(value)})")


#: The paper's stages. ``finetune-<dataset>`` follow the 20-epoch protocol; pre-training starts from ImageNet ViT
#: weights (pass ``--init npz:ViT-B_16.npz``) and the fine-tuning stages from the previous stage's export.
STAGES: dict[str, dict[str, Any]] = {
    "kadis700k-pretrain": {"dataset": "kadis700k", "dataset_options": {"label": "vsi"}, "epochs": 5, "lr": 1e-4,
                           "lr_milestones": [3], "val_fraction": 20 / 140, "test_fraction": 0.0},
    "pieapp-pretrain": {"dataset": "pieapp", "epochs": 5, "lr": 1e-5, "lr_milestones": [3], "batch_size": 12,
                        "val_fraction": 0.2, "test_fraction": 0.0},
    **{f"finetune-{name}": {"dataset": name, "epochs": 20, "lr": 1e-5, "lr_milestones": [12], "runs": 20}
       for name in ("live", "csiq", "tid2013", "kadid10k")},
    # The bundled default model: trained from scratch on KADIS-style pairs of permissively licensed photographs.
    "bundled-default": {"dataset": "kadis700k", "dataset_options": {"label": "vsi"}, "model_preset":
                        "vtamiq_tiny_patch16", "epochs": 4, "lr": 3e-4, "lr_milestones": [2, 3], "lr_gamma": 0.3,
                        "batch_size": 20, "precision": "bf16",
                        "train_patches": 128, "eval_patches": 256, "val_fraction": 0.05, "test_fraction": 0.0},
    # The bundled model's robust rounds (examples/bundled_model/train.sh): fine-tuning on one CSV of KADIS-style and
    # model-in-the-loop pairs labelled by the teacher (similarity, higher is better); pass --init and --data-root.
    "bundled-robust": {"dataset": "csv", "dataset_options": {"higher_is_better": True}, "epochs": 2, "lr": 1e-4,
                       "lr_milestones": [1], "lr_gamma": 0.3, "batch_size": 20, "precision": "bf16",
                       "train_patches": 128, "eval_patches": 256, "val_fraction": 0.05, "test_fraction": 0.0},
}

_IMAGENET_INIT = ("ImageNet ViT-B/16 weights for the backbone: npz:PATH (Google's ViT-B_16.npz of "
                  "imagenet21k+imagenet2012, see the README's Training section) or timm:PATH (a timm "
                  "vit_base_patch16_384 state_dict file)")
_KADIS_INIT = ("the model the kadis700k-pretrain stage exported, e.g. runs/kadis/best, or the authors' KADIS-700k "
               "checkpoint converted with vtamiq convert")
_FINETUNE_INIT = ("the model a pre-training stage exported, e.g. runs/pieapp/best or runs/kadis/best (anything "
                  "vtamiq_metric.load_model accepts)")

#: What ``--init`` each stage expects (the README's order: ImageNet -> KADIS-700k -> PieAPP -> fine-tuning). Without
#: ``--init`` such a stage builds its ViT-B from random weights, which is not the paper's protocol:
#: ``vtamiq-train train --stage NAME`` warns and quotes this text, ``vtamiq-train stages`` prints it. The
#: ``bundled-default`` stage trains from scratch by design and is not listed.
STAGE_INIT: dict[str, str] = {
    "kadis700k-pretrain": _IMAGENET_INIT,
    "pieapp-pretrain": _KADIS_INIT,
    **{f"finetune-{name}": _FINETUNE_INIT for name in ("live", "csiq", "tid2013", "kadid10k")},
    "bundled-robust": "a model to continue from: the VSI-trained bundled model grown with patch_fidelity "
                      "(examples/bundled_model/robust.py grow), or the previous robust round's export",
}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a ``.toml``, ``.yaml``/``.yml`` or ``.json`` file (a flat table of TrainConfig fields).

    Each setting that names a :class:`TrainConfig` field is type-checked here, so that the message names the file as
    well as the field (``lr = "1e-3"``, ``lr_milestones = "12"``, ``lr_gamma = nan``); ranges, unknown keys and
    combinations are checked when the config is built.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown suffix, text that is not UTF-8 or does not parse, not a table, or a NaN or infinite
            value (the file and the field are named).
        TypeError: a value of the wrong type (the file and the field are named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"cannot read config file {path}: expected UTF-8 text, got a byte that is not UTF-8 at "
                         f"offset {exc.start} ({exc.reason})") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:
                import tomli as tomllib
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ValueError(f"config file {path} must end in .toml, .yaml, .yml or .json")
    except RecursionError:
        raise ValueError(f"cannot parse config file {path}: it is nested too deeply; expected a flat table of "
                         f"settings") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cannot parse config file {path}: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError and tomllib.TOMLDecodeError
        raise ValueError(f"cannot parse config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise TypeError(f"config file {path} must hold a table of settings, got {type(data).__name__}")
    hints = typing.get_type_hints(TrainConfig)
    for key, value in data.items():
        if key in hints and key != "dataset_options":
            try:
                _checked(key, hints[key], value)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"config file {path}: {exc}") from None
    return data
