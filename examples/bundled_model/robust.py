r"""Steps of the bundled model's robust recipe that are not ``vtamiq-train`` commands (see ``train.sh``).

``grow``: a model directory with ``patch_fidelity`` (and any other switch) added to a trained model; the new
parameters start at their initial values and every existing tensor is copied unchanged::

    python examples/bundled_model/robust.py grow --model RUN/stage1/export --out RUN/grown --set patch_fidelity=true

``adversarial``: degraded training crops optimised against a model with its loss alone (Adam on the pixels, as a user
of ``VTAMIQLoss`` would), every snapshot labelled by the teacher (``vtamiq_metric.training.adversarial``)::

    python examples/bundled_model/robust.py adversarial --model RUN/round0/export --refs DATA/ref_imgs \\
        --out DATA/adversarial1 --seed 1

``merge``: one CSV in the ``csv`` data-set format (``ref,dist,score,ref_id,dist_type,level``; score = the teacher's
similarity, higher is better) from ``make-kadis`` folders (their ``teacher`` column) and adversarial folders (each of
their rows ``--adversarial-repeats`` times, 4 by default, so that the few optimised pairs weigh in an epoch)::

    python examples/bundled_model/robust.py merge --kadis DATA DATA/colour --adversarial DATA/adversarial1 \\
        --out DATA/round1.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from pathlib import Path

from vtamiq_metric.hub import load_model
from vtamiq_metric.model.vtamiq import VTAMIQ
from vtamiq_metric.training.adversarial import ADVERSARIAL_CSV, AdversarialSettings, make_adversarial_set
from vtamiq_metric.training.labels.teacher import teacher


def grow(args: argparse.Namespace) -> int:
    model = load_model(str(args.model))
    changes = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"grow: --set expects KEY=JSON, got {item!r}")
        changes[key] = json.loads(value)
    grown = VTAMIQ(model.config.replace(**changes))
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    if unexpected:
        raise ValueError(f"grow: the new config drops trained tensors {unexpected}; only additions are allowed")
    print(f"grow: new tensors {missing}", file=sys.stderr)
    grown.save_pretrained(args.out, provenance={"grown_from": str(args.model), "added": changes,
                                                "parent_provenance": model.provenance})
    return 0


def adversarial(args: argparse.Namespace) -> int:
    model = load_model(str(args.model)).eval()
    refs = sorted(args.refs.glob("*.png"))
    settings = AdversarialSettings(starts=args.starts, crop=args.crop, steps=args.steps,
                                   snapshots=tuple(args.snapshots), lrs=tuple(args.lrs), num_patches=args.patches,
                                   seed=args.seed)
    path = make_adversarial_set(model, refs, args.out, teacher, settings=settings,
                                log=lambda text: print(text, file=sys.stderr))
    print(path)
    return 0


def merge(args: argparse.Namespace) -> int:
    out = args.out.resolve()
    rows: list[list[str]] = []
    for folder in args.kadis:
        with open(folder / "kadis700k_scores.csv", newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                ref = Path(row["ref_img"])
                ref = ref if ref.is_absolute() else folder / ref
                dist = folder / row["dist_img"] if "/" in row["dist_img"] else folder / "dist_imgs" / row["dist_img"]
                rows.append([str(ref.resolve()), str(dist.resolve()), row["teacher"], ref.stem,
                             f"kadis{int(row['dist_type']):02d}", row["dist_level"]])
    for folder in args.adversarial:
        with open(folder / ADVERSARIAL_CSV, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                rows += [[str((folder / row["ref"]).resolve()), str((folder / row["dist"]).resolve()),
                          row["score"], row["ref_id"], row["dist_type"], row["level"]]] * args.adversarial_repeats
    tmp = out.with_name(f".{out.name}.tmp")  # written whole, then renamed: a reader never sees half a file
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ref", "dist", "score", "ref_id", "dist_type", "level"])
        writer.writerows(rows)
    os.replace(tmp, out)
    print(f"merge: {len(rows)} pairs -> {out}", file=sys.stderr)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("grow", help="add switches (new parameters) to a trained model")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="config change, e.g. "
                                                                                  "patch_fidelity=true")
    p.set_defaults(run=grow)
    p = sub.add_parser("adversarial", help="images optimised against a model, labelled by the teacher")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--refs", type=Path, required=True, help="training crops (PNG)")
    p.add_argument("--out", type=Path, required=True)
    defaults = AdversarialSettings()
    p.add_argument("--starts", type=int, default=defaults.starts)
    p.add_argument("--crop", type=int, default=defaults.crop)
    p.add_argument("--steps", type=int, default=defaults.steps)
    p.add_argument("--snapshots", type=int, nargs="+", default=list(defaults.snapshots))
    p.add_argument("--lrs", type=float, nargs="+", default=list(defaults.lrs))
    p.add_argument("--patches", type=int, default=defaults.num_patches)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=adversarial)
    p = sub.add_parser("merge", help="one training CSV from make-kadis and adversarial folders")
    p.add_argument("--kadis", type=Path, nargs="*", default=[])
    p.add_argument("--adversarial", type=Path, nargs="*", default=[])
    p.add_argument("--adversarial-repeats", type=_positive_int, default=4,
                   help="rows per optimised pair: 1,000 of them beside 21,600 KADIS-style pairs would be under 5%% of "
                        "an epoch; repeated 4 times, about 16%% (default: 4)")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(run=merge)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
