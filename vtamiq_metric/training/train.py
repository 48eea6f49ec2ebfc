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

Several processes (``torchrun --nproc_per_node=N vtamiq-train train ...``, one process per GPU, or per CPU worker with
gloo; see :mod:`.distributed`): the model is wrapped in ``DistributedDataParallel`` and each rank trains on its share
of every epoch's permutation (:class:`.distributed.EpochShardSampler`, the same permutation as a single-process run).

- **Effective batch size** is ``batch_size x world_size`` (each rank takes ``batch_size`` pairs per step; gradients
  are averaged over ranks). The rank loss compares pairs within each rank's own ``batch_size`` pairs.
- **Learning rate** is used as configured, not rescaled: when you change the number of processes, scale
  ``lr`` yourself if you want to (e.g. linearly with the effective batch size).
- Validation and test predictions are sharded by item index (rank r takes items r, r + N, ..., unpadded), gathered
  and put back in index order, so every item counts exactly once in SROCC/PLCC/KROCC and the numbers do not depend
  on N (up to floating-point batch effects).
- Only rank 0 logs, shows progress bars and writes ``config.json``, ``split.json``, metrics, checkpoints, ``best/``
  and ``test.json``; the other ranks wait at a barrier where they need those files. The output folder must be on a
  filesystem that every node sees (all ranks read ``last.pt`` on resume and ``best/`` for the test).
- The checkpoint holds the unwrapped model, and the per-epoch order and CAPS seeds do not depend on N, so a run can
  be resumed with a different number of processes (or in one process). RNG states are saved per rank; on resume
  with the same N each rank restores its own state (bit-exact resumption as far as the collectives are
  deterministic), with a different N every rank restores rank 0's state and ranks > 0 then reseed from
  ``(seed, rank, epoch)`` so that their dropout draws differ.
- A single process (no torchrun, or ``WORLD_SIZE=1``) creates no process group and runs exactly as before.
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
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler, Subset

from ..hub import load_model, save_pretrained
from ..model.config import get_preset
from ..model.convert import backbone_from_npz, backbone_from_timm, load_backbone
from ..model.vtamiq import VTAMIQ
from .. import _distributed as distributed
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


def _split(config: TrainConfig, dataset: IQADataset | PairwiseDataset, split_seed: int, output: Path | None) -> Split:
    if config.split_file is not None:
        split = Split.load(config.split_file)
        split.check_ids(dataset.ref_ids())
    else:
        split = make_split(dataset.ref_ids(), seed=split_seed, val_fraction=config.val_fraction,
                           test_fraction=config.test_fraction)
    if output is not None:  # rank 0 only; the split is a pure function of the seed, identical on every rank
        split.save(output / "split.json")
    return split


def _loader(items, config: TrainConfig, *, shuffle_seed: int | None, sampler: Sampler | None = None) -> DataLoader:
    generator = None if shuffle_seed is None else torch.Generator().manual_seed(shuffle_seed)
    return DataLoader(items, batch_size=config.batch_size, shuffle=shuffle_seed is not None, generator=generator,
                      sampler=sampler, num_workers=config.workers, collate_fn=collate,
                      pin_memory=torch.cuda.is_available(), persistent_workers=False)


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


class _TrainForward(torch.nn.Module):
    """The training forward of one batch (one model pass, or two for PieAPP triplets) as a single module call, so
    that ``DistributedDataParallel`` sees exactly one forward per backward."""

    def __init__(self, model: VTAMIQ, device: torch.device, precision: str, pairwise: bool) -> None:
        super().__init__()
        self.model = model
        self.device = device
        self.precision = precision
        self.pairwise = pairwise

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        q_a = _scores(self.model, batch, "dist", self.device, self.precision)
        q_b = _scores(self.model, batch, "dist_b", self.device, self.precision) if self.pairwise else None
        return q_a, q_b


