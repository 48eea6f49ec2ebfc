"""Checks of the score: severity ladders, agreement with a label or MOS, whole photographs, identity, stability."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from ...model.vtamiq import VTAMIQ
from ..labels.vsi import vsi
from ..seeds import KADIS_TYPE_IDS, derive_seed
from .degradations import LADDERS, degrade
from .scorers import Scorer, model_scorer, score_pairs, score_table

__all__ = ["FULL_SIZE_TYPES", "correlations", "full_size_pairs", "identity_check", "label_check", "mos_check",
           "severity_check", "stability_check"]


#: KADID types of :func:`full_size_pairs`: all but 15 (denoising), which the bundled model's data leave out too.
FULL_SIZE_TYPES = tuple(t for t in KADIS_TYPE_IDS if t != 15)


def severity_check(refs: Sequence[Tensor], scorers: Mapping[str, Scorer], *,
                   ladders: Mapping[str, tuple[float, ...]] = LADDERS, seed: int = 0) -> dict[str, dict]:
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
    table = score_table(scorers, refs_all, dists)
    result: dict[str, dict] = {}
    for name in scorers:
        per_family: dict[str, dict[str, list]] = {f: {"pairs": [], "monotone": []} for f in ladders}
        ladder_scores: dict[tuple[int, str], list[float]] = {}
        for (r, family, _level), value in zip(keys, table[name], strict=True):
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


def correlations(predictions: Mapping[str, np.ndarray], label: np.ndarray,
                 groups: Sequence[object] | None = None) -> dict[str, dict]:
    """Spearman and Kendall correlation of each scorer's scores with a per-pair label (both distortions).

    Args:
        predictions: ``{name: (n,) scores}``, e.g. from :func:`score_table`.
        label: (n,) label per pair (higher = worse), e.g. the teacher's distortion or ``1 - VSI``.
        groups: optional group per pair (e.g. the distortion type); adds a Spearman correlation per group.

    Returns:
        Per scorer: ``srocc``, ``krocc``, ``n`` and, with ``groups``, ``srocc_per_group``.

    Raises:
        ValueError: a prediction or the groups of another length than the label.
    """
    label = np.asarray(label, dtype=np.float64)
    lengths = {name: len(pred) for name, pred in predictions.items() if len(pred) != len(label)}
    if lengths or (groups is not None and len(groups) != len(label)):
        raise ValueError(f"expected as many scores and groups as labels ({len(label)}), got scores {lengths} and "
                         f"{None if groups is None else len(groups)} groups")
    out: dict[str, dict] = {}
    for name, values in predictions.items():
        pred = np.asarray(values, dtype=np.float64)
        entry: dict[str, object] = {"srocc": float(stats.spearmanr(pred, label)[0]),
                                    "krocc": float(stats.kendalltau(pred, label)[0]), "n": len(label)}
        if groups is not None:
            by_group: dict[object, list[int]] = {}
            for i, g in enumerate(groups):
                by_group.setdefault(g, []).append(i)
            entry["srocc_per_group"] = {str(g): float(stats.spearmanr(pred[idx], label[idx])[0])
                                        for g, idx in sorted(by_group.items(), key=lambda kv: str(kv[0]))
                                        if len(idx) > 2}
        out[name] = entry
    return out


def label_check(refs: Sequence[Tensor], dists: Sequence[Tensor], label: np.ndarray, scorers: Mapping[str, Scorer],
                groups: Sequence[object] | None = None) -> dict[str, dict]:
    """Spearman and Kendall correlation of each scorer with a per-pair label (a distortion, higher = worse).

    Args:
        refs: (3, H, W) references.
        dists: (3, H, W) distorted images, one per reference entry.
        label: (n,) label per pair, e.g. the teacher's distortion or ``1 - VSI``.
        scorers: named scorers.
        groups: optional group per pair (e.g. the distortion type); adds a Spearman correlation per group.

    Returns:
        Per scorer: ``srocc``, ``krocc``, ``n`` and, with ``groups``, ``srocc_per_group`` (see :func:`correlations`).
    """
    label = np.asarray(label, dtype=np.float64)
    if len(label) != len(refs) or len(dists) != len(refs):
        raise ValueError(f"expected as many labels and distorted images as references ({len(refs)}), got "
                         f"{len(label)} labels and {len(dists)} distorted images")
    return correlations(score_table(scorers, refs, dists), label, groups)


def full_size_pairs(photos: Sequence[Tensor], *, types: Sequence[int] = FULL_SIZE_TYPES, levels: Sequence[int] = (2, 4),
                    seed: int = 0) -> tuple[list[Tensor], list[Tensor], np.ndarray, list[int]]:
    """Every KADIS distortion type of whole photographs, labelled with ``1 - VSI`` at VSI's own viewing distance.

    The training pairs of the bundled model are crops shorter than 384 px, where VSI looks at every pixel; at
    ``min(H, W) >= 384`` VSI first averages ``F x F`` blocks (``F = round(min(H, W) / 256)``). These pairs show how
    a model does on images of the size people score, against the label it was trained to follow (the teacher's
    distortion of the same pairs is one :func:`score_table` call with :func:`teacher_scorers` away).

    Args:
        photos: (3, H, W) float photographs in [0, 1], each at least 48 x 48.
        levels: KADIS levels (1-5) of every type.
        types: KADID type ids (default: all but 15, denoising, as in the bundled model's data).
        seed: seed of the random types (each pair gets ``derive_seed(seed, photo, type, level)``).

    Returns:
        ``(refs, dists, label, types)``: one entry per pair (the pairs of a photograph share one reference tensor);
        ``label`` is ``1 - VSI`` (higher = worse).
    """
    from ..distortions import apply_distortion

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
              scorers: Mapping[str, Scorer]) -> dict[str, dict]:
    """Spearman correlation of each scorer's *negated* distortion with human opinion (MOS, higher = better)."""
    return {name: {"srocc": value["srocc"], "n": value["n"]}
            for name, value in label_check(refs, dists, -np.asarray(mos, dtype=np.float64), scorers).items()}


def identity_check(scorer: Scorer, refs: Sequence[Tensor], dists_per_ref: Sequence[Sequence[Tensor]], *,
                   known_scores: Sequence[Sequence[float]] | None = None) -> dict:
    """Identical pairs score 0 and below every distorted pair of the same reference.

    Args:
        scorer: the model's scorer.
        refs: (3, H, W) references.
        dists_per_ref: for each reference, its distorted images (pixel-identical ones are left out and counted).
        known_scores: for each reference, the scores of its distorted images by the same scorer, when they are known
            already (saves scoring them again); default: scored here.

    Returns:
        ``max_abs_identical`` (largest |score(ref, ref)|), ``min_score`` (lowest score over every pair, identical
        ones included), ``below_all_distorted`` (share of references whose identical pair scores below all their
        distorted pairs), ``min_margin`` and ``pixel_identical_left_out``.

    Raises:
        ValueError: ``dists_per_ref`` or ``known_scores`` that do not match ``refs`` and each other in length.
    """
    if len(dists_per_ref) != len(refs):
        raise ValueError(f"expected one list of distorted images per reference ({len(refs)}), got {len(dists_per_ref)}")
    if known_scores is not None and [len(k) for k in known_scores] != [len(d) for d in dists_per_ref]:
        raise ValueError("expected known_scores with one score per distorted image of dists_per_ref, got lengths "
                         f"{[len(k) for k in known_scores]} for {[len(d) for d in dists_per_ref]}")
    ident = score_pairs(scorer, refs, refs)
    below, margins, left_out, lowest = [], [], 0, float(ident.min())
    for r, (ref, same, dists) in enumerate(zip(refs, ident, dists_per_ref, strict=True)):
        kept = [i for i, d in enumerate(dists) if not torch.equal(d, ref)]
        left_out += len(dists) - len(kept)
        if not kept:
            continue
        if known_scores is None:
            others = score_pairs(scorer, [ref] * len(kept), [dists[i] for i in kept])
        else:
            others = np.asarray([known_scores[r][i] for i in kept], dtype=np.float64)
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
