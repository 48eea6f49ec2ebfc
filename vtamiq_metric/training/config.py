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
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .._precision import PRECISIONS, Precision

__all__ = ["STAGES", "DatasetOptions", "TrainConfig", "load_config_file"]

Loss = Literal["l1", "l2"]
_LOSSES = typing.get_args(Loss)


@dataclass(frozen=True)
class DatasetOptions:
    """Options for the dataset reader, passed as ``get_dataset(name, root, **options.kwargs())``.

    None (the default of every field) leaves the reader's own default. A reader accepts only the options of its
    constructor: an option it does not take (e.g. ``label`` for ``kadid10k``) raises ``TypeError`` naming it when the
    dataset is opened. In a config file the options form a table (TOML ``dataset_options = {label = "vsi"}``); on the
    command line, ``--dataset-option KEY=VALUE`` (repeatable, VALUE read as JSON when it parses).

    Attributes:
        label: ``kadis700k``: the label column used as the score (``"vsi"`` in the paper).
        exclude_types: ``kadis700k``: KADID type ids (1-25) to drop.
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
            raise ValueError(f"dataset_options must be a table of reader options, got {type(data).__name__}")
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
        precision: ``"auto"`` (bf16 autocast on CUDA), ``"fp32"`` or ``"bf16"``.
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
    precision: Precision = "auto"
    device: str | None = None
    max_steps_per_epoch: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "train_patches", "eval_patches", "eval_repeats", "runs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an int >= 1, got {value!r}")
        if self.workers < 0:
            raise ValueError(f"TrainConfig.workers must be >= 0, got {self.workers!r}")
        if self.loss not in _LOSSES:
            raise ValueError(f"TrainConfig.loss must be one of {_LOSSES}, got {self.loss!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainConfig.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr!r}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"TrainConfig.max_steps_per_epoch must be >= 1 or None, got {self.max_steps_per_epoch}")
        self.lr_milestones = [int(m) for m in self.lr_milestones]
        self.freeze = list(self.freeze)
        if not isinstance(self.dataset_options, DatasetOptions):
            self.dataset_options = DatasetOptions.from_dict(self.dataset_options)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field (``dataset_options`` holds only the options that are set)."""
        return {**dataclasses.asdict(self), "dataset_options": self.dataset_options.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys raise with the list of known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known settings are {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with some fields changed."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})


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
}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a ``.toml``, ``.yaml``/``.yml`` or ``.json`` file (a flat table of TrainConfig fields)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text()
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ValueError(f"config file {path} must end in .toml, .yaml, .yml or .json")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cannot parse config file {path}: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError and tomllib.TOMLDecodeError
        raise ValueError(f"cannot parse config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a table of settings, got {type(data).__name__}")
    return data
