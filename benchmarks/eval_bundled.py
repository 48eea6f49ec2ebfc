"""Acceptance checks of the bundled default model on held-out KADIS-style pairs; prints one JSON object.

The held-out pairs are made from crops of photographs the model never saw in training (``prepare_data.py`` writes
them to ``<data>/heldout/ref_imgs``), distorted with every type at every level::

    vtamiq-train make-kadis --refs DATA/heldout/ref_imgs --out DATA/heldout --seed 1 --types-per-ref 24 --skip-types 15
    python benchmarks/eval_bundled.py vtamiq_metric/weights/vtamiq_tiny_patch16.safetensors DATA/heldout

Checks (targets of the issue in brackets):

1. ``srocc``: Spearman correlation between the model score and the label target ``1 - VSI`` over every held-out
   pair [>= 0.90]; also Kendall, and per distortion type.
2. ``monotonic``: over every (reference, type) sequence of levels 1..5, the fraction whose score rises strictly with
   the distortion strength [>= 0.90], overall and per type (``score_rises_with_strength``). The strength is the level
   for every type but mean shift (18) and contrast change (25), whose level 3 changes nothing and whose levels 1-2
   and 4-5 go in opposite directions: there the score must rise from level 3 to 2 to 1 and from 3 to 4 to 5
   (:func:`strength_chains`). The literal "rises with the level" fraction is given too (``score_rises_with_level``),
   the same fractions for the label (``label_rises_*``), ``follows_label_order`` counts sequences whose scores are
   ordered exactly as their labels, and ``score_rises_where_label_rises`` is the fraction of rising scores among the
   sequences whose label rises with the level.
3. ``identical``: for every reference, ``score(ref, ref)`` is below the score of each of its distorted pairs [all].
   Distorted images that are pixel-identical to their reference (e.g. a zero shift) are left out and counted.
4. ``stability``: for a fixed subset of pairs, the standard deviation over 10 sampling seeds with 1024 patches,
   relative to the score range (max - min) over the whole held-out set [max < 5 %].

Scores use ``vtamiq_metric.score`` with ``--patches`` patches (default 1024) and seed 0. On CPU, 1024 patches cost
about 0.6 s per pair for the tiny model: ``--patches 256`` makes checks 1-3 about 6x faster.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import stats

import vtamiq_metric
from vtamiq_metric.hub import load_model
from vtamiq_metric.training.distortions import DISTORTIONS


def read_pairs(root: Path) -> list[dict]:
    """Rows of ``<root>/kadis700k_scores.csv`` with absolute paths."""
    path = root / "kadis700k_scores.csv"
    if not path.is_file():
        raise FileNotFoundError(f"expected {path} (make it with vtamiq-train make-kadis), got no file")
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            ref = Path(row["ref_img"])
            rows.append({"ref": ref if ref.is_absolute() else root / ref, "dist": root / row["dist_img"],
                         "type": int(row["dist_type"]), "level": int(row["dist_level"]), "vsi": float(row["vsi"])})
    if not rows:
        raise ValueError(f"expected pairs in {path}, got none")
    return rows


def score_pairs(model, refs: list[Path], dists: list[Path], *, patches: int, seed: int, chunk: int) -> np.ndarray:
    """Scores of (ref, dist) file pairs, at most ``chunk`` pairs of one image size per call."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, ref in enumerate(refs):
        with Image.open(ref) as image:
            groups[image.size].append(i)
    out = np.zeros(len(refs), dtype=np.float64)
    for index in groups.values():
        for start in range(0, len(index), chunk):
            part = index[start:start + chunk]
            scores = vtamiq_metric.score([str(refs[i]) for i in part], [str(dists[i]) for i in part], model=model,
                                         num_patches=patches, seed=seed, batch_size=chunk)
            out[part] = scores.float().cpu().numpy()
    return out


def _same_pixels(a: Path, b: Path) -> bool:
    with Image.open(a) as x, Image.open(b) as y:
        return np.array_equal(np.asarray(x.convert("RGB")), np.asarray(y.convert("RGB")))


def _rises(values: list[float]) -> bool:
    return bool(np.all(np.diff(values) > 0))


def strength_chains(type_id: int, levels: list[int]) -> list[list[int]]:
    """Positions (into ``levels``, sorted) ordered by rising distortion strength, one chain per direction.

    Where the level order is the severity order (``DistortionType.level_is_severity``), one chain: the levels.
    Otherwise (mean shift, contrast change: parameters ``+a, +b, 0, -b, -a``) the level whose parameter is 0 changes
    nothing, and strength rises away from it on both sides: two chains, e.g. levels (3, 2, 1) and (3, 4, 5).
    """
    kind = DISTORTIONS[type_id]
    if kind.level_is_severity:
        return [list(range(len(levels)))]
    params = [kind.levels[level - 1] for level in levels]
    zero = [i for i, value in enumerate(params) if value == 0]
    if len(zero) != 1:
        raise ValueError(f"expected one no-change level among {levels} of type {type_id}, got parameters {params}")
    centre = zero[0]
    chains = [list(range(centre, -1, -1)), list(range(centre, len(levels)))]
    return [chain for chain in chains if len(chain) > 1]


def _rises_with_strength(values: np.ndarray, chains: list[list[int]]) -> bool:
    return all(_rises(list(values[chain])) for chain in chains)


def _type_summary(d: dict[str, list[bool]]) -> dict:
    return {"score_rises_with_strength": float(np.mean(d["score_strength"])),
            "label_rises_with_strength": float(np.mean(d["label_strength"])),
            "score_rises": float(np.mean(d["score"])), "label_rises": float(np.mean(d["label"])),
            "follows_label_order": float(np.mean(d["follows"])), "n": len(d["score"])}