def _loss(forward: torch.nn.Module, batch: dict, config: TrainConfig, device: torch.device,
          pairwise: bool) -> torch.Tensor:
    target = batch["target"].to(device)
    q_a, q_b = forward(batch)
    if pairwise:
        return preference_loss(q_a, q_b, target)
    return regression_rank_loss(q_a, target, kind=config.loss, rank_weight=config.rank_weight)


@torch.no_grad()
def predict(model: VTAMIQ, items: PairPatches | TripletPatches, config: TrainConfig, device: torch.device, *,
            repeats: int = 1, tag: str = "eval", shard: bool = False) -> dict[str, np.ndarray]:
    """Predictions for every item, averaged over ``repeats`` seeded draws (identical every call).

    Args:
        model: the (unwrapped) model.
        items: the items to predict.
        config: batch size, workers and precision.
        device: where the model runs.
        repeats: seeded CAPS draws averaged per item.
        tag: names the draws (``"val"``, ``"test"``), so that each tag has its own fixed positions.
        shard: under an initialised process group, each rank predicts only items ``rank, rank + world, ...`` and the
            results are gathered on every rank; every rank then returns the predictions of all items.

    Returns:
        ``{"pred": (n,), "target": (n,), "index": (n,)}`` in item order (``index`` is ``0 .. n-1``); for triplets
        also ``"pred_b"`` and ``"prob"`` (predicted P(A preferred)).
    """
    model.eval()
    pairwise = isinstance(items, TripletPatches)
    rank, world = distributed.rank_world() if shard else (0, 1)
    source = items if world == 1 else Subset(items, list(distributed.shard_indices(len(items), rank, world)))
    totals: dict[str, np.ndarray] = {}
    index = np.zeros(0, dtype=np.int64)
    for repeat in range(repeats):
        items.set_epoch(f"{tag}-{repeat}")
        parts: dict[str, list[np.ndarray]] = {"pred": [], "pred_b": [], "target": [], "index": []}
        for batch in _loader(source, config, shuffle_seed=None):
            parts["pred"].append(_scores(model, batch, "dist", device, config.precision).cpu().numpy())
            if pairwise:
                parts["pred_b"].append(_scores(model, batch, "dist_b", device, config.precision).cpu().numpy())
            parts["target"].append(batch["target"].numpy())
            parts["index"].append(batch["index"].numpy())
        if parts["index"]:
            index = np.concatenate(parts.pop("index")).astype(np.int64)
        else:
            parts.pop("index")
        for key, chunks in parts.items():
            if chunks:
                totals[key] = totals.get(key, 0) + np.concatenate(chunks).astype(np.float64)
    out = {key: value / repeats for key, value in totals.items()}
    if world > 1:
        if not out:  # an empty shard (fewer items than ranks) still has to take part in the gather
            out = {key: np.zeros(0) for key in (("pred", "pred_b", "target") if pairwise else ("pred", "target"))}
        out = distributed.gather_indexed(index, out, len(items))
    else:
        out["index"] = index
    if pairwise:
        out["prob"] = preference_probability(torch.from_numpy(out["pred"]), torch.from_numpy(out["pred_b"])).numpy()
    return out


def _validate(model: VTAMIQ, items, config: TrainConfig, device: torch.device, *,
              shard: bool = False) -> dict[str, Any]:
    if len(items) == 0:
        return {"selection": float("nan")}
    preds = predict(model, items, config, device, tag="val", shard=shard)
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


