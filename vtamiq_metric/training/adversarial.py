"""Model-in-the-loop training pairs: images optimised against the current model, to be labelled by the teacher.

A learned metric used as a loss is attacked by the optimiser that minimises it: gradient descent finds the
directions in which the model's score falls while the image does not get closer to the reference (a colour cast,
lost contrast). Training on such images, labelled with a full-reference teacher that is not fooled by them, removes
those directions; repeated for a few rounds, this is how robust learned metrics are made.

:func:`optimise_towards_reference` runs what a user of ``VTAMIQLoss`` runs: Adam on the pixels of a degraded image
(on sigmoid logits, exactly as :func:`vtamiq_metric.training.acceptance.pixel_optimisation` measures it) with the
model's loss alone, and returns snapshots of the image along the way. :func:`make_adversarial_set` does it for many
seeded starting points (training crops degraded by a KADIS distortion or a severity-ladder degradation), labels every
snapshot with a label function (the teacher), and writes PNG files and a CSV in the ``csv`` dataset format
(:class:`vtamiq_metric.training.datasets.csv.CSVDataset`: ``ref,dist,score,ref_id,dist_type,level``) that training
reads like any other data set.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .._io import atomic_path
from .._precision import Precision
from .._validation import load_image
from ..loss import VTAMIQLoss
from ..model.vtamiq import VTAMIQ
from .distortions import DISTORTIONS, apply_distortion
from .seeds import derive_seed

__all__ = ["ADVERSARIAL_CSV", "AdversarialSettings", "make_adversarial_set", "optimise_towards_reference"]

_logger = logging.getLogger(__name__)

#: File name of the CSV that :func:`make_adversarial_set` writes in its output folder.
ADVERSARIAL_CSV = "adversarial.csv"
_PARTS_DIR = "parts"  # one CSV per batch of starting points: what a resumed run keeps
_REQUEST_FILE = "request.json"  # the settings and reference names the folder is generated with

#: Degradations of the starting points besides the KADIS types: (family, parameter) of
#: :func:`vtamiq_metric.training.acceptance.degrade` (blur, noise and JPEG, the loss checks' degradations).
_LADDER_STARTS = (("gaussian_blur", 1.0), ("gaussian_blur", 2.0), ("white_noise", 0.04), ("white_noise", 0.08),
                  ("jpeg", 30), ("jpeg", 10))


@dataclass(frozen=True)
class AdversarialSettings:
    """What :func:`make_adversarial_set` generates.

    Attributes:
        starts: starting points (crop of a reference, degraded once).
        crop: side of the square crops, in pixels.
        steps: Adam steps per run.
        snapshots: steps (1..``steps``) after which the image is saved and labelled.
        lrs: Adam learning rates; each starting point is optimised once with each. The default is the step size at
            which the first bundled model drifted away from the reference (at 0.01 it improved).
        num_patches: patches per image of the loss.
        precision: the loss's precision (``"auto"``: bf16 where the hardware has it; the optimiser finds the same
            weaknesses at a third of the fp32 cost on a CPU with native bf16).
        batch_size: images optimised together (independent: Adam is per pixel and the loss is summed).
        seed: seeds the choice of references, crops, degradations and the loss's patch positions.
    """

    starts: int = 250
    crop: int = 160
    steps: int = 40
    snapshots: tuple[int, ...] = (10, 25, 40)
    lrs: tuple[float, ...] = (0.05,)
    num_patches: int = 128
    precision: Precision = "auto"
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("starts", "crop", "steps", "num_patches", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AdversarialSettings.{name} must be an int >= 1, got {value!r}")
        if not self.snapshots or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= self.steps
                                     for s in self.snapshots):
            raise ValueError(f"AdversarialSettings.snapshots must be steps in 1..{self.steps}, got {self.snapshots!r}")
        if not self.lrs or any(not isinstance(lr, (int, float)) or not np.isfinite(lr) or lr <= 0 for lr in self.lrs):
            raise ValueError(f"AdversarialSettings.lrs must be finite numbers > 0, got {self.lrs!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"AdversarialSettings.precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        object.__setattr__(self, "snapshots", tuple(sorted(set(self.snapshots))))
        object.__setattr__(self, "lrs", tuple(float(lr) for lr in self.lrs))


def optimise_towards_reference(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ref: torch.Tensor,
                               start: torch.Tensor, *, steps: int, lr: float,
                               snapshots: Sequence[int]) -> dict[int, torch.Tensor]:
    """Adam on the sigmoid logits of ``start``, minimising ``loss_fn(ref, image)`` summed over the batch.

    Args:
        loss_fn: ``(ref, dist) -> (B,)`` or a scalar; summed, so every image's gradient is its own.
        ref: (B, 3, H, W) references in [0, 1].
        start: (B, 3, H, W) starting images in [0, 1].
        steps: optimiser steps.
        lr: Adam learning rate (on the logits).
        snapshots: steps after which to keep the image.

    Returns:
        ``{step: (B, 3, H, W) image in [0, 1]}`` for every snapshot step.
    """
    logits = torch.logit(start.clamp(1e-4, 1 - 1e-4)).requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=lr)
    wanted = set(snapshots)
    out: dict[int, torch.Tensor] = {}
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        loss_fn(ref, torch.sigmoid(logits)).sum().backward()
        optimizer.step()
        if step in wanted:
            out[step] = torch.sigmoid(logits.detach()).clone()
    return out


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def _start(ref: torch.Tensor, rng: np.random.Generator, seed: int) -> tuple[torch.Tensor, str]:
    """A degraded copy of ``ref`` (3, H, W): a KADIS type at a random level, or a loss-check degradation."""
    from .acceptance import degrade  # acceptance imports this package's siblings; keep the import local

    types = [t for t in DISTORTIONS if t != 15]
    if rng.random() < 0.5:
        type_id, level = int(rng.choice(types)), int(rng.integers(1, 6))
        out = apply_distortion(_to_uint8(ref), type_id, level, seed=seed)
        return torch.from_numpy(out).permute(2, 0, 1).float() / 255, f"kadis{type_id:02d}_{level}"
    family, value = _LADDER_STARTS[int(rng.integers(len(_LADDER_STARTS)))]
    return degrade(ref, family, value, seed=seed), f"{family}_{value:g}"


def _request(settings: AdversarialSettings, refs: Sequence[Path]) -> dict:
    return {"settings": dataclasses.asdict(settings), "refs": [Path(ref).name for ref in refs]}


def _check_same_request(out_dir: Path, settings: AdversarialSettings, refs: Sequence[Path]) -> None:
    """Record what ``out_dir`` is generated with; refuse to resume a folder generated with something else."""
    request = json.loads(json.dumps(_request(settings, refs)))  # tuples as lists, as read back
    record = out_dir / _REQUEST_FILE
    if record.is_file():
        try:
            previous = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"make_adversarial_set: {record} is not readable JSON ({error}); delete the folder to "
                             f"start again") from error
        if previous != request:
            changed = sorted(key for key in {**previous.get("settings", {}), **request["settings"]}
                             if previous.get("settings", {}).get(key) != request["settings"].get(key))
            what = f"settings {changed}" if changed else "reference files"
            raise ValueError(f"make_adversarial_set: {out_dir} holds a set generated with other {what} (see {record});"
                             f" use another output folder or delete this one")
        return
    with atomic_path(record) as tmp:
        Path(tmp).write_text(json.dumps(request, indent=1) + "\n", encoding="utf-8")


def _optimise_batch(model: VTAMIQ, chunk: Sequence[tuple[str, torch.Tensor, torch.Tensor, str]], first: int,
                    out_dir: Path, label: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    settings: AdversarialSettings) -> list[list[str]]:
    """Optimise one batch of starting points, write its PNGs, return its CSV rows."""
    loss_fn = VTAMIQLoss(model, num_patches=settings.num_patches, reduction="none", precision=settings.precision,
                         seed=derive_seed(settings.seed, "adversarial-loss", first) % 2**31)
    ref = torch.stack([item[1] for item in chunk])
    start = torch.stack([item[2] for item in chunk])
    images: dict[tuple[float | None, int], torch.Tensor] = {(None, 0): start}
    for lr in settings.lrs:
        snaps = optimise_towards_reference(loss_fn, ref, start, steps=settings.steps, lr=lr,
                                           snapshots=settings.snapshots)
        images.update({(lr, step): image for step, image in snaps.items()})
    rows: list[list[str]] = []
    for (snapshot_lr, step), batch in images.items():
        quantised = torch.stack([torch.from_numpy(_to_uint8(x)).permute(2, 0, 1).float() / 255 for x in batch])
        scores = label(ref, quantised)
        for offset, ((stem, ref_image, _, how), image, value) in enumerate(zip(chunk, quantised, scores.tolist(),
                                                                              strict=True)):
            name = f"{stem}_{first + offset:05d}"
            ref_file = Path("refs") / f"{name}.png"
            dist_file = Path("images") / (f"{name}_start.png" if snapshot_lr is None
                                          else f"{name}_lr{snapshot_lr:g}_s{step}.png")
            if not (out_dir / ref_file).is_file():
                _save_png(_to_uint8(ref_image), out_dir / ref_file)
            _save_png(_to_uint8(image), out_dir / dist_file)
            kind = how if snapshot_lr is None else f"{how} adam lr={snapshot_lr:g}"
            rows.append([ref_file.as_posix(), dist_file.as_posix(), repr(float(value)), stem, kind, str(step)])
    return rows


def _save_png(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def make_adversarial_set(model: VTAMIQ, refs: Sequence[Path], out: str | os.PathLike,
                         label: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *,
                         settings: AdversarialSettings | None = None,
                         log: Callable[[str], None] | None = None) -> Path:
    """Optimise degraded crops of ``refs`` against ``model``, label every snapshot, write PNGs and a CSV.

    Every starting point is also written as a pair of its own (``level`` 0), so the set holds the degraded image and
    what the optimiser made of it (``level`` = the step of the snapshot, ``dist_type`` = the degradation and the
    learning rate). ``ref_id`` is the reference file's stem, so a split by reference keeps every crop of a training
    image (and its KADIS pairs) on the same side. The CSV's ``score`` is ``label(ref, dist)`` as returned: with the
    teacher's similarity (``LABELS["teacher"]``), read the CSV with ``higher_is_better=True``. Written atomically at
    the end; the PNGs first, under ``out/images/`` and ``out/refs/``, and each batch's rows under ``out/parts/``.

    Resumable: rerun with the same arguments after an interruption and the batches already written are kept (a batch's
    pairs are the same whether or not the run was interrupted). ``out/request.json`` records the settings and the
    reference names; a folder generated with others is refused.

    Args:
        model: the current model (frozen inside a :class:`VTAMIQLoss`).
        refs: reference image files (training crops; never held-out images), at least ``settings.crop`` on a side.
        out: output folder (created).
        label: ``(ref, dist) -> (B,)`` label of each pair, e.g. the teacher's distortion.
        settings: what to generate (None: :class:`AdversarialSettings` defaults).
        log: optional progress callback.

    Returns:
        The CSV path.

    Raises:
        ValueError: no references, a reference smaller than the crop, or ``out`` holding a set generated with other
            settings or references.
    """
    if not refs:
        raise ValueError("make_adversarial_set: expected reference image files, got none")
    settings = AdversarialSettings() if settings is None else settings
    out_dir = Path(out)
    for folder in ("images", "refs", _PARTS_DIR):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    _check_same_request(out_dir, settings, refs)
    rng = np.random.default_rng(derive_seed(settings.seed, "adversarial") % 2**63)
    crop = settings.crop
    # 1. starting points: (crop of a reference, degraded crop, what degraded it); all drawn first, so that a resumed
    #    run draws the same ones
    items: list[tuple[str, torch.Tensor, torch.Tensor, str]] = []  # (reference stem, crop, start, degradation)
    for index in range(settings.starts):
        path = Path(refs[int(rng.integers(len(refs)))])
        image = load_image(path)
        if min(image.shape[1:]) < crop:
            raise ValueError(f"make_adversarial_set: expected references of at least {crop} x {crop} pixels, got "
                             f"{path} of {image.shape[2]} x {image.shape[1]}")
        top = int(rng.integers(image.shape[1] - crop + 1))
        left = int(rng.integers(image.shape[2] - crop + 1))
        ref = image[:, top:top + crop, left:left + crop].contiguous()
        start, how = _start(ref, rng, seed=derive_seed(settings.seed, "adversarial-start", index) % 2**31)
        items.append((path.stem, ref, start, how))
    # 2. optimise in batches, once per learning rate; each batch's rows go to a part file of its own (written last,
    #    atomically), so an interrupted run redoes at most one batch. Each batch seeds its own loss: a batch's pairs
    #    do not depend on which batches ran before it in this process.
    rows: list[list[str]] = []
    for first in range(0, len(items), settings.batch_size):
        part = out_dir / _PARTS_DIR / f"{first:06d}.csv"
        if part.is_file():
            with open(part, newline="", encoding="utf-8") as handle:
                rows.extend(csv.reader(handle))
        else:
            batch_rows = _optimise_batch(model, items[first:first + settings.batch_size], first, out_dir, label,
                                         settings)
            with atomic_path(part) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerows(batch_rows)
            rows.extend(batch_rows)
        if log is not None:
            log(f"adversarial: {min(first + settings.batch_size, len(items))}/{len(items)} starting points")
    csv_path = out_dir / ADVERSARIAL_CSV
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ref", "dist", "score", "ref_id", "dist_type", "level"])
        writer.writerows(rows)
    _logger.info("wrote %d pairs to %s", len(rows), csv_path)
    return csv_path