def monotonicity(rows: list[dict], pred: np.ndarray, target: np.ndarray) -> dict:
    """Per-type and overall fractions of (reference, type) sequences rising with the level and with the strength."""
    seqs: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        seqs[(str(row["ref"]), row["type"])].append(i)
    per_type: dict[int, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for (_, type_id), idx in seqs.items():
        idx = sorted(idx, key=lambda i: rows[i]["level"])
        if len(idx) < 2:
            continue
        p, t = pred[idx], target[idx]
        chains = strength_chains(type_id, [rows[i]["level"] for i in idx])
        per_type[type_id]["score"].append(_rises(list(p)))
        per_type[type_id]["label"].append(_rises(list(t)))
        per_type[type_id]["score_strength"].append(_rises_with_strength(p, chains))
        per_type[type_id]["label_strength"].append(_rises_with_strength(t, chains))
        per_type[type_id]["follows"].append(bool(np.array_equal(np.argsort(p, kind="stable"),
                                                                np.argsort(t, kind="stable"))))
    every = {key: [v for d in per_type.values() for v in d[key]]
             for key in ("score", "label", "follows", "score_strength", "label_strength")}
    return {
        "sequences": len(every["score"]),
        "score_rises_with_strength": float(np.mean(every["score_strength"])),
        "label_rises_with_strength": float(np.mean(every["label_strength"])),
        "score_rises_with_level": float(np.mean(every["score"])),
        "label_rises_with_level": float(np.mean(every["label"])),
        "follows_label_order": float(np.mean(every["follows"])),
        "score_rises_where_label_rises": float(np.mean([s for s, lab in zip(every["score"], every["label"]) if lab]))
        if any(every["label"]) else float("nan"),
        "per_type": {f"{t:02d}_{DISTORTIONS[t].name}": _type_summary(d) for t, d in sorted(per_type.items())},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="registered name, model directory or .safetensors file")
    parser.add_argument("data", type=Path, help="folder with kadis700k_scores.csv of held-out pairs")
    parser.add_argument("--patches", type=int, default=1024, help="patches per image for checks 1-3 (default 1024)")
    parser.add_argument("--stability-patches", type=int, default=1024)
    parser.add_argument("--stability-seeds", type=int, default=10)
    parser.add_argument("--stability-pairs", type=int, default=24,
                        help="pairs in the stability subset (every k-th held-out pair; default 24)")
    parser.add_argument("--chunk", type=int, default=16, help="pairs per score() call")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    started = time.perf_counter()
    model = load_model(args.model)
    rows = read_pairs(args.data)
    refs = [r["ref"] for r in rows]
    dists = [r["dist"] for r in rows]
    target = 1.0 - np.array([r["vsi"] for r in rows])
    pred = score_pairs(model, refs, dists, patches=args.patches, seed=0, chunk=args.chunk)
    srocc = float(stats.spearmanr(pred, target)[0])
    krocc = float(stats.kendalltau(pred, target)[0])
    per_type_srocc = {}
    types = np.array([r["type"] for r in rows])
    for t in sorted(set(types.tolist())):
        mask = types == t
        per_type_srocc[f"{t:02d}_{DISTORTIONS[t].name}"] = float(stats.spearmanr(pred[mask], target[mask])[0])

    # identical pairs
    unique_refs = sorted(set(refs), key=str)
    ident = score_pairs(model, unique_refs, unique_refs, patches=args.patches, seed=0, chunk=args.chunk)
    below, margins, skipped = [], [], 0
    for ref, same in zip(unique_refs, ident):
        others = []
        for i, row in enumerate(rows):
            if row["ref"] != ref:
                continue
            if _same_pixels(row["ref"], row["dist"]):
                skipped += 1
                continue
            others.append(pred[i])
        below.append(bool(same < min(others)))
        margins.append(float(min(others) - same))

    # stability
    step = max(1, len(rows) // args.stability_pairs)
    subset = list(range(0, len(rows), step))[:args.stability_pairs]
    draws = np.stack([score_pairs(model, [refs[i] for i in subset], [dists[i] for i in subset],
                                  patches=args.stability_patches, seed=seed, chunk=args.chunk)
                      for seed in range(args.stability_seeds)])
    spread = float(pred.max() - pred.min())
    std = draws.std(axis=0)

    result = {
        "model": str(args.model),
        "data": str(args.data),
        "pairs": len(rows),
        "references": len(unique_refs),
        "patches": args.patches,
        "srocc": srocc,
        "krocc": krocc,
        "srocc_per_type": per_type_srocc,
        "monotonic": monotonicity(rows, pred, target),
        "identical": {"below_all_distorted": float(np.mean(below)), "references": len(below),
                      "min_margin": float(min(margins)), "mean_identical_score": float(ident.mean()),
                      "pixel_identical_pairs_left_out": skipped},
        "stability": {"patches": args.stability_patches, "seeds": args.stability_seeds, "pairs": len(subset),
                      "score_range": spread, "max_std": float(std.max()), "mean_std": float(std.mean()),
                      "max_std_over_range": float(std.max() / spread) if spread > 0 else float("nan"),
                      "mean_std_over_range": float(std.mean() / spread) if spread > 0 else float("nan")},
        "score_min": float(pred.min()),
        "score_max": float(pred.max()),
        "targets": {},
        "seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    result["targets"] = {
        "srocc>=0.90": srocc >= 0.90,
        "monotonic>=0.90": result["monotonic"]["score_rises_with_strength"] >= 0.90,
        "identical_below_all": all(below),
        "stability_max_std<5%": result["stability"]["max_std_over_range"] < 0.05,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