def _rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """This process's RNG states; with ``device`` (distributed runs) only that GPU's CUDA state."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        if device is not None and device.type == "cuda":
            state["cuda_device"] = torch.cuda.get_rng_state(device)
        elif device is None:
            state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if not torch.cuda.is_available():
        return
    if device is None:
        if "cuda" in state:
            torch.cuda.set_rng_state_all(state["cuda"])
    elif device.type == "cuda":
        if "cuda_device" in state:
            torch.cuda.set_rng_state(state["cuda_device"], device)
        elif "cuda" in state and device.index is not None and device.index < len(state["cuda"]):
            torch.cuda.set_rng_state(state["cuda"][device.index], device)


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


def _restore_rng(state: dict[str, Any], ctx: distributed.DistContext, config: TrainConfig, epoch: int) -> None:
    if not ctx.distributed:
        _set_rng_state(state["rng"])
        return
    per_rank = state.get("rng_ranks")
    if per_rank is not None and len(per_rank) == ctx.world_size:
        _set_rng_state(per_rank[ctx.rank], ctx.device)
        return
    # Saved with another number of processes: rank 0's state everywhere, then distinct streams on ranks > 0.
    _set_rng_state(state["rng"], ctx.device)
    if ctx.rank > 0:
        torch.manual_seed(derive_seed(config.seed, "rank", ctx.rank, epoch))


def fit(config: TrainConfig, *, resume: bool = False, split_seed: int | None = None,
        output: str | Path | None = None) -> RunResult:
    """Train one run; see the module docstring for what is written where, and for runs under ``torchrun``.

    Args:
        config: the run's settings.
        resume: continue from ``<output>/checkpoints/last.pt`` if it exists.
        split_seed: overrides ``config.split_seed`` (used by :func:`run` for repeated runs).
        output: overrides ``config.output``.

    Returns:
        A :class:`RunResult` with the best epoch, its validation score, and test metrics when there is a test split
        (the same on every rank).
    """
    ctx = distributed.init_from_env(config.device)
    main = ctx.is_main
    device = ctx.device
    output = Path(output or config.output)
    split_seed = config.split_seed if split_seed is None else split_seed
    if main:
        (output / "checkpoints").mkdir(parents=True, exist_ok=True)
        (output / "config.json").write_text(json.dumps({**config.to_dict(), "split_seed": split_seed}, indent=2)
                                            + "\n")

    dataset = get_dataset(config.dataset, config.data_root, **config.dataset_options)
    pairwise = isinstance(dataset, PairwiseDataset)
    split = _split(config, dataset, split_seed, output if main else None)
    train_set, val_set, test_set = split_dataset(dataset, split)
    if main:
        _logger.info("%s: %d train, %d val, %d test items", config.dataset, len(train_set), len(val_set),
                     len(test_set))

    model = build_model(config).to(device)
    if ctx.rank > 0:  # same initial weights (seeded above) but distinct dropout streams per rank
        torch.manual_seed(derive_seed(config.seed, "rank", ctx.rank))
    wrap = TripletPatches if pairwise else PairPatches
    patch, sampling = model.config.patch_size, model.config.sampling
    train_items = wrap(train_set.records, config.train_patches, patch, sampling, config.seed)
    val_items = wrap(val_set.records, config.eval_patches, patch, sampling, config.seed)
    test_items = wrap(test_set.records, config.eval_patches, patch, sampling, config.seed)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=config.lr_milestones,
                                                     gamma=config.lr_gamma)
    log = _MetricLog(output) if main else None
    checkpoint_path = output / "checkpoints" / CHECKPOINT_NAME
    start_epoch, best_score, best_epoch = 0, -math.inf, -1
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_score, best_epoch = state["epoch"] + 1, state["best_score"], state["best_epoch"]
        _restore_rng(state, ctx, config, start_epoch)
        if log is not None:
            log.truncate_after(state["epoch"])
        if main:
            _logger.info("resumed from %s after epoch %d (saved by %d process(es), now %d)", checkpoint_path,
                         state["epoch"], state.get("world_size", 1), ctx.world_size)
    elif resume and main:
        _logger.warning("no checkpoint at %s; starting from scratch", checkpoint_path)
    if ctx.distributed:
        starts = distributed.all_gather_objects(start_epoch)
        if len(set(starts)) != 1:
            raise ValueError(f"expected every rank to start at the same epoch, got {starts}; the output folder "
                             f"{output} must be on a filesystem that every node sees")

    forward: torch.nn.Module = _TrainForward(model, device, config.precision, pairwise)
    sampler = None
    if ctx.distributed:
        forward = DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None)
        sampler = distributed.EpochShardSampler(train_items, num_replicas=ctx.world_size, rank=ctx.rank,
                                                seed=config.seed)

    try:
        for epoch in range(start_epoch, config.epochs):
            forward.train()
            train_items.set_epoch(epoch)
            started = time.perf_counter()
            losses, seen = [], 0
            if sampler is None:
                batches = _loader(train_items, config, shuffle_seed=derive_seed(config.seed, "order", epoch))
            else:
                sampler.set_epoch(epoch)
                batches = _loader(train_items, config, shuffle_seed=None, sampler=sampler)
            steps = len(batches) if config.max_steps_per_epoch is None else min(len(batches),
                                                                                config.max_steps_per_epoch)
            shown = config.progress and main
            for step, batch in enumerate(_progress(batches, shown, total=steps, desc=f"epoch {epoch}")):
                if step >= steps:
                    break
                loss = _loss(forward, batch, config, device, pairwise)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite training loss {loss.item()} at epoch {epoch}, step {step}"
                                             + (f" on rank {ctx.rank}" if ctx.distributed else ""))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                optimizer.step()
                losses.append(loss.item())
                seen += len(batch["target"])
            elapsed = time.perf_counter() - started
            scheduler.step()
            if ctx.distributed:
                loss_sum, loss_count, seen_all = distributed.all_reduce_sum([sum(losses), len(losses), seen], device)
                train_loss, seen = loss_sum / max(loss_count, 1), int(seen_all)
            else:
                train_loss = float(np.mean(losses))
            val = _validate(model, val_items, config, device, shard=ctx.distributed)
            row = {"epoch": epoch, "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"],
                   "pairs_per_second": seen / elapsed if elapsed > 0 else float("nan"),
                   **{f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float))}}
            selection = val["selection"]
            improved = best_epoch < 0 or (math.isfinite(selection) and selection > best_score)
            if improved:
                best_score, best_epoch = (selection if math.isfinite(selection) else -math.inf), epoch
            rng = _rng_state(device if ctx.distributed else None)
            rng_ranks = distributed.all_gather_objects(rng) if ctx.distributed else None
            if main:
                if improved:
                    _save_best(model, output, {"dataset": config.dataset, "epoch": epoch, "val": val,
                                               "seed": config.seed, "split_seed": split_seed})
                log.append(row)
                checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(), "rng": rng, "epoch": epoch,
                              "best_score": best_score, "best_epoch": best_epoch, "config": config.to_dict(),
                              "world_size": ctx.world_size}
                if rng_ranks is not None:
                    checkpoint["rng_ranks"] = rng_ranks
                _atomic_torch_save(checkpoint, checkpoint_path)
                _logger.info("epoch %d: loss %.4f, val %s", epoch, row["train_loss"], val.get("selection"))
            distributed.barrier()  # best/ and last.pt are complete before any rank goes on
    except KeyboardInterrupt:
        if main:
            _logger.warning("interrupted; the last completed epoch is checkpointed in %s, resume with --resume",
                            checkpoint_path)
        raise

    test = None
    if len(test_items) > 0:
        best = load_model(output / "best", device=device)
        preds = predict(best, test_items, config, device, repeats=config.eval_repeats, tag="test",
                        shard=ctx.distributed)
        if pairwise:
            test = {"preference_mae": float(np.abs(preds["prob"] - preds["target"]).mean())}
        else:
            test = correlations(preds["pred"], preds["target"])
        if main:
            (output / "test.json").write_text(json.dumps(test, indent=2, default=float) + "\n")
    distributed.barrier()
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
    if tests and distributed.is_main():
        (output / "summary.json").write_text(json.dumps(aggregate_runs(tests), indent=2, default=float) + "\n")
    return results
