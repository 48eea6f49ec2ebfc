"""Acceptance checks of a trained VTAMIQ model: the figures its model card reports, measured the same way for any model.

Every check takes *scorers*, functions ``(ref, dist) -> (B,)`` distortion scores (higher = worse) on ``(B, 3, H, W)``
float images in [0, 1], so the model is always reported next to VSI (as ``1 - VSI``) and PSNR (as ``-PSNR``), which
tells a reader where it stands. ``benchmarks/eval_model.py`` runs them all and prints one JSON object.

Checks of the score:

- :func:`severity_check`: six severity ladders (JPEG quality, Gaussian blur, white noise, bicubic down-up
  resampling, contrast reduction, salt-and-pepper; five levels each, :data:`LADDERS`) on each reference; the share of
  level pairs whose scores are ordered like the levels, and the share of fully monotone ladders.
- :func:`label_check`: Spearman/Kendall correlation with a per-pair label (``1 - VSI`` on KADIS-style pairs).
- :func:`mos_check`: Spearman correlation with human opinion scores (the sign is flipped: MOS is higher-is-better).
- :func:`identity_check`: identical pairs score 0 and below every distorted pair of the same reference.
- :func:`stability_check`: the standard deviation over sampling seeds, relative to the score range.

Checks of the loss:

- :func:`gradient_cosines`: the cosine between ``d score / d dist`` and ``dist - ref`` (a loss that pulls ``dist``
  towards ``ref`` has a positive cosine; 1 is the gradient of the squared error).
- :func:`pixel_optimisation`: gradient descent on the pixels of ``dist`` with the loss alone (Adam on sigmoid
  logits); PSNR and VSI to the reference before and after.
- :func:`restoration_benefit`: a small restoration CNN trained with L1 alone and with L1 + ``VTAMIQLoss`` (weighted
  so that both terms start equal), same seeds, data and steps; held-out PSNR and VSI of both.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import stats
from torch import Tensor, nn

from ..api import score
from ..loss import VTAMIQLoss
from ..model.vtamiq import VTAMIQ
from .._validation import load_image
from .seeds import KADIS_TYPE_IDS, derive_seed
from .labels.vsi import vsi

__all__ = ["FULL_SIZE_TYPES", "LADDERS", "RESTORATION_TASKS", "RestorationNet", "Scorer", "degrade", "full_size_pairs",
           "gradient_cosines", "identity_check", "label_check", "load_images", "read_kadis_pairs", "read_mos_folder",
           "model_scorer", "mos_check", "pixel_optimisation", "psnr", "psnr_scorer", "reference_scorers", "restoration_benefit",
           "score_pairs", "severity_check", "stability_check", "vsi_scorer"]

#: ``(ref, dist) -> (B,)`` distortion scores (higher = worse) for (B, 3, H, W) float images in [0, 1].
Scorer = Callable[[Tensor, Tensor], Tensor]

#: KADID types of :func:`full_size_pairs`: all but 15 (denoising), which the bundled model's data leave out too.
FULL_SIZE_TYPES = tuple(t for t in KADIS_TYPE_IDS if t != 15)

#: Severity ladders, weakest first: the parameter of each of the five levels.
LADDERS: dict[str, tuple[float, ...]] = {
    "jpeg": (90, 70, 50, 30, 10),  # IJG quality (Pillow, 4:2:0)
    "gaussian_blur": (0.5, 1.0, 1.5, 2.5, 4.0),  # sigma in pixels
    "white_noise": (0.02, 0.04, 0.07, 0.10, 0.15),  # standard deviation, values in [0, 1], clipped
    "resample": (1.5, 2.0, 3.0, 4.0, 6.0),  # bicubic down-scaling factor, then bicubic back up
    "contrast": (0.85, 0.70, 0.55, 0.40, 0.25),  # share of the contrast kept around the image mean
    "salt_pepper": (0.005, 0.01, 0.02, 0.05, 0.10),  # share of pixels set to black or white
}

#: Degradations the restoration networks of :func:`restoration_benefit` learn to undo.
RESTORATION_TASKS: dict[str, tuple[str, float]] = {
    "deblur": ("gaussian_blur", 1.5),
    "denoise": ("white_noise", 0.08),
    "dejpeg": ("jpeg", 15),
}


# ---------------------------------------------------------------------------------------------------------------
# Degradations


def _gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    padded = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)[0]


def _to_pil(image: Tensor) -> Image.Image:
    return Image.fromarray((image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


def _from_pil(image: Image.Image) -> Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).float() / 255


def degrade(image: Tensor, family: str, value: float, *, seed: int = 0) -> Tensor:
    """One degradation of :data:`LADDERS` at parameter ``value``.

    Args:
        image: (3, H, W) float RGB in [0, 1].
        family: a key of :data:`LADDERS`.
        value: the family's parameter (see :data:`LADDERS`).
        seed: seed of the random families (white noise, salt-and-pepper).

    Returns:
        (3, H, W) float32 in [0, 1], quantised to 8 bits like a saved image.

    Raises:
        ValueError: an unknown family or a bad image shape.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {tuple(image.shape)}")
    image = image.float()
    gen = torch.Generator().manual_seed(seed)
    if family == "jpeg":
        buffer = io.BytesIO()
        _to_pil(image).save(buffer, format="JPEG", quality=int(value), subsampling="4:2:0")
        return _from_pil(Image.open(buffer))
    if family == "gaussian_blur":
        out = _gaussian_blur(image, float(value))
    elif family == "white_noise":
        out = image + float(value) * torch.randn(image.shape, generator=gen)
    elif family == "resample":
        height, width = image.shape[1:]
        small = (max(1, round(width / value)), max(1, round(height / value)))
        return _from_pil(_to_pil(image).resize(small, Image.BICUBIC).resize((width, height), Image.BICUBIC))
    elif family == "contrast":
        mean = image.mean(dim=(1, 2), keepdim=True)
        out = mean + float(value) * (image - mean)
    elif family == "salt_pepper":
        u = torch.rand(image.shape[1:], generator=gen)
        out = image.clone()
        out[:, u < value / 2] = 0.0
        out[:, (u >= value / 2) & (u < value)] = 1.0
    else:
        raise ValueError(f"unknown degradation {family!r}; expected one of {sorted(LADDERS)}")
    return (out.clamp(0, 1) * 255).round() / 255


