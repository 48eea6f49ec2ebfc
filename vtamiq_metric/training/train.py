"""The training loop: reads top to bottom like the paper's protocol.

``fit(config)`` builds the dataset and its split by reference image, the model (random, ImageNet ViT or a previous
stage's weights), AdamW with a step schedule, and trains with MAE + rank loss (or the PieAPP preference loss),
validating every epoch. A run never loses work:

- ``<output>/checkpoints/last.pt`` is written atomically (temporary file, then rename) after every epoch with the
  model, optimiser, scheduler, RNG states, epoch and best score; ``resume=True`` continues bit for bit;
- ``<output>/best/`` holds the model with the best validation SROCC (or preference accuracy for PieAPP; a tie goes
  to the later epoch) as a safetensors directory, also written atomically;
- Ctrl-C stops after the last completed epoch's checkpoint, and the run can be resumed;
- metrics go to ``<output>/metrics.jsonl`` and ``metrics.csv`` (and TensorBoard when it is installed).

Checkpoints, ``best/``, RNG states and the metric log are written by :mod:`.checkpoint`.

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

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from .. import _torchrun
from .._io import atomic_path, atomic_write_text
from .._precision import autocast
from ..hub import load_model
from ..model.config import get_preset
from ..model.convert import backbone_from_npz, backbone_from_timm, load_backbone
from ..model.vtamiq import VTAMIQ
from . import checkpoint
from .config import TrainConfig
from .data import PairPatches, TripletPatches, collate
from .datasets import get_dataset
from .datasets.base import IQADataset, PairwiseDataset
from .datasets.splits import Split, make_split, split_dataset
from .distributed import EpochShardSampler, all_reduce_sum, gather_indexed
from .evaluate import aggregate_runs, correlations
from .losses import preference_loss, preference_probability, regression_rank_loss
from .seeds import derive_seed

__all__ = ["RunResult", "fit", "initial_model", "predict", "run"]

_logger = logging.getLogger(__name__)


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


def initial_model(config: TrainConfig) -> VTAMIQ:
    """The model a run starts from: ``config.init`` weights, or the preset with a seeded random initialisation.

    Seeds the global torch RNG with ``config.seed`` first (the initialisation draws from it), then freezes the
    parameters named by ``config.freeze``.
    """
    torch.manual_seed(config.seed)
    init = config.init
    if init is not None and not init.startswith(("npz:", "timm:")):
        model = load_model(init)
        _logger.info("initialised from %s", init)
    else:
        model = VTAMIQ(get_preset(config.model_preset))
        if init is not None:
            kind, path = init.split(":", 1)
            path = str(Path(path).expanduser())
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


def _split(config: TrainConfig, dataset: IQADataset | PairwiseDataset, split_seed: int) -> Split:
    if config.split_file is not None:
        split = Split.load(config.split_file)
        split.check_ids(dataset.ref_ids())
        return split
    return make_split(dataset.ref_ids(), seed=split_seed, val_fraction=config.val_fraction,
                      test_fraction=config.test_fraction)


def _loader(items: Dataset, config: TrainConfig, *, shuffle_seed: int | None,
            sampler: Sampler | None = None) -> DataLoader:
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
    with autocast(device, precision, training=True):  # "auto": bf16 on CUDA only when training
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

    Raises:
        ValueError: ``repeats`` is not an int >= 1.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1 (seeded draws averaged per item), got {repeats!r}")
    model.eval()
    pairwise = isinstance(items, TripletPatches)
    rank, world = _torchrun.rank_world() if shard else (0, 1)
    source = items if world == 1 else Subset(items, list(_torchrun.shard_indices(len(items), rank, world)))
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
    out: dict[str, np.ndarray] = {key: value / repeats for key, value in totals.items()}
    if world > 1:
        if not out:  # an empty shard (fewer items than ranks) still has to take part in the gather
            out = {key: np.zeros(0) for key in (("pred", "pred_b", "target") if pairwise else ("pred", "target"))}
        out = gather_indexed(index, out, len(items))
    else:
        out["index"] = index
    if pairwise:
        out["prob"] = preference_probability(torch.from_numpy(out["pred"]), torch.from_numpy(out["pred_b"])).numpy()
    return out


def _validate(model: VTAMIQ, items: PairPatches | TripletPatches, config: TrainConfig, device: torch.device, *,
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
# The loop


def _split_dataset(config: TrainConfig, split_seed: int, ctx: _torchrun.DistContext
                   ) -> tuple[Any, Any, Any, bool, Split]:
    """The dataset split by reference image: ``(train, val, test, pairwise, split)``; the split is a pure function of
    the seed, identical on every rank (rank 0 saves it)."""
    dataset = get_dataset(config.dataset, config.data_root, **config.dataset_options.kwargs())
    split = _split(config, dataset, split_seed)
    train_set, val_set, test_set = split_dataset(dataset, split)
    if ctx.is_main:
        _logger.info("%s: %d train, %d val, %d test items", config.dataset, len(train_set), len(val_set),
                     len(test_set))
    return train_set, val_set, test_set, isinstance(dataset, PairwiseDataset), split


def _optimizer(model: VTAMIQ, config: TrainConfig) -> tuple[list[torch.Tensor], torch.optim.Optimizer,
                                                              torch.optim.lr_scheduler.LRScheduler]:
    """AdamW over the trainable parameters with the step decay of ``lr_milestones``/``lr_gamma``."""
    params: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=config.lr_milestones,
                                                     gamma=config.lr_gamma)
    return params, optimizer, scheduler


def _train_epoch(forward: torch.nn.Module, items: PairPatches | TripletPatches, epoch: int, *, config: TrainConfig,
                 ctx: _torchrun.DistContext, optimizer: torch.optim.Optimizer, params: list[torch.Tensor],
                 sampler: EpochShardSampler | None, pairwise: bool) -> tuple[float, float]:
    """One epoch of optimisation; returns the mean training loss and the pairs per second (both over all ranks)."""
    forward.train()
    items.set_epoch(epoch)
    started = time.perf_counter()
    losses, seen = [], 0
    if sampler is None:
        batches = _loader(items, config, shuffle_seed=derive_seed(config.seed, "order", epoch))
    else:
        sampler.set_epoch(epoch)
        batches = _loader(items, config, shuffle_seed=None, sampler=sampler)
    steps = len(batches) if config.max_steps_per_epoch is None else min(len(batches), config.max_steps_per_epoch)
    for step, batch in enumerate(_progress(batches, config.progress and ctx.is_main, total=steps,
                                           desc=f"epoch {epoch}")):
        if step >= steps:
            break
        loss = _loss(forward, batch, config, ctx.device, pairwise)
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
    if ctx.distributed:
        loss_sum, loss_count, seen_all = all_reduce_sum([sum(losses), len(losses), seen], ctx.device)
        train_loss, seen = loss_sum / max(loss_count, 1), int(seen_all)
    else:
        train_loss = float(np.mean(losses))
    return train_loss, seen / elapsed if elapsed > 0 else float("nan")


def _test(output: Path, items: PairPatches | TripletPatches, config: TrainConfig, ctx: _torchrun.DistContext,
          pairwise: bool) -> dict[str, Any] | None:
    """Test metrics of ``<output>/best`` (written to ``test.json`` by rank 0); None without a test split."""
    if len(items) == 0:
        return None
    best = load_model(output / "best", device=ctx.device)
    preds = predict(best, items, config, ctx.device, repeats=config.eval_repeats, tag="test", shard=ctx.distributed)
    if pairwise:
        test = {"preference_mae": float(np.abs(preds["prob"] - preds["target"]).mean())}
    else:
        test = correlations(preds["pred"], preds["target"])
    if ctx.is_main:
        atomic_write_text(output / "test.json", json.dumps(test, indent=2, default=float) + "\n")
    return test


def fit(config: TrainConfig, *, resume: bool = False, split_seed: int | None = None,
        output: str | Path | None = None, overwrite: bool = False) -> RunResult:
    """Train one run; see the module docstring for what is written where, and for runs under ``torchrun``.

    Everything that can be checked is checked before the output folder is touched: the folder itself (not a file;
    empty unless ``resume`` or ``overwrite``), the dataset (its root and files), its split, the initial weights and
    the optimiser settings, on every rank. Only then are a previous run's files removed (``overwrite``: exactly
    those, :func:`.checkpoint.clear_run_files`) and the new ones written, so a run that cannot start changes
    nothing. Without a validation split (``val_fraction`` 0, or too few references) a warning says so and ``best/``
    holds the last epoch's model.

    Args:
        config: the run's settings.
        resume: continue from ``<output>/checkpoints/last.pt`` if it exists.
        split_seed: overrides ``config.split_seed`` (used by :func:`run` for repeated runs).
        output: overrides ``config.output``.
        overwrite: start afresh in an output folder that holds a previous run, removing the files a run writes
            (:data:`.checkpoint.RUN_FILES` and TensorBoard's) and nothing else; without it (or ``resume``) a
            non-empty folder is refused.

    Returns:
        A :class:`RunResult` with the best epoch, its validation score, and test metrics when there is a test split
        (the same on every rank).

    Raises:
        FileExistsError: ``output`` is not empty and neither ``resume`` nor ``overwrite`` is set.
        FileNotFoundError / ValueError / TypeError: the dataset, split or initial weights cannot be used (nothing
            was written or removed).
    """
    ctx = _torchrun.init_from_env(config.device)
    output = Path(output or config.output)
    split_seed = config.split_seed if split_seed is None else split_seed
    _on_every_rank(ctx, lambda: checkpoint.check_output_folder(output, resume=resume, overwrite=overwrite)
                   if ctx.is_main else None)
    train_set, val_set, test_set, pairwise, split, model = _on_every_rank(
        ctx, lambda: (*_split_dataset(config, split_seed, ctx), initial_model(config).to(ctx.device)))
    wrap = TripletPatches if pairwise else PairPatches
    patch, sampling = model.config.patch_size, model.config.sampling
    side = model.config.downsample_side
    train_items = wrap(train_set.records, config.train_patches, patch, sampling, config.seed, downsample_side=side)
    val_items = wrap(val_set.records, config.eval_patches, patch, sampling, config.seed, downsample_side=side)
    test_items = wrap(test_set.records, config.eval_patches, patch, sampling, config.seed, downsample_side=side)
    params, optimizer, scheduler = _optimizer(model, config)
    if ctx.is_main:  # only now that the folder, the data, the split and the initial weights are known to be usable
        if overwrite:
            checkpoint.clear_run_files(output)
        (output / "checkpoints").mkdir(parents=True, exist_ok=True)
        atomic_write_text(output / "config.json",
                          json.dumps({**config.to_dict(), "split_seed": split_seed}, indent=2) + "\n")
        with atomic_path(output / "split.json") as tmp:
            split.save(tmp)
    _torchrun.barrier()  # the folder is cleared before any rank writes or reads there

    if ctx.rank > 0:  # same initial weights (seeded above) but distinct dropout streams per rank
        torch.manual_seed(derive_seed(config.seed, "rank", ctx.rank))
    keep_last = len(val_items) == 0
    if keep_last and ctx.is_main:
        _logger.warning("no validation items (val_fraction=%s over %d reference images): epochs cannot be compared, "
                        "so best/ will hold the last epoch's model; raise --val-fraction to select by validation",
                        config.val_fraction, len(split.train) + len(split.val) + len(split.test))
    log = checkpoint.MetricLog(output) if ctx.is_main else None
    last = output / "checkpoints" / checkpoint.CHECKPOINT_NAME
    state = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    progress = checkpoint.resume(last, **state, ctx=ctx, seed=config.seed, log=log) if resume else checkpoint.Progress()
    starts = _torchrun.all_gather_objects(progress.start_epoch)
    if len(set(starts)) != 1:
        raise ValueError(f"expected every rank to start at the same epoch, got {starts}; the output folder {output} "
                         f"must be on a filesystem that every node sees")

    forward: torch.nn.Module = _TrainForward(model, ctx.device, config.precision, pairwise)
    sampler = None
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        forward = DistributedDataParallel(forward, device_ids=device_ids)
        sampler = EpochShardSampler(train_items, num_replicas=ctx.world_size, rank=ctx.rank, seed=config.seed)
    try:
        for epoch in range(progress.start_epoch, config.epochs):
            train_loss, pairs_per_second = _train_epoch(forward, train_items, epoch, config=config, ctx=ctx,
                                                        optimizer=optimizer, params=params, sampler=sampler,
                                                        pairwise=pairwise)
            scheduler.step()
            try:
                val = _validate(model, val_items, config, ctx.device, shard=ctx.distributed)
            except Exception:
                # The epoch is trained: keep it (an hour of work on a CPU) before the error ends the run. Resuming
                # goes on with the next epoch; this one is not a candidate for best/, since it was not validated.
                rng = checkpoint.rng_state(ctx.device if ctx.distributed else None)
                rng_ranks = _torchrun.all_gather_objects(rng) if ctx.distributed else None
                if ctx.is_main:
                    checkpoint.save_checkpoint(last, **state, epoch=epoch, progress=progress, config=config.to_dict(),
                                               rng=rng, world_size=ctx.world_size, rng_ranks=rng_ranks)
                    _logger.error("epoch %d is trained and checkpointed in %s, but its validation failed (below); "
                                  "--resume goes on with epoch %d", epoch, last, epoch + 1)
                raise
            improved = progress.update(epoch, val["selection"], keep_last=keep_last)
            rng = checkpoint.rng_state(ctx.device if ctx.distributed else None)
            rng_ranks = _torchrun.all_gather_objects(rng) if ctx.distributed else None
            if log is not None:  # rank 0
                if improved:
                    checkpoint.save_best(model, output, {"dataset": config.dataset, "epoch": epoch, "val": val,
                                                         "seed": config.seed, "split_seed": split_seed})
                log.append({"epoch": epoch, "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"],
                            "pairs_per_second": pairs_per_second,
                            **{f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float))}})
                checkpoint.save_checkpoint(last, **state, epoch=epoch, progress=progress, config=config.to_dict(),
                                           rng=rng, world_size=ctx.world_size, rng_ranks=rng_ranks)
                _logger.info("epoch %d: loss %.4f, val %s", epoch, train_loss, val.get("selection"))
            _torchrun.barrier()  # best/ and last.pt are complete before any rank goes on
    except KeyboardInterrupt:
        if ctx.is_main:
            _logger.warning("interrupted; the last completed epoch is checkpointed in %s, resume with --resume", last)
        raise

    test = _test(output, test_items, config, ctx, pairwise)
    _torchrun.barrier()
    return RunResult(output=output, best_dir=output / "best", best_epoch=progress.best_epoch,
                     best_score=progress.best_score, test=test)


def run(config: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> list[RunResult]:
    """``config.runs`` independent runs (split seeds ``split_seed + i``), with a ``summary.json`` of test metrics
    (mean, std, median over runs) when there is more than one. ``resume`` and ``overwrite`` as in :func:`fit`."""
    if config.runs == 1:
        return [fit(config, resume=resume, overwrite=overwrite)]
    output = Path(config.output)
    results = [fit(config, resume=resume, split_seed=config.split_seed + i, output=output / f"run_{i:02d}",
                   overwrite=overwrite)
               for i in range(config.runs)]
    tests = [r.test for r in results if r.test is not None]
    if tests and _torchrun.is_main():
        atomic_write_text(output / "summary.json", json.dumps(aggregate_runs(tests), indent=2, default=float) + "\n")
    return results


def _on_every_rank(ctx: _torchrun.DistContext, check: Callable[[], Any]) -> Any:
    """``check()`` on every rank, then agree: if it raised on any rank, every rank raises (the failing rank its own
    exception, the others a RuntimeError naming it), so that no rank goes on to delete or write files for a run that
    cannot start. In a single process this is just ``check()``."""
    if not ctx.distributed:
        return check()
    try:
        result, problem = check(), None
    except Exception as exc:  # noqa: BLE001 - re-raised below, after every rank has said whether it can start
        result, problem, error = None, f"rank {ctx.rank}: {type(exc).__name__}: {exc}", exc
    problems = [p for p in _torchrun.all_gather_objects(problem) if p is not None]
    if problem is not None:
        raise error
    if problems:
        raise RuntimeError(f"another rank cannot start the run ({problems[0]})")
    return result
