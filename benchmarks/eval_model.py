r"""Acceptance figures of a VTAMIQ model next to its teacher, VSI and PSNR: one JSON object and a Markdown summary.

Works for any model (``--model``: a registered name, a model directory or a ``.safetensors`` file; default: the
bundled one). The checks are library functions in :mod:`vtamiq_metric.training.acceptance`; this script only finds the
data and collects the figures::

    python benchmarks/eval_model.py --heldout DATA/heldout --train-refs DATA/ref_imgs \
        --tid2013 ../shared/data/tid2013_fragment --output eval.json
    python benchmarks/eval_model.py --quick --heldout DATA/heldout --train-refs DATA/ref_imgs --output round1.json

``DATA`` is what ``examples/bundled_model/prepare_data.py`` and ``vtamiq-train make-kadis`` wrote:
``heldout/kadis700k_scores.csv`` (KADIS-style pairs of held-out crops, labelled with VSI and, when made with
``--label vsi,teacher``, the teacher), ``heldout/photos/`` (the held-out photographs) and ``ref_imgs/`` (training
crops, used only to train the restoration networks of checks 3 and 4). The numbers are issue 20's:

1. **Pixel optimisation with the loss alone**: Adam on the sigmoid logits of blurred, noisy and JPEG centre crops
   (``--loss-crop``) of ``--pixel-photos`` held-out photographs, ``--pixel-steps`` steps at each ``--pixel-lr``;
   PSNR, VSI and the teacher before and after. Also the cosine of d score / d dist with ``dist - ref``
   (``--skip-pixel``).
2. **Stacked distortions**: noise, blur or JPEG, then a colour cast, a contrast cut or another of the three, on
   ``--stack-crop`` crops of ``--stack-photos`` photographs; the share of stacks costing at least 1 dB that score
   worse than their first part (``--skip-stacking``).
3. **Restoration with the loss alone**: a small CNN trained with ``VTAMIQLoss`` alone to denoise and to deblur;
   PSNR, the teacher and the colour cast of its held-out outputs against its inputs (``--skip-restoration``).
4. **Partners**: the same CNN trained to deblur with L1, L1 + ``VTAMIQLoss``, L1 + piq's ``VSILoss`` and
   L1 + (1 - MS-SSIM); held-out PSNR, FSIM, GMSD, HaarPSI and the mean rank (``--skip-partners``).
5. **Identity, severity, stability**: ``score(ref, ref)``; six ladders of five levels on every held-out photograph;
   the standard deviation over 10 seeds relative to the score range.
6. **Agreement with the teacher (and VSI)**: SROCC over the KADIS-style held-out crops (the CSV's ``teacher``
   column when present, else computed; ``--label-pairs`` for an evenly spaced subset) and over every KADIS type at
   levels 2 and 4 of the whole photographs (``--full-side``, ``--full-photos``; ``--skip-full-size``).
7. **People**: SROCC with MOS on a TID2013-layout folder (``--tid2013``; optional).
8. **Size and speed**: the weights' file size (where ``--model`` names a file on disk) and size in memory, and CPU
   seconds per pair at the defaults.

The defaults keep a full run near an hour on 2 busy CPU cores (about 1 s per model score there): 600 of the
KADIS-style pairs, 8 photographs for checks 2 and 6; ``--label-pairs 0 --full-photos 0 --stack-photos 0`` uses all.
``--quick`` runs checks 1-3 only (about 8 minutes on 2 busy cores): checks 1 and 3 as in a full run, check 2 on 2
photographs (unless ``--stack-photos`` says otherwise) with the model, teacher, VSI and PSNR only; enough to measure
a training round. Its JSON says
``"quick": true``. With ``--output``, the JSON is rewritten after every check (``"complete"`` turns true at the end).
Scores use ``vtamiq_metric.score`` with the model's defaults (``--patches`` to change) and seed 0.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from vtamiq_metric import hub
from vtamiq_metric._io import atomic_write_text
from vtamiq_metric.hub import load_model
from vtamiq_metric.training import acceptance as acc

#: Degradations of the held-out crops of check 1 (family of ``acceptance.LADDERS``, parameter).
LOSS_CASES = (("gaussian_blur", 2.0), ("white_noise", 0.08), ("jpeg", 10))
#: Tasks of check 3 (keys of ``acceptance.RESTORATION_TASKS``).
ALONE_TASKS = ("denoise", "deblur")
#: What ``--quick`` changes, unless given on the command line.
QUICK = {"stack_photos": 2}

T = TypeVar("T")


def spread(items: Sequence[T], count: int) -> list[T]:
    """``count`` evenly spaced items (first and last included); all of them for ``count <= 0`` or ``>= len(items)``."""
    if count <= 0 or count >= len(items):
        return list(items)
    return [items[int(i)] for i in np.unique(np.linspace(0, len(items) - 1, count).round().astype(int))]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="registered name, model directory or .safetensors "
                                                      "(default: the bundled model)")
    parser.add_argument("--heldout", type=Path, required=True,
                        help="folder with photos/ of held-out photographs and kadis700k_scores.csv of their crops")
    parser.add_argument("--train-refs", type=Path, help="training crops for the restoration networks (checks 3, 4)")
    parser.add_argument("--tid2013", type=Path, help="a folder in TID2013's layout (optional)")
    parser.add_argument("--output", type=Path, help="write the JSON here (rewritten after every check)")
    parser.add_argument("--quick", action="store_true",
                        help=f"checks 1-3 only, on a subset ({', '.join(f'{k}={v}' for k, v in QUICK.items())})")
    parser.add_argument("--patches", type=int, default=None, help="patches per image (default: the model's)")
    parser.add_argument("--photo-side", type=int, default=512, help="held-out photographs downscaled to this side")
    group = parser.add_argument_group("check 1: pixel optimisation")
    group.add_argument("--skip-pixel", action="store_true", help="leave check 1 out (and the gradient cosines)")
    group.add_argument("--loss-crop", type=int, default=160, help="crop side of checks 1, 3 and 4's test images")
    group.add_argument("--pixel-photos", type=int, default=2,
                       help="photographs of the pixel optimisation, 3 degradations each (default 2: 6 cases; 0 = all)")
    group.add_argument("--pixel-lr", type=float, nargs="+", default=[0.05, 0.01],
                       help="Adam step sizes of the pixel optimisation (default 0.05 0.01)")
    group.add_argument("--pixel-steps", type=int, default=60)
    group = parser.add_argument_group("check 2: stacked distortions")
    group.add_argument("--skip-stacking", action="store_true")
    group.add_argument("--stack-photos", type=int, default=8, help="photographs (default 8; 0 = all)")
    group.add_argument("--stack-crop", type=int, default=256, help="centre crop side (default 256)")
    group = parser.add_argument_group("checks 3 and 4: restoration networks")
    group.add_argument("--skip-restoration", action="store_true", help="leave check 3 out")
    group.add_argument("--skip-partners", action="store_true", help="leave check 4 out")
    group.add_argument("--restoration-steps", type=int, default=300, help="training steps of each network")
    group.add_argument("--restoration-images", type=int, default=256,
                       help="training crops loaded from --train-refs, evenly spaced (default 256; 0 = all)")
    group.add_argument("--partner-tasks", nargs="+", default=["deblur"], choices=sorted(acc.RESTORATION_TASKS))
    group.add_argument("--partner-crop", type=int, default=176,
                       help="training crop side of check 4 (default 176: MS-SSIM with its 5 scales; fewer below 161)")
    group = parser.add_argument_group("checks 5-8")
    group.add_argument("--label-pairs", type=int, default=600,
                       help="evenly spaced subset of the KADIS-style held-out pairs (default 600; 0 = all)")
    group.add_argument("--skip-labels", action="store_true",
                       help="leave out what needs kadis700k_scores.csv (identity, stability, crops' SROCC, speed)")
    group.add_argument("--skip-severity", action="store_true")
    group.add_argument("--skip-full-size", action="store_true", help="leave the whole-photograph SROCC out")
    group.add_argument("--full-side", type=int, default=1024,
                       help="longest side of the whole photographs of the full-size check (default 1024)")
    group.add_argument("--full-photos", type=int, default=8,
                       help="photographs of the full-size check, 48 pairs each (default 8; 0 = all)")
    group.add_argument("--stability-pairs", type=int, default=24)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    needs_train = not (args.skip_restoration and (args.skip_partners or args.quick))
    if needs_train and args.train_refs is None:
        parser.error("--train-refs is needed for checks 3 and 4 (or pass --skip-restoration --skip-partners)")

    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:7.0f} s] {text}", file=sys.stderr, flush=True)

    name = args.model or hub.DEFAULT_MODEL
    model = load_model(name).eval()
    photo_paths = sorted((args.heldout / "photos").glob("*.png"))
    photos = acc.load_images(photo_paths, max_side=args.photo_side)
    if not photos:
        raise FileNotFoundError(f"expected held-out photographs in {args.heldout / 'photos'}, got none")
    result: dict = {"model": str(name), "parameters": sum(p.numel() for p in model.parameters()),
                    "patches": args.patches or model.config.num_patches, "heldout_photos": len(photos),
                    "quick": args.quick, "complete": False,
                    "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    save = _saver(args.output, result, started)
    scorers = acc.reference_scorers(model, num_patches=args.patches)  # model, teacher, vsi, psnr

    # 1. pixel optimisation with the loss alone
    loss_refs = [acc.centre_crop(p, args.loss_crop) for p in photos]
    if not args.skip_pixel:
        log("check 1: pixel optimisation with the loss alone")
        pixel_refs = spread(loss_refs, args.pixel_photos)
        pairs = [(r, acc.degrade(r, family, value, seed=i)) for i, r in enumerate(pixel_refs)
                 for family, value in LOSS_CASES]
        result["loss"] = {"pixel_optimisation": {}}
        for lr in args.pixel_lr:
            result["loss"]["pixel_optimisation"][str(lr)] = acc.pixel_optimisation(
                model, [r for r, _ in pairs], [d for _, d in pairs], lr=lr, steps=args.pixel_steps, log=log)
            save()
    if not (args.quick or args.skip_pixel):
        cos_pairs = [(r, acc.degrade(r, family, value, seed=i)) for i, r in enumerate(loss_refs)
                     for family, value in LOSS_CASES]
        log(f"check 1: gradient cosines of {len(cos_pairs)} pairs")
        cosines = acc.gradient_cosines(model, [r for r, _ in cos_pairs], [d for _, d in cos_pairs])
        result["loss"]["gradient_cosine"] = {"median": float(np.median(cosines)), "min": float(cosines.min()),
                                             "max": float(cosines.max()), "pairs": len(cosines)}
        save()

    # 2. stacked distortions
    if not args.skip_stacking:
        log("check 2: stacked distortions")
        stack_scorers = scorers if args.quick else acc.reference_scorers(model, extended=True,
                                                                          num_patches=args.patches)
        result["stacking"] = acc.stacking_check(spread(photos, args.stack_photos), stack_scorers,
                                                crop=args.stack_crop, log=log)
        save()

    # 3, 4. restoration networks
    train_images = []
    if needs_train:
        train_paths = spread(sorted(args.train_refs.glob("*.png")), args.restoration_images)
        train_images = acc.load_images(train_paths)
        if not train_images:
            raise FileNotFoundError(f"expected training crops (*.png) in {args.train_refs}, got none")
    if not args.skip_restoration:
        log("check 3: restoration with the loss alone")
        result["restoration_alone"] = {}
        for task in ALONE_TASKS:
            result["restoration_alone"][task] = acc.loss_alone_restoration(
                model, train_images, loss_refs, task, steps=args.restoration_steps, log=log)
            save()
    if args.quick:
        return _finish(result, save, started)
    if not args.skip_partners:
        log("check 4: partners")
        result["partners"] = {}
        large = [im for im in train_images if min(im.shape[1:]) >= args.partner_crop]
        if len(large) < len(train_images):
            log(f"check 4: {len(large)} of {len(train_images)} training crops are at least {args.partner_crop} px")
        for task in args.partner_tasks:
            result["partners"][task] = acc.partner_comparison(model, large, loss_refs, task,
                                                              steps=args.restoration_steps, crop=args.partner_crop,
                                                              log=log)
            save()

    # 5. severity ladders
    if not args.skip_severity:
        log("check 5: severity ladders")
        result["severity"] = acc.severity_check(photos, scorers)
        save()

    # 5, 6, 8. KADIS-style held-out crops: identity, agreement with the teacher and VSI, stability, speed
    if not args.skip_labels:
        _crop_checks(args, model, scorers, result, save, log)

    # 6. whole photographs
    if not args.skip_full_size:
        log("check 6: whole photographs")
        whole = acc.load_images(spread(photo_paths, args.full_photos), max_side=args.full_side)
        f_refs, f_dists, f_vsi, f_types = acc.full_size_pairs(whole)
        log(f"check 6: {len(f_refs)} pairs of whole photographs")
        table = acc.score_table({k: scorers[k] for k in ("model", "teacher", "psnr")}, f_refs, f_dists, batch=4)
        table["vsi"] = f_vsi
        result["weak_label_full_size"] = acc.correlations({k: v for k, v in table.items() if k != "vsi"}, f_vsi,
                                                          groups=f_types)
        result["teacher_label_full_size"] = acc.correlations({k: v for k, v in table.items() if k != "teacher"},
                                                             table["teacher"], groups=f_types)
        sizes = sorted({tuple(int(v) for v in r.shape[1:]) for r in whole})
        result["weak_label_full_size"]["sizes"] = result["teacher_label_full_size"]["sizes"] = sizes
        del f_refs, f_dists
        save()

    # 7. people
    if args.tid2013 is not None:
        log("check 7: TID2013")
        t_refs, t_dists, mos = acc.read_mos_folder(args.tid2013)
        t_dist_images = acc.load_images(t_dists)
        result["tid2013"] = acc.mos_check(acc.load_images(t_refs), t_dist_images, np.array(mos),
                                          acc.reference_scorers(model, extended=True, num_patches=args.patches))
        groups: dict[Path, list[torch.Tensor]] = {}
        for ref, dist in zip(t_refs, t_dist_images, strict=True):
            groups.setdefault(ref, []).append(dist)
        result["tid2013"]["identity"] = acc.identity_check(scorers["model"], acc.load_images(list(groups)),
                                                           list(groups.values()))
        save()

    # 8. size
    result["weights_mib"] = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20
    path = weights_file(str(name))
    if path is not None:
        result["weights_file_mib"] = path.stat().st_size / 2**20
    return _finish(result, save, started)


def weights_file(name: str) -> Path | None:
    """The safetensors file that ``--model`` names, where it is a bundled model, a model directory or a file."""
    entry = hub.PRETRAINED.get(name)
    if entry is not None:
        return Path(hub.__file__).parent / entry.bundled_path if entry.bundled_path is not None else None
    path = Path(name).expanduser()
    if path.is_dir():
        path = path / hub.WEIGHTS_NAME
    return path if path.is_file() else None


def _crop_checks(args: argparse.Namespace, model: torch.nn.Module, scorers: dict, result: dict,
                 save: Callable[[], None], log: Callable[[str], None]) -> None:
    """Checks 5, 6 and 8 on the KADIS-style held-out crops of ``kadis700k_scores.csv``."""
    rows = spread(acc.read_kadis_pairs(args.heldout), args.label_pairs)
    cache: dict[Path, torch.Tensor] = {}

    def image(path: Path) -> torch.Tensor:
        if path not in cache:
            cache[path] = acc.load_images([path])[0]
        return cache[path]

    refs = [image(r["ref"]) for r in rows]
    dists = [image(r["dist"]) for r in rows]
    log(f"checks 5, 6, 8: {len(rows)} held-out crops")
    computed = {"model": scorers["model"], "psnr": scorers["psnr"]}
    if "teacher" not in rows[0]:
        computed["teacher"] = scorers["teacher"]  # also gives VSI, in the same pass
    if "vsi" not in rows[0]:
        computed["vsi"] = scorers["vsi"]
    table = acc.score_table(computed, refs, dists)
    if "teacher" in rows[0]:
        table["teacher"] = np.array([1.0 / r["teacher"] - 1.0 for r in rows])  # similarity 1 / (1 + D) -> D
    if "vsi" in rows[0]:
        table["vsi"] = 1.0 - np.array([r["vsi"] for r in rows])
    kinds = [r["type"] for r in rows]
    result["teacher_label"] = acc.correlations({k: v for k, v in table.items() if k != "teacher"}, table["teacher"],
                                               groups=kinds)
    result["teacher_label"]["source"] = "csv" if "teacher" in rows[0] else "computed"
    result["weak_label"] = acc.correlations({k: v for k, v in table.items() if k != "vsi"}, table["vsi"],
                                            groups=kinds)
    save()
    by_ref: dict[Path, list[int]] = {}
    for i, row in enumerate(rows):
        by_ref.setdefault(row["ref"], []).append(i)
    result["identity"] = acc.identity_check(scorers["model"], [image(p) for p in by_ref],
                                            [[dists[i] for i in idx] for idx in by_ref.values()],
                                            known_scores=[[table["model"][i] for i in idx] for idx in by_ref.values()])
    log("check 5: stability")
    subset = spread(range(len(rows)), args.stability_pairs)
    result["stability"] = acc.stability_check(model, [refs[i] for i in subset], [dists[i] for i in subset],
                                              score_range=float(np.ptp(table["model"])), num_patches=args.patches)
    save()
    same = [i for i, r in enumerate(refs) if r.shape == refs[0].shape][:16]  # one batch: pairs of one size
    started_speed = time.perf_counter()
    scorers["model"](torch.stack([refs[i] for i in same]), torch.stack([dists[i] for i in same]))
    result["seconds_per_pair"] = (time.perf_counter() - started_speed) / len(same)
    save()


def _saver(path: Path | None, result: dict, started: float) -> Callable[[], None]:
    """A function that writes ``result`` to ``path`` atomically (nothing without a path)."""

    def save() -> None:
        result["seconds"] = round(time.perf_counter() - started, 1)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(result, indent=2) + "\n")

    return save


def _finish(result: dict, save: Callable[[], None], started: float) -> int:
    result.update({"complete": True, "torch": torch.__version__, "machine": platform.machine(),
                   "threads": torch.get_num_threads()})
    save()
    print(json.dumps(result, indent=2))
    print(summary(result), file=sys.stderr)
    return 0


def _f(value: object, spec: str = ".3f") -> str:
    """A figure for the summary table ('-' when there is none)."""
    return "-" if value is None or isinstance(value, str) else format(float(value), spec)


def summary(result: dict) -> str:
    """Markdown tables of the headline figures: the model next to the teacher, VSI and PSNR (what is present)."""
    columns = ("model", "teacher", "vsi", "psnr")
    lines = ["| # | check | model | teacher | VSI | PSNR |", "|---|---|---|---|---|---|"]

    def row(number: int, label: str, *cells: str) -> None:
        lines.append(f"| {number} | {label} | {' | '.join(cells)} |")

    for lr, run in result.get("loss", {}).get("pixel_optimisation", {}).items():
        row(1, f"pixels optimised with the loss alone (lr {lr}, {run.get('pairs', '?')} cases, PSNR "
               f"{run['mean_psnr_change']:+.2f} dB on average): share of cases brought closer, judged by", "-",
            _f(run.get("improved_teacher"), ".2f"), _f(run["improved_vsi"], ".2f"), _f(run["improved_psnr"], ".2f"))
    if "gradient_cosine" in result.get("loss", {}):
        row(1, "cosine of d score / d dist with dist - ref (median)", _f(result["loss"]["gradient_cosine"]["median"]),
            "-", "-", "1 (MSE)")
    if "stacking" in result:
        st = result["stacking"]
        per = st["per_scorer"]

        def shares(kind: str | None = None) -> list[str]:
            return [_f(per[s]["share"] if kind is None else per[s]["by_second"].get(kind), ".2f") if s in per else "-"
                    for s in columns]

        row(2, f"stacks scored worse than their first part ({st['cases']} cases costing >= {st['min_cost_db']} dB)",
            *shares())
        for kind, count in st["cases_by_second"].items():
            row(2, f"... second distortion: {kind} ({count} cases)", *shares(kind))
        others = [f"{s} {_f(v['share'], '.2f')}" for s, v in per.items() if s not in columns]
        if others:
            row(2, f"... other measures: {', '.join(others)}", "", "", "", "")
    for task, entry in result.get("restoration_alone", {}).items():
        deg, res = entry["degraded"], entry["restored"]
        row(3, f"{task} CNN trained with the loss alone, input -> output (colour cast at most {res['cast_max']:.1f} "
               "/ 255)", "-", f"{deg['teacher']:.3f} -> {res['teacher']:.3f}",
            f"{1 - deg['vsi']:.4f} -> {1 - res['vsi']:.4f}", f"{deg['psnr']:.2f} -> {res['psnr']:.2f} dB")
    if "severity" in result:
        sev = result["severity"]
        row(5, "severity: level pairs ordered", *(_f(sev.get(s, {}).get("pair_accuracy")) for s in columns))
        row(5, "severity: monotone ladders", *(_f(sev.get(s, {}).get("monotone")) for s in columns))
    if "identity" in result:
        row(5, "max abs identical-pair score", _f(result["identity"]["max_abs_identical"], ".2e"), "0", "0", "-")
    if "stability" in result:
        row(5, "stability: max std / range", _f(result["stability"]["max_std_over_range"], ".4f"), "-", "-", "-")
    for key, label in (("teacher_label", "SROCC with the teacher, crops"),
                       ("teacher_label_full_size", "SROCC with the teacher, whole photographs"),
                       ("weak_label", "SROCC with 1 - VSI, crops"),
                       ("weak_label_full_size", "SROCC with 1 - VSI, whole photographs")):
        if key in result:
            entry, target = result[key], "teacher" if key.startswith("teacher") else "vsi"
            row(6, f"{label} (n={entry['model']['n']})",
                *("1" if s == target else _f(entry.get(s, {}).get("srocc")) for s in columns))
    if "tid2013" in result:
        tid = result["tid2013"]
        row(7, f"TID2013 SROCC with MOS (n={tid['model']['n']})", *(_f(tid.get(s, {}).get("srocc")) for s in columns))
    if "seconds_per_pair" in result or "weights_mib" in result:
        row(8, "weights file / in memory (MiB) / CPU seconds per pair",
            f"{_f(result.get('weights_file_mib'), '.1f')} / {_f(result.get('weights_mib'), '.1f')} / "
            f"{_f(result.get('seconds_per_pair'), '.3f')}", "", "", "")
    for task, entry in result.get("partners", {}).items():
        lines += ["", f"Check 4, {task} CNN (held-out means; GMSD lower is better; rank 1 = best):", "",
                  "| trained with | PSNR | FSIM | GMSD | HaarPSI | mean rank |", "|---|---|---|---|---|---|"]
        for variant, v in entry["variants"].items():
            lines.append(f"| {variant} | {v['psnr']:.2f} | {v['fsim']:.4f} | {v['gmsd']:.4f} | {v['haarpsi']:.4f} | "
                         f"{entry['mean_rank'][variant]:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