# ---------------------------------------------------------------------------------------------------------------
# Scorers


def psnr(ref: Tensor, dist: Tensor) -> Tensor:
    """PSNR in dB of (B, 3, H, W) images in [0, 1]; capped at 100 dB for identical images."""
    mse = (ref.double() - dist.double()).square().mean(dim=(1, 2, 3))
    return (10 * torch.log10(1 / mse.clamp_min(1e-10))).float()


def model_scorer(model: VTAMIQ, *, num_patches: int | None = None, seed: int = 0, num_repeats: int = 1,
                 batch_size: int = 16, precision: str = "fp32") -> Scorer:
    """The model's :func:`vtamiq_metric.score` as a scorer (default patch count and seed 0 unless given)."""

    def run(ref: Tensor, dist: Tensor) -> Tensor:
        with torch.no_grad():
            return score(ref, dist, model=model, num_patches=num_patches, seed=seed, num_repeats=num_repeats,
                         batch_size=batch_size, precision=precision).cpu()

    return run


def vsi_scorer(ref: Tensor, dist: Tensor) -> Tensor:
    """``1 - VSI`` (a distortion, like the model's score)."""
    return (1.0 - vsi(ref, dist)).float()


def psnr_scorer(ref: Tensor, dist: Tensor) -> Tensor:
    """``-PSNR`` (a distortion, like the model's score)."""
    return -psnr(ref, dist)


def reference_scorers(model: VTAMIQ, **kwargs: object) -> dict[str, Scorer]:
    """``{"model": model_scorer(model, **kwargs), "vsi": 1 - VSI, "psnr": -PSNR}``."""
    return {"model": model_scorer(model, **kwargs), "vsi": vsi_scorer, "psnr": psnr_scorer}


def score_pairs(scorer: Scorer, refs: Sequence[Tensor], dists: Sequence[Tensor], batch: int = 16) -> np.ndarray:
    """Scores of (3, H, W) pairs, batched by image size, in input order."""
    out = np.zeros(len(refs), dtype=np.float64)
    by_size: dict[tuple[int, ...], list[int]] = {}
    for i, ref in enumerate(refs):
        by_size.setdefault(tuple(ref.shape), []).append(i)
    for index in by_size.values():
        for start in range(0, len(index), batch):
            part = index[start:start + batch]
            values = scorer(torch.stack([refs[i] for i in part]), torch.stack([dists[i] for i in part]))
            out[part] = values.double().cpu().numpy()
    return out


