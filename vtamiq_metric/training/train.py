"""The training loop: reads top to bottom like the paper's protocol.

``fit(config)`` builds the dataset and its split by reference image, the model (random, ImageNet ViT or a previous
stage's weights), AdamW with a step schedule, and trains with MAE + rank loss (or the PieAPP preference loss),
validating every epoch. A run never loses work:

- ``<output>/checkpoints/last.pt`` is written atomically (temporary file, then rename) after every epoch with the
  model, optimiser, scheduler, RNG states, epoch and best score; ``resume=True`` continues bit for bit;
- ``<output>/best/`` holds the model with the best validation SROCC (or preference accuracy for PieAPP) as a
  safetensors directory, also written atomically;
- Ctrl-C stops after the last completed epoch's checkpoint, and the run can be resumed;
- metrics go to ``<output>/metrics.jsonl`` and ``metrics.csv`` (and TensorBoard when it is installed).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..hub import load_model, save_pretrained
from ..model.config import get_preset
from ..model.convert import backbone_from_npz, backbone_from_timm, load_backbone
from ..model.vtamiq import VTAMIQ
from .config import TrainConfig
from .data import PairPatches, TripletPatches, collate, derive_seed
from .datasets import get_dataset
from .datasets.base import IQADataset, PairwiseDataset
from .datasets.splits import Split, make_split, split_dataset
from .evaluate import aggregate_runs, correlations
from .losses import preference_loss, preference_probability, regression_rank_loss

__all__ = ["RunResult", "build_model", "fit", "predict", "run"]

_logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"


@dataclass
class RunResult:
    """What a finished run produced."""

    output: Path
    best_dir: Path
    best_epoch: int
    best_score: float
    test: dict[str, Any] | None


# ---------------------------------------------------------------------------------------------------------------
# Set-up


def _device(config: TrainConfig) -> torch.device:
    if config.device is not None:
        return torch.device(config.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _autocast(device: torch.device, precision: str):
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def build_model(config: TrainConfig) -> VTAMIQ:
    """The model a run starts from: ``config.init`` weights, or the preset with a seeded random initialisation."""
    torch.manual_seed(config.seed)
    init = config.init
    if init is not None and not init.startswith(("npz:", "timm:")):
        model = load_model(init)
        _logger.info("initialised from %s", init)
    else:
        model = VTAMIQ(get_preset(config.model_preset))
        if init is not None:
            kind, path = init.split(":", 1)
            if kind == "npz":
                weights = backbone_from_npz(path, model.config)
            else:
                if not Path(path).is_file():
                    raise FileNotFoundError(f"timm weights not found: {path}")
                weights = backbone_from_timm(torch.load(path, map_location="cpu", weights_only=True), model.config)
            load_backbone(model, weights)
            _logger.info("backbone initialised from ImageNet ViT weights %s", path)
    for prefix in config.freeze:
        matched = [p for name, p in model.named_parameters() if name == prefix or name.startswith(prefix + ".")]
        if not matched:
            raise ValueError(f"freeze prefix {prefix!r} matches no parameter; top-level modules are "
                             f"{sorted({n.split('.')[0] for n, _ in model.named_parameters()})}")
        for param in matched:
            param.requires_grad_(False)
    return model


def _split(config: TrainConfig, dataset: IQADataset | PairwiseDataset, split_seed: int, output: Path) -> Split:
    if config.split_file is not None:
        split = Split.load(config.split_file)
        split.check_ids(dataset.ref_ids())
    else:
        split = make_split(dataset.ref_ids(), seed=split_seed, val_fraction=config.val_fraction,
                           test_fraction=config.test_fraction)
    split.save(output / "split.json")
    return split


def _loader(items, config: TrainConfig, *, shuffle_seed: int | None) -> DataLoader:
    generator = None if shuffle_seed is None else torch.Generator().manual_seed(shuffle_seed)
    return DataLoader(items, batch_size=config.batch_size, shuffle=shuffle_seed is not None, generator=generator,
                      num_workers=config.workers, collate_fn=collate, pin_memory=torch.cuda.is_available(),
                      persistent_workers=False)


def _progress(iterable: Iterable, enabled: bool, **kwargs: Any) -> Iterable:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Forward passes


def _scores(model: VTAMIQ, batch: dict, key: str, device: torch.device, precision: str) -> torch.Tensor:
    ref = model.normalize(batch["ref"].to(device, non_blocking=True))
    dist = model.normalize(batch[key].to(device, non_blocking=True))
    scale = batch["scale"].to(device) if batch["scale"] is not None else None
    with _autocast(device, precision):
        return model(ref, dist, batch["pos"].to(device), scale).float()


def _loss(model: VTAMIQ, batch: dict, config: TrainConfig, device: torch.device, pairwise: bool) -> torch.Tensor:
    target = batch["target"].to(device)
    q_a = _scores(model, batch, "dist", device, config.precision)
    if pairwise:
        q_b = _scores(model, batch, "dist_b", device, config.precision)
        return preference_loss(q_a, q_b, target)
    return regression_rank_loss(q_a, target, kind=config.loss, rank_weight=config.rank_weight)


@torch.no_grad()
def predict(model: VTAMIQ, items: PairPatches | TripletPatches, config: TrainConfig, device: torch.device, *,
            repeats: int = 1, tag: str = "eval") -> dict[str, np.ndarray]:
    """Predictions for every item, averaged over ``repeats`` seeded draws (identical every call).

    Returns:
        ``{"pred": (n,), "target": (n,)}``; for triplets also ``"pred_b"`` and ``"prob"`` (predicted P(A preferred)).
    """
    model.eval()
    pairwise = isinstance(items, TripletPatches)
    totals: dict[str, np.ndarray] = {}
    for repeat in range(repeats):
        items.set_epoch(f"{tag}-{repeat}")
        parts: dict[str, list[np.ndarray]] = {"pred": [], "pred_b": [], "target": [], "index": []}
        for batch in _loader(items, config, shuffle_seed=None):
            parts["pred"].append(_scores(model, batch, "dist", device, config.precision).cpu().numpy())
            if pairwise:
                parts["pred_b"].append(_scores(model, batch, "dist_b", device, config.precision).cpu().numpy())
            parts["target"].append(batch["target"].numpy())
        for key, chunks in parts.items():
            if chunks:
                totals[key] = totals.get(key, 0) + np.concatenate(chunks).astype(np.float64)
    out = {key: value / repeats for key, value in totals.items()}
    if pairwise:
        out["prob"] = preference_probability(torch.from_numpy(out["pred"]), torch.from_numpy(out["pred_b"])).numpy()
    return out


def _validate(model: VTAMIQ, items, config: TrainConfig, device: torch.device) -> dict[str, Any]:
    if len(items) == 0:
        return {"selection": float("nan")}
    preds = predict(model, items, config, device, tag="val")
    if isinstance(items, TripletPatches):
        agree = (preds["prob"] > 0.5) == (preds["target"] > 0.5)
        decided = preds["target"] != 0.5
        accuracy = float(agree[decided].mean()) if decided.any() else float("nan")
        mae = float(np.abs(preds["prob"] - preds["target"]).mean())
        return {"preference_accuracy": accuracy, "preference_mae": mae, "selection": accuracy}
    metrics = correlations(preds["pred"], preds["target"])
    return {**{k: v for k, v in metrics.items() if k != "n"}, "selection": metrics["srocc"]}


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints and logs


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_best(model: VTAMIQ, output: Path, info: dict[str, Any]) -> Path:
    best = output / "best"
    staging = output / ".best.tmp"
    if staging.exists():
        for child in staging.iterdir():
            child.unlink()
    save_pretrained(model, staging, provenance=info)
    best.mkdir(exist_ok=True)
    for child in staging.iterdir():
        os.replace(child, best / child.name)
    staging.rmdir()
    return best


class _MetricLog:
    def __init__(self, output: Path) -> None:
        self.jsonl = output / "metrics.jsonl"
        self.csv = output / "metrics.csv"
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(output / "tensorboard"))
        except ImportError:
            _logger.debug("TensorBoard not installed; metrics go to JSONL and CSV only")

    def truncate_after(self, epoch: int) -> None:
        """Drop rows of epochs after ``epoch`` (written by a run that was interrupted before its checkpoint)."""
        if not self.jsonl.exists():
            return
        rows = [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]
        self._rewrite([row for row in rows if row["epoch"] <= epoch])

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        self.jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
        keys = sorted({key for row in rows for key in row}, key=lambda k: (k != "epoch", k))
        with open(self.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        rows = [json.loads(line) for line in self.jsonl.read_text().splitlines()] if self.jsonl.exists() else []
        self._rewrite(rows + [row])
        if self.writer is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch" and math.isfinite(value):
                    self.writer.add_scalar(key, value, row["epoch"])
            self.writer.flush()


# ---------------------------------------------------------------------------------------------------------------
# The loop


def fit(config: TrainConfig, *, resume: bool = False, split_seed: int | None = None,
        output: str | Path | None = None) -> RunResult:
    """Train one run; see the module docstring for what is written where.

    Args:
        config: the run's settings.
        resume: continue from ``<output>/checkpoints/last.pt`` if it exists.
        split_seed: overrides ``config.split_seed`` (used by :func:`run` for repeated runs).
        output: overrides ``config.output``.

    Returns:
        A :class:`RunResult` with the best epoch, its validation score, and test metrics when there is a test split.
    """
    output = Path(output or config.output)
    (output / "checkpoints").mkdir(parents=True, exist_ok=True)
    split_seed = config.split_seed if split_seed is None else split_seed
    (output / "config.json").write_text(json.dumps({**config.to_dict(), "split_seed": split_seed}, indent=2) + "\n")
    device = _device(config)

    dataset = get_dataset(config.dataset, config.data_root, **config.dataset_options)
    pairwise = isinstance(dataset, PairwiseDataset)
    train_set, val_set, test_set = split_dataset(dataset, _split(config, dataset, split_seed, output))
    _logger.info("%s: %d train, %d val, %d test items", config.dataset, len(train_set), len(val_set), len(test_set))

    model = build_model(config).to(device)
    wrap = TripletPatches if pairwise else PairPatches
    patch, sampling = model.config.patch_size, model.config.sampling
    train_items = wrap(train_set.records, config.train_patches, patch, sampling, config.seed)
    val_items = wrap(val_set.records, config.eval_patches, patch, sampling, config.seed)
    test_items = wrap(test_set.records, config.eval_patches, patch, sampling, config.seed)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=config.lr_milestones,
                                                     gamma=config.lr_gamma)
    log = _MetricLog(output)
    checkpoint_path = output / "checkpoints" / CHECKPOINT_NAME
    start_epoch, best_score, best_epoch = 0, -math.inf, -1
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start_epoch, best_score, best_epoch = state["epoch"] + 1, state["best_score"], state["best_epoch"]
        log.truncate_after(state["epoch"])
        _logger.info("resumed from %s after epoch %d", checkpoint_path, state["epoch"])
    elif resume:
        _logger.warning("no checkpoint at %s; starting from scratch", checkpoint_path)

    try:
        for epoch in range(start_epoch, config.epochs):
            model.train()
            train_items.set_epoch(epoch)
            started = time.perf_counter()
            losses, seen = [], 0
            batches = _loader(train_items, config, shuffle_seed=derive_seed(config.seed, "order", epoch))
            steps = len(batches) if config.max_steps_per_epoch is None else min(len(batches),
                                                                                config.max_steps_per_epoch)
            for step, batch in enumerate(_progress(batches, config.progress, total=steps, desc=f"epoch {epoch}")):
                if step >= steps:
                    break
                loss = _loss(model, batch, config, device, pairwise)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite training loss {loss.item()} at epoch {epoch}, step {step}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                optimizer.step()
                losses.append(loss.item())
                seen += len(batch["target"])
            elapsed = time.perf_counter() - started
            scheduler.step()
            val = _validate(model, val_items, config, device)
            row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "lr": optimizer.param_groups[0]["lr"],
                   "pairs_per_second": seen / elapsed if elapsed > 0 else float("nan"),
                   **{f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float))}}
            selection = val["selection"]
            if best_epoch < 0 or (math.isfinite(selection) and selection > best_score):
                best_score, best_epoch = (selection if math.isfinite(selection) else -math.inf), epoch
                _save_best(model, output, {"dataset": config.dataset, "epoch": epoch, "val": val,
                                           "seed": config.seed, "split_seed": split_seed})
            log.append(row)
            _atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "scheduler": scheduler.state_dict(), "rng": _rng_state(), "epoch": epoch,
                                "best_score": best_score, "best_epoch": best_epoch,
                                "config": config.to_dict()}, checkpoint_path)
            _logger.info("epoch %d: loss %.4f, val %s", epoch, row["train_loss"], val.get("selection"))
    except KeyboardInterrupt:
        _logger.warning("interrupted; the last completed epoch is checkpointed in %s, resume with --resume",
                        checkpoint_path)
        raise

    test = None
    if len(test_items) > 0:
        best = load_model(output / "best", device=device)
        preds = predict(best, test_items, config, device, repeats=config.eval_repeats, tag="test")
        if pairwise:
            test = {"preference_mae": float(np.abs(preds["prob"] - preds["target"]).mean())}
        else:
            test = correlations(preds["pred"], preds["target"])
        (output / "test.json").write_text(json.dumps(test, indent=2, default=float) + "\n")
    return RunResult(output=output, best_dir=output / "best", best_epoch=best_epoch, best_score=best_score,
                     test=test)


def run(config: TrainConfig, *, resume: bool = False) -> list[RunResult]:
    """``config.runs`` independent runs (split seeds ``split_seed + i``), with a ``summary.json`` of test metrics
    (mean, std, median over runs) when there is more than one."""
    if config.runs == 1:
        return [fit(config, resume=resume)]
    output = Path(config.output)
    results = [fit(config, resume=resume, split_seed=config.split_seed + i, output=output / f"run_{i:02d}")
               for i in range(config.runs)]
    tests = [r.test for r in results if r.test is not None]
    if tests:
        (output / "summary.json").write_text(json.dumps(aggregate_runs(tests), indent=2, default=float) + "\n")
    return results
