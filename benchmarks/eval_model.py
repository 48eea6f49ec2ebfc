"""Acceptance figures of a VTAMIQ model, next to VSI and PSNR; prints one JSON object (and a Markdown summary).

Works for any model (``--model``: a registered name, a model directory or a ``.safetensors`` file; default: the
bundled one). The checks are library functions in :mod:`vtamiq_metric.training.acceptance`; this script only finds the
data and collects the figures::

    python benchmarks/eval_model.py --heldout DATA/heldout --train-refs DATA/ref_imgs \\
        --tid2013 ../shared/data/tid2013_fragment --output eval.json

``DATA`` is what ``examples/bundled_model/prepare_data.py`` and ``vtamiq-train make-kadis`` wrote:
``heldout/kadis700k_scores.csv`` (KADIS-style pairs of held-out crops, labelled with VSI), ``heldout/photos/``
(the held-out photographs) and ``ref_imgs/`` (training crops, used only to train the restoration networks of check 1).

1. **Loss**: the cosine between d score / d dist and ``dist - ref`` (median over blurred, noisy and JPEG crops of
   the held-out photographs); gradient descent on the pixels with the loss alone (Adam on sigmoid logits); a small
   restoration CNN trained with L1 alone and with L1 + ``VTAMIQLoss`` for deblurring, denoising and JPEG artefact
   removal (``--restoration-steps``; ``--skip-restoration`` leaves it out).
2. **Identity**: ``score(ref, ref)`` for every held-out reference, and the lowest score of all.
3. **Severity**: six ladders of five levels on every held-out photograph.
4. **Weak label**: SROCC with ``1 - VSI`` over the KADIS-style held-out pairs (crops), and over every KADIS type at
   levels 2 and 4 of the whole held-out photographs (``--full-side``, default 1024: the size people score, where
   VSI, and a model with ``downsample_side``, averages pixel blocks first; ``--skip-full-size`` leaves it out).
5. **People**: SROCC with MOS on a TID2013-layout folder (``--tid2013``; optional).
6. **Stability**: the standard deviation over 10 seeds relative to the score range, at the default patch count.

Scores use ``vtamiq_metric.score`` with the model's defaults (``--patches`` to change) and seed 0.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vtamiq_metric import hub
from vtamiq_metric.hub import load_model
from vtamiq_metric.training import acceptance as acc


LOSS_CASES = (("gaussian_blur", 2.0), ("white_noise", 0.08), ("jpeg", 10))


def centre_crop(image: torch.Tensor, side: int) -> torch.Tensor:
    top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
    return image[:, top:top + side, left:left + side]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="registered name, model directory or .safetensors "
                                                      "(default: the bundled model)")
    parser.add_argument("--heldout", type=Path, required=True,
                        help="folder with kadis700k_scores.csv and photos/ of held-out photographs")
    parser.add_argument("--train-refs", type=Path, help="training crops for the restoration networks")
    parser.add_argument("--tid2013", type=Path, help="a folder in TID2013's layout (optional)")
    parser.add_argument("--patches", type=int, default=None, help="patches per image (default: the model's)")
    parser.add_argument("--photo-side", type=int, default=512, help="held-out photographs downscaled to this side")
    parser.add_argument("--full-side", type=int, default=1024,
                        help="longest side of the whole photographs of the full-size weak-label check (default 1024)")
    parser.add_argument("--skip-full-size", action="store_true", help="leave the full-size weak-label check out")
    parser.add_argument("--loss-crop", type=int, default=160, help="crop side of the loss checks (default 160)")
    parser.add_argument("--pixel-lr", type=float, nargs="+", default=[0.05, 0.01],
                        help="Adam step sizes of the pixel optimisation (default 0.05 0.01)")
    parser.add_argument("--pixel-steps", type=int, default=60)
    parser.add_argument("--restoration-steps", type=int, default=300)
    parser.add_argument("--skip-restoration", action="store_true")
    parser.add_argument("--stability-pairs", type=int, default=24)
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    name = args.model or hub.DEFAULT_MODEL
    model = load_model(name).eval()
    scorers = acc.reference_scorers(model, num_patches=args.patches)
    photos = acc.load_images(sorted((args.heldout / "photos").glob("*.png")), max_side=args.photo_side)
    if not photos:
        raise FileNotFoundError(f"expected held-out photographs in {args.heldout / 'photos'}, got none")
    result: dict = {"model": str(name), "parameters": sum(p.numel() for p in model.parameters()),
                    "patches": args.patches or model.config.num_patches, "heldout_photos": len(photos)}

    # 1. loss
    loss_refs = [centre_crop(p, args.loss_crop) for p in photos]
    loss_pairs = [(r, acc.degrade(r, family, value, seed=i)) for i, r in enumerate(loss_refs)
                  for family, value in LOSS_CASES]
    cosines = acc.gradient_cosines(model, [r for r, _ in loss_pairs], [d for _, d in loss_pairs])
    result["loss"] = {"gradient_cosine": {"median": float(np.median(cosines)), "min": float(cosines.min()),
                                          "max": float(cosines.max()), "pairs": len(cosines)},
                      "pixel_optimisation": {}}
    for lr in args.pixel_lr:
        run = acc.pixel_optimisation(model, [r for r, _ in loss_pairs], [d for _, d in loss_pairs], lr=lr,
                                     steps=args.pixel_steps)
        result["loss"]["pixel_optimisation"][str(lr)] = {k: v for k, v in run.items() if not isinstance(v, list)}
    if not args.skip_restoration:
        if args.train_refs is None:
            parser.error("--train-refs is needed for the restoration check (or pass --skip-restoration)")
        train_images = acc.load_images(sorted(args.train_refs.glob("*.png")))
        result["loss"]["restoration"] = {
            task: acc.restoration_benefit(model, train_images, loss_refs, task, steps=args.restoration_steps,
                                          log=lambda text: print(text, file=sys.stderr))
            for task in acc.RESTORATION_TASKS}

    # 2-4. identity, severity, weak label
    rows = acc.read_kadis_pairs(args.heldout)
    cache: dict[Path, torch.Tensor] = {}

    def image(path: Path) -> torch.Tensor:
        if path not in cache:
            cache[path] = acc.load_images([path])[0]
        return cache[path]

    refs = [image(r["ref"]) for r in rows]
    dists = [image(r["dist"]) for r in rows]
    label = 1.0 - np.array([r["vsi"] for r in rows])
    result["weak_label"] = acc.label_check(refs, dists, label, {k: v for k, v in scorers.items() if k != "vsi"},
                                           groups=[r["type"] for r in rows])
    by_ref: dict[Path, list[torch.Tensor]] = {}
    for row, dist in zip(rows, dists):
        by_ref.setdefault(row["ref"], []).append(dist)
    result["identity"] = acc.identity_check(scorers["model"], [image(p) for p in by_ref], list(by_ref.values()))
    result["severity"] = acc.severity_check(photos, scorers)
    if not args.skip_full_size:
        whole = acc.load_images(sorted((args.heldout / "photos").glob("*.png")), max_side=args.full_side)
        f_refs, f_dists, f_label, f_types = acc.full_size_pairs(whole)
        result["weak_label_full_size"] = acc.label_check(f_refs, f_dists, f_label,
                                                         {k: v for k, v in scorers.items() if k != "vsi"},
                                                         groups=f_types)
        result["weak_label_full_size"]["sizes"] = sorted({tuple(int(v) for v in r.shape[1:]) for r in whole})
        del f_refs, f_dists

    # 5. people
    if args.tid2013 is not None:
        t_refs, t_dists, mos = acc.read_mos_folder(args.tid2013)
        t_ref_images = acc.load_images(t_refs)
        t_dist_images = acc.load_images(t_dists)
        result["tid2013"] = acc.mos_check(t_ref_images, t_dist_images, np.array(mos), scorers)
        groups: dict[Path, list[torch.Tensor]] = {}
        for ref, dist in zip(t_refs, t_dist_images):
            groups.setdefault(ref, []).append(dist)
        result["tid2013"]["identity"] = acc.identity_check(scorers["model"], acc.load_images(list(groups)),
                                                           list(groups.values()))

    # 6. stability
    model_scores = acc.score_pairs(scorers["model"], refs, dists)
    step = max(1, len(rows) // args.stability_pairs)
    subset = list(range(0, len(rows), step))[:args.stability_pairs]
    result["stability"] = acc.stability_check(model, [refs[i] for i in subset], [dists[i] for i in subset],
                                              score_range=float(model_scores.max() - model_scores.min()),
                                              num_patches=args.patches)

    # 7. size and speed
    started_speed = time.perf_counter()
    acc.model_scorer(model, num_patches=args.patches)(torch.stack(refs[:16]), torch.stack(dists[:16]))
    result["seconds_per_pair"] = (time.perf_counter() - started_speed) / 16
    result.update({"seconds": round(time.perf_counter() - started, 1), "torch": torch.__version__,
                   "machine": platform.machine(), "threads": torch.get_num_threads()})
    text = json.dumps(result, indent=2)
    print(text)
    print(summary(result), file=sys.stderr)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    return 0


def summary(result: dict) -> str:
    """A Markdown table of the headline figures (model, VSI, PSNR)."""
    lines = ["| check | model | VSI | PSNR |", "|---|---|---|---|"]
    sev = result["severity"]
    lines.append(f"| severity: level pairs ordered | {sev['model']['pair_accuracy']:.3f} | "
                 f"{sev['vsi']['pair_accuracy']:.3f} | {sev['psnr']['pair_accuracy']:.3f} |")
    lines.append(f"| severity: monotone ladders | {sev['model']['monotone']:.3f} | {sev['vsi']['monotone']:.3f} | "
                 f"{sev['psnr']['monotone']:.3f} |")
    weak = result["weak_label"]
    lines.append(f"| SROCC with 1 - VSI | {weak['model']['srocc']:.3f} | 1 | {weak['psnr']['srocc']:.3f} |")
    if "weak_label_full_size" in result:
        full = result["weak_label_full_size"]
        lines.append(f"| SROCC with 1 - VSI, whole photographs (n={full['model']['n']}) | {full['model']['srocc']:.3f} "
                     f"| 1 | {full['psnr']['srocc']:.3f} |")
    if "tid2013" in result:
        tid = result["tid2013"]
        lines.append(f"| TID2013 SROCC with MOS (n={tid['model']['n']}) | {tid['model']['srocc']:.3f} | "
                     f"{tid['vsi']['srocc']:.3f} | {tid['psnr']['srocc']:.3f} |")
    ident = result["identity"]
    lines.append(f"| max abs identical-pair score | {ident['max_abs_identical']:.2e} | 0 | - |")
    lines.append(f"| stability: max std / range | {result['stability']['max_std_over_range']:.4f} | - | - |")
    lines.append(f"| gradient cosine (median) | {result['loss']['gradient_cosine']['median']:.3f} | - | 1 (MSE) |")
    for task, entry in result["loss"].get("restoration", {}).items():
        lines.append(f"| {task}: VSI gain / PSNR change with the loss | {entry['vsi_gain']:+.4f} / "
                     f"{entry['psnr_change']:+.2f} dB | - | - |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