# ---------------------------------------------------------------------------------------------------------------
# Checks of the score


def severity_check(refs: Sequence[Tensor], scorers: dict[str, Scorer], *,
                   ladders: dict[str, tuple[float, ...]] = LADDERS, seed: int = 0) -> dict[str, dict]:
    """How often each scorer orders the levels of the severity ladders correctly.

    Args:
        refs: (3, H, W) reference images in [0, 1].
        scorers: named scorers.
        ladders: families and their parameters, weakest first.
        seed: seed of the random degradations (derived per reference and level).

    Returns:
        Per scorer: ``pair_accuracy`` (share of level pairs ``i < j`` of one ladder with ``score_i < score_j``),
        ``monotone`` (share of ladders whose scores rise strictly), ``pairs``, ``ladders`` and the same two shares
        per family.
    """
    refs_all, dists, keys = [], [], []
    for r, ref in enumerate(refs):
        for family, values in ladders.items():
            for level, value in enumerate(values):
                refs_all.append(ref)
                dists.append(degrade(ref, family, value, seed=derive_seed(seed, r, family, level) % 2**31))
                keys.append((r, family, level))
    result = {}
    for name, scorer in scorers.items():
        values = score_pairs(scorer, refs_all, dists)
        per_family: dict[str, dict[str, list]] = {f: {"pairs": [], "monotone": []} for f in ladders}
        ladder_scores: dict[tuple[int, str], list[float]] = {}
        for (r, family, level), value in zip(keys, values):
            ladder_scores.setdefault((r, family), []).append(value)
        for (_, family), seq in ladder_scores.items():
            seq_a = np.asarray(seq)
            i, j = np.triu_indices(len(seq_a), k=1)
            per_family[family]["pairs"].extend((seq_a[j] > seq_a[i]).tolist())
            per_family[family]["monotone"].append(bool(np.all(np.diff(seq_a) > 0)))
        pairs = [v for d in per_family.values() for v in d["pairs"]]
        mono = [v for d in per_family.values() for v in d["monotone"]]
        result[name] = {
            "pair_accuracy": float(np.mean(pairs)), "monotone": float(np.mean(mono)), "pairs": len(pairs),
            "ladders": len(mono),
            "per_family": {f: {"pair_accuracy": float(np.mean(d["pairs"])), "monotone": float(np.mean(d["monotone"]))}
                           for f, d in per_family.items()},
        }
    return result


def label_check(refs: Sequence[Tensor], dists: Sequence[Tensor], label: np.ndarray, scorers: dict[str, Scorer],
                groups: Sequence[object] | None = None) -> dict[str, dict]:
    """Spearman and Kendall correlation of each scorer with a per-pair label (a distortion, higher = worse).

    Args:
        refs: (3, H, W) references.
        dists: (3, H, W) distorted images, one per reference entry.
        label: (n,) label per pair, e.g. ``1 - VSI``.
        scorers: named scorers.
        groups: optional group per pair (e.g. the distortion type); adds a Spearman correlation per group.

    Returns:
        Per scorer: ``srocc``, ``krocc``, ``n`` and, with ``groups``, ``srocc_per_group``.
    """
    label = np.asarray(label, dtype=np.float64)
    if len(label) != len(refs) or len(dists) != len(refs):
        raise ValueError(f"expected as many labels and distorted images as references ({len(refs)}), got "
                         f"{len(label)} labels and {len(dists)} distorted images")
    out = {}
    for name, scorer in scorers.items():
        pred = score_pairs(scorer, refs, dists)
        entry = {"srocc": float(stats.spearmanr(pred, label)[0]), "krocc": float(stats.kendalltau(pred, label)[0]),
                 "n": len(label)}
        if groups is not None:
            by_group: dict[object, list[int]] = {}
            for i, g in enumerate(groups):
                by_group.setdefault(g, []).append(i)
            entry["srocc_per_group"] = {str(g): float(stats.spearmanr(pred[idx], label[idx])[0])
                                        for g, idx in sorted(by_group.items(), key=lambda kv: str(kv[0]))
                                        if len(idx) > 2}
        out[name] = entry
    return out


def full_size_pairs(photos: Sequence[Tensor], *, types: Sequence[int] = FULL_SIZE_TYPES, levels: Sequence[int] = (2, 4),
                    seed: int = 0) -> tuple[list[Tensor], list[Tensor], np.ndarray, list[int]]:
    """Every KADIS distortion type of whole photographs, labelled with ``1 - VSI`` at VSI's own viewing distance.

    The training pairs of the bundled model are crops shorter than 384 px, where VSI looks at every pixel; at
    ``min(H, W) >= 384`` VSI first averages ``F x F`` blocks (``F = round(min(H, W) / 256)``). These pairs show how
    a model does on images of the size people score, against the label it was trained to follow.

    Args:
        photos: (3, H, W) float photographs in [0, 1], each at least 48 x 48.
        levels: KADIS levels (1-5) of every type.
        types: KADID type ids (default: all but 15, denoising, as in the bundled model's data).
        seed: seed of the random types (each pair gets ``derive_seed(seed, photo, type, level)``).

    Returns:
        ``(refs, dists, label, types)``: one entry per pair (the pairs of a photograph share one reference tensor);
        ``label`` is ``1 - VSI`` (higher = worse).
    """
    from .distortions import apply_distortion

    refs, dists, labels, kinds = [], [], [], []
    for p, photo in enumerate(photos):
        array = (photo.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        ref = torch.from_numpy(array).permute(2, 0, 1).float().div(255.0)  # one tensor, shared by its pairs
        for type_id in types:
            for level in levels:
                out = apply_distortion(array, type_id, level, seed=derive_seed(seed, p, type_id, level))
                dist = torch.from_numpy(out).permute(2, 0, 1).float().div(255.0)
                labels.append(float(1.0 - vsi(ref[None], dist[None])[0]))
                refs.append(ref)
                dists.append(dist)
                kinds.append(type_id)
    return refs, dists, np.array(labels), kinds


def mos_check(refs: Sequence[Tensor], dists: Sequence[Tensor], mos: np.ndarray,
              scorers: dict[str, Scorer]) -> dict[str, dict]:
    """Spearman correlation of each scorer's *negated* distortion with human opinion (MOS, higher = better)."""
    return {name: {"srocc": value["srocc"], "n": value["n"]}
            for name, value in label_check(refs, dists, -np.asarray(mos, dtype=np.float64), scorers).items()}


def identity_check(scorer: Scorer, refs: Sequence[Tensor], dists_per_ref: Sequence[Sequence[Tensor]]) -> dict:
    """Identical pairs score 0 and below every distorted pair of the same reference.

    Args:
        scorer: the model's scorer.
        refs: (3, H, W) references.
        dists_per_ref: for each reference, its distorted images (pixel-identical ones are left out and counted).

    Returns:
        ``max_abs_identical`` (largest |score(ref, ref)|), ``min_score`` (lowest score over every pair, identical
        ones included), ``below_all_distorted`` (share of references whose identical pair scores below all their
        distorted pairs), ``min_margin`` and ``pixel_identical_left_out``.
    """
    ident = score_pairs(scorer, refs, refs)
    below, margins, left_out, lowest = [], [], 0, float(ident.min())
    for ref, same, dists in zip(refs, ident, dists_per_ref):
        kept = [d for d in dists if not torch.equal(d, ref)]
        left_out += len(dists) - len(kept)
        if not kept:
            continue
        others = score_pairs(scorer, [ref] * len(kept), kept)
        lowest = min(lowest, float(others.min()))
        below.append(bool(same < others.min()))
        margins.append(float(others.min() - same))
    return {"max_abs_identical": float(np.abs(ident).max()), "min_score": lowest,
            "below_all_distorted": float(np.mean(below)) if below else float("nan"), "references": len(below),
            "min_margin": float(min(margins)) if margins else float("nan"), "pixel_identical_left_out": left_out}


def stability_check(model: VTAMIQ, refs: Sequence[Tensor], dists: Sequence[Tensor], *, score_range: float,
                    seeds: int = 10, num_patches: int | None = None) -> dict:
    """Standard deviation of the score over ``seeds`` sampling seeds, relative to ``score_range``.

    Args:
        model: the model.
        refs: (3, H, W) references of the subset.
        dists: their distorted images.
        score_range: the spread (max - min) of the model's scores over the whole evaluation set.
        seeds: seeds ``0 .. seeds - 1``.
        num_patches: patches per image (default: the model's).

    Returns:
        ``max_std``, ``mean_std``, ``max_std_over_range``, ``mean_std_over_range``, ``seeds``, ``pairs``, ``patches``.
    """
    draws = np.stack([score_pairs(model_scorer(model, num_patches=num_patches, seed=s), refs, dists)
                      for s in range(seeds)])
    std = draws.std(axis=0)
    return {"max_std": float(std.max()), "mean_std": float(std.mean()),
            "max_std_over_range": float(std.max() / score_range) if score_range > 0 else float("nan"),
            "mean_std_over_range": float(std.mean() / score_range) if score_range > 0 else float("nan"),
            "seeds": seeds, "pairs": len(refs), "patches": num_patches or model.config.num_patches}


# ---------------------------------------------------------------------------------------------------------------
# Checks of the loss


def gradient_cosines(model: VTAMIQ, refs: Sequence[Tensor], dists: Sequence[Tensor], *, num_patches: int = 256,
                     draws: int = 8, seed: int = 0) -> np.ndarray:
    """Cosine between the score's gradient w.r.t. ``dist`` (summed over ``draws`` CAPS draws) and ``dist - ref``.

    Returns:
        (n,) cosines, one per pair; positive means that gradient descent on the score moves ``dist`` towards
        ``ref``.
    """
    loss_fn = VTAMIQLoss(model, num_patches=num_patches, seed=seed, reduction="sum")
    out = []
    for ref, dist in zip(refs, dists):
        image = dist[None].clone().requires_grad_(True)
        grad = torch.zeros_like(image)
        for _ in range(draws):
            (g,) = torch.autograd.grad(loss_fn(ref[None], image), image)
            grad += g
        out.append(float(F.cosine_similarity(grad.flatten(), (dist - ref).flatten(), dim=0)))
    return np.asarray(out)


def pixel_optimisation(model: VTAMIQ, refs: Sequence[Tensor], dists: Sequence[Tensor], *, steps: int = 60,
                       lr: float = 0.05, num_patches: int = 256, seed: int = 0) -> dict:
    """Gradient descent on the pixels of each ``dist`` with ``VTAMIQLoss`` alone (Adam on sigmoid logits).

    Returns:
        ``psnr_before``, ``psnr_after``, ``vsi_before``, ``vsi_after`` (lists per pair), ``improved_psnr`` and
        ``improved_vsi`` (shares of pairs that got closer to the reference), ``mean_psnr_change`` (dB),
        ``steps``, ``lr``.
    """
    loss_fn = VTAMIQLoss(model, num_patches=num_patches, seed=seed)
    rows: dict[str, list[float]] = {"psnr_before": [], "psnr_after": [], "vsi_before": [], "vsi_after": []}
    for ref, dist in zip(refs, dists):
        logits = torch.logit(dist[None].clamp(1e-4, 1 - 1e-4)).requires_grad_(True)
        optimizer = torch.optim.Adam([logits], lr=lr)
        for _ in range(steps):
            optimizer.zero_grad()
            loss_fn(ref[None], torch.sigmoid(logits)).backward()
            optimizer.step()
        final = torch.sigmoid(logits.detach())
        rows["psnr_before"].append(float(psnr(ref[None], dist[None])))
        rows["psnr_after"].append(float(psnr(ref[None], final)))
        rows["vsi_before"].append(float(vsi(ref[None], dist[None])))
        rows["vsi_after"].append(float(vsi(ref[None], final)))
    before, after = np.array(rows["psnr_before"]), np.array(rows["psnr_after"])
    return {**rows, "improved_psnr": float(np.mean(after > before)),
            "improved_vsi": float(np.mean(np.array(rows["vsi_after"]) > np.array(rows["vsi_before"]))),
            "mean_psnr_change": float(np.mean(after - before)), "steps": steps, "lr": lr}


class RestorationNet(nn.Module):
    """A small residual CNN for restoration: ``x + conv(relu(conv(... x)))``, ``depth`` 3x3 convolutions."""

    def __init__(self, width: int = 32, depth: int = 5) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return (x + self.body(x)).clamp(0, 1)


@dataclass
class _Crops:
    images: list[Tensor]
    size: int

    def batch(self, gen: torch.Generator, count: int) -> Tensor:
        out = []
        for _ in range(count):
            image = self.images[int(torch.randint(len(self.images), (1,), generator=gen))]
            top = int(torch.randint(image.shape[1] - self.size + 1, (1,), generator=gen))
            left = int(torch.randint(image.shape[2] - self.size + 1, (1,), generator=gen))
            out.append(image[:, top:top + self.size, left:left + self.size])
        return torch.stack(out)


def _degrade_batch(batch: Tensor, task: str, gen: torch.Generator) -> Tensor:
    family, value = RESTORATION_TASKS[task]
    return torch.stack([degrade(x, family, value, seed=int(torch.randint(2**31, (1,), generator=gen)))
                        for x in batch])


def restoration_benefit(model: VTAMIQ, train_images: Sequence[Tensor], test_images: Sequence[Tensor], task: str, *,
                        steps: int = 300, batch_size: int = 8, crop: int = 64, lr: float = 1e-3,
                        num_patches: int = 64, seed: int = 0, log: Callable[[str], None] | None = None) -> dict:
    """Does ``VTAMIQLoss`` help a network it trains? L1 alone against L1 + VTAMIQLoss, everything else equal.

    Two :class:`RestorationNet` with the same initial weights are trained for ``steps`` Adam steps on the same
    random crops of ``train_images`` degraded the same way (:data:`RESTORATION_TASKS`): one on L1, one on
    ``L1 + w * VTAMIQLoss`` with ``w`` set so that both terms are equal on the first batch. Both then restore the
    degraded ``test_images`` (same degradation seeds), and PSNR and VSI to the references are averaged.

    Args:
        model: the metric (frozen inside the loss).
        train_images: (3, H, W) training photographs, each at least ``crop`` pixels on both sides.
        test_images: (3, H, W) held-out photographs.
        task: a key of :data:`RESTORATION_TASKS`.
        steps: training steps of each network.
        batch_size: crops per step.
        crop: crop side in pixels.
        lr: Adam learning rate of the networks.
        num_patches: patches per image of the loss.
        seed: seeds the initial weights, the crops and the degradations.
        log: optional progress callback.

    Returns:
        ``l1`` and ``l1+vtamiq`` entries with held-out ``psnr`` and ``vsi`` (means), ``degraded`` (the inputs'),
        ``weight`` (w), ``vsi_gain`` and ``psnr_change`` (with the loss minus without), ``steps`` and ``seconds``.
    """
    if task not in RESTORATION_TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(RESTORATION_TASKS)}")
    small = [tuple(im.shape[1:]) for im in train_images if min(im.shape[1:]) < crop]
    if small:
        raise ValueError(f"expected training images of at least {crop} x {crop} pixels, got sizes {small}")
    started = time.perf_counter()
    crops = _Crops(list(train_images), crop)
    torch.manual_seed(seed)
    init = RestorationNet().state_dict()
    loss_fn = VTAMIQLoss(model, num_patches=num_patches, seed=seed)
    test_gen = torch.Generator().manual_seed(derive_seed(seed, "test") % 2**63)
    test_degraded = [_degrade_batch(im[None], task, test_gen)[0] for im in test_images]
    results: dict[str, dict] = {}
    weight = None
    for variant in ("l1", "l1+vtamiq"):
        net = RestorationNet()
        net.load_state_dict(init)
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        for step in range(steps):
            clean = crops.batch(gen, batch_size)
            degraded = _degrade_batch(clean, task, gen)
            out = net(degraded)
            loss = F.l1_loss(out, clean)
            if variant == "l1+vtamiq":
                perceptual = loss_fn(clean, out)
                if weight is None:
                    weight = float(loss.detach()) / max(float(perceptual.detach()), 1e-12)
                loss = loss + weight * perceptual
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if log is not None and (step + 1) % max(1, steps // 5) == 0:
                log(f"{task} {variant}: step {step + 1}/{steps} loss {loss.item():.4f}")
        with torch.no_grad():
            restored = [net(d[None])[0] for d in test_degraded]
        results[variant] = _quality(test_images, restored)
    degraded_quality = _quality(test_images, test_degraded)
    return {"task": task, "degradation": list(RESTORATION_TASKS[task]), **results, "degraded": degraded_quality,
            "weight": weight, "vsi_gain": results["l1+vtamiq"]["vsi"] - results["l1"]["vsi"],
            "psnr_change": results["l1+vtamiq"]["psnr"] - results["l1"]["psnr"], "steps": steps,
            "seconds": round(time.perf_counter() - started, 1)}


def _quality(refs: Sequence[Tensor], images: Sequence[Tensor]) -> dict[str, float]:
    p = [float(psnr(r[None], x[None])) for r, x in zip(refs, images)]
    v = [float(vsi(r[None], x[None].clamp(0, 1))) for r, x in zip(refs, images)]
    return {"psnr": float(np.mean(p)), "vsi": float(np.mean(v))}


def load_images(paths: Sequence[Path], *, max_side: int | None = None) -> list[Tensor]:
    """Decode image files to (3, H, W) tensors, optionally downscaled (Lanczos) to ``max_side``."""
    out = []
    for path in paths:
        image = load_image(Path(path))
        if max_side is not None and max(image.shape[1:]) > max_side:
            pil = _to_pil(image)
            factor = max_side / max(pil.size)
            image = _from_pil(pil.resize((max(1, round(pil.width * factor)), max(1, round(pil.height * factor))),
                                         Image.LANCZOS))
        out.append(image)
    return out


def read_kadis_pairs(root: Path) -> list[dict]:
    """Rows of ``<root>/kadis700k_scores.csv`` (written by ``vtamiq-train make-kadis``) with absolute paths.

    Returns:
        One dict per pair: ``ref`` and ``dist`` (paths), ``type`` (int) and ``vsi`` (float).

    Raises:
        FileNotFoundError: no CSV in ``root``. ValueError: an empty CSV or a row without the expected columns.
    """
    path = Path(root) / "kadis700k_scores.csv"
    if not path.is_file():
        raise FileNotFoundError(f"expected {path} (made by vtamiq-train make-kadis), got no file")
    rows = []
    with open(path, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                ref = Path(row["ref_img"])
                rows.append({"ref": ref if ref.is_absolute() else path.parent / ref,
                             "dist": path.parent / row["dist_img"], "type": int(row["dist_type"]),
                             "vsi": float(row["vsi"])})
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}, line {line}: expected ref_img, dist_img, dist_type and vsi, "
                                 f"got {row}") from exc
    if not rows:
        raise ValueError(f"expected pairs in {path}, got none")
    return rows


def read_mos_folder(root: Path) -> tuple[list[Path], list[Path], list[float]]:
    """Every distorted image present in a folder laid out like TID2013, its reference and its MOS.

    The layout is TID2013's: ``mos_with_names.txt`` (``MOS name`` per line), ``distorted_images/iXX_TT_L.bmp`` and
    ``reference_images/IXX.BMP`` (names compared case-insensitively). Distorted images listed in the MOS file but not
    present are skipped, so a fragment of the data set works.

    Returns:
        (reference paths, distorted paths, MOS) in the sorted order of the distorted files.

    Raises:
        FileNotFoundError: a missing MOS file or folder. ValueError: a distorted image without a MOS or reference.
    """
    root = Path(root)
    for needed in ("mos_with_names.txt", "distorted_images", "reference_images"):
        if not (root / needed).exists():
            raise FileNotFoundError(f"expected {root / needed} (TID2013 layout), got nothing")
    mos = {}
    for number, line in enumerate((root / "mos_with_names.txt").read_text().splitlines(), start=1):
        if line.strip():
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{root / 'mos_with_names.txt'}, line {number}: expected 'MOS name', got {line!r}")
            mos[parts[1].lower()] = float(parts[0])
    refs_by_id = {p.stem.lower(): p for p in (root / "reference_images").iterdir()}
    refs, dists, values = [], [], []
    for path in sorted((root / "distorted_images").iterdir()):
        key = path.name.lower()
        if key not in mos:
            raise ValueError(f"expected a MOS for {path.name} in {root / 'mos_with_names.txt'}, got none")
        ref_id = key.split("_")[0]
        if ref_id not in refs_by_id:
            raise ValueError(f"expected a reference {ref_id.upper()}.* for {path.name} in {root / 'reference_images'}, "
                             "got none")
        refs.append(refs_by_id[ref_id])
        dists.append(path)
        values.append(mos[key])
    return refs, dists, values
