"""Write the bundled default model into the package: weights with full provenance, and the model card.

Last step of ``examples/bundled_model/train.sh``::

    python examples/bundled_model/finalize.py --model RUN/export --run RUN --data DATA --eval RUN/eval_heldout.json

Writes ``vtamiq_metric/weights/vtamiq_tiny_patch16.safetensors`` (the model exported by ``vtamiq-train export``,
re-saved with this provenance in its safetensors metadata: seed, commit, data list with licences, training config,
per-epoch validation metrics and the held-out evaluation of ``benchmarks/eval_bundled.py``) and
``vtamiq_metric/weights/MODEL_CARD.md``, then prints the file's sha256 and the registry entry for
``vtamiq_metric/hub.py``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from vtamiq_metric.hub import load_model, save_pretrained, sha256sum

NAME = "vtamiq_tiny_patch16.kadis_synthetic"
FILE_NAME = "vtamiq_tiny_patch16.safetensors"
REPO = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _commit(run: Path) -> tuple[str, bool]:
    """The commit the run was trained from (``<run>/git_commit.txt``, written by train.sh), else the current one."""
    recorded = run / "git_commit.txt"
    if recorded.is_file():
        lines = recorded.read_text().splitlines()
        return lines[0].strip(), any(line.startswith((" M", "M ", "A ", " D")) for line in lines[1:])
    return _git("rev-parse", "HEAD"), bool(_git("status", "--porcelain", "--untracked-files=no"))


def _count_rows(path: Path) -> int:
    with open(path, newline="") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def _heldout_summary(result: dict) -> dict:
    mono = result["monotonic"]
    return {
        "pairs": result["pairs"], "references": result["references"], "patches": result["patches"],
        "srocc": result["srocc"], "krocc": result["krocc"],
        "score_rises_with_strength": mono["score_rises_with_strength"],
        "label_rises_with_strength": mono["label_rises_with_strength"],
        "score_rises_with_level": mono["score_rises_with_level"],
        "label_rises_with_level": mono["label_rises_with_level"],
        "follows_label_order": mono["follows_label_order"],
        "score_rises_where_label_rises": mono["score_rises_where_label_rises"],
        "identical_below_all_distorted": result["identical"]["below_all_distorted"],
        "stability_max_std_over_range": result["stability"]["max_std_over_range"],
        "stability_mean_std_over_range": result["stability"]["mean_std_over_range"],
        "targets": result["targets"],
    }


def _card(provenance: dict, sha: str, eval_result: dict | None) -> str:
    data = provenance["data"]
    rows = "\n".join(
        f"| {s['name']} | {s['package']} {s['version']} `{s['file']}` | {s['licence']} | "
        f"{s['attribution'] or '-'} | {'held out' if s['held_out'] else 'train'} | {s['crops']} |"
        for s in data["sources"])
    epochs = "\n".join(
        f"| {r['epoch']} | {r['train_loss']:.4f} | {r['lr']:.1e} | {r['val_srocc']:.4f} | {r['val_plcc']:.4f} | "
        f"{r['pairs_per_second']:.2f} |" for r in provenance["metrics"]["epochs"])
    held = ""
    if eval_result is not None:
        s = _heldout_summary(eval_result)
        per_type = "\n".join(f"| {k} | {eval_result['srocc_per_type'][k]:.3f} | "
                             f"{v['score_rises_with_strength']:.2f} | {v['label_rises_with_strength']:.2f} | "
                             f"{v['score_rises']:.2f} | "
                             f"{v['follows_label_order']:.2f} |"
                             for k, v in eval_result["monotonic"]["per_type"].items())
        t, stab = s["targets"], eval_result["stability"]
        checks = "\n".join(f"| {label} | {value} | {goal} | {met} |" for label, value, goal, met in (
            ("SROCC vs 1 - VSI", f"{s['srocc']:.4f}", ">= 0.90", t["srocc>=0.90"]),
            ("sequences whose score rises with the distortion strength", f"{s['score_rises_with_strength']:.3f}",
             ">= 0.90", t["monotonic>=0.90"]),
            ("(same for the VSI label itself)", f"{s['label_rises_with_strength']:.3f}", "", ""),
            ("sequences whose score rises with the level number", f"{s['score_rises_with_level']:.3f}", "", ""),
            ("score rises, among sequences whose label rises", f"{s['score_rises_where_label_rises']:.3f}", "", ""),
            ("sequences ordered exactly as their labels", f"{s['follows_label_order']:.3f}", "", ""),
            ("identical pair below every distorted pair of its image", f"{s['identical_below_all_distorted']:.3f}",
             "1.0", t["identical_below_all"]),
            (f"max std over {stab['seeds']} seeds ({stab['patches']} patches) / score range",
             f"{s['stability_max_std_over_range']:.4f}",
             "< 0.05", t["stability_max_std<5%"]),
            (f"mean std over {stab['seeds']} seeds / score range", f"{s['stability_mean_std_over_range']:.4f}",
             "", "")))
        held = f"""
## Held-out evaluation (`benchmarks/eval_bundled.py`)

{s['pairs']} pairs from {s['references']} crops of the three held-out photographs (every type but 15, levels 1-5),
{s['patches']} patches per image, seed 0.

| check | value | target | met |
|---|---|---|---|
{checks}

Strength is the level, except for mean shift (18) and contrast change (25): their level 3 changes nothing and levels
1-2 and 4-5 go in opposite directions, so the score must rise from level 3 outwards on both sides.

| type | SROCC | score rises (strength) | label rises (strength) | score rises (level) | follows label order |
|---|---|---|---|---|---|
{per_type}
"""
    dirty = " (+ uncommitted changes)" if provenance.get("commit_dirty") else ""
    return f"""# {NAME}

The default model of vtamiq-metric: `vtamiq_metric.score(ref, dist)` uses it when no model is named. It ships inside
the package (`vtamiq_metric/weights/{FILE_NAME}`), so it works offline straight after `pip install`.

- **Architecture**: VTAMIQ, preset `vtamiq_tiny_patch16` (ViT width 192, depth 6, 3 heads, patch 16; DiffNet 4x4
  residual channel-attention blocks; 3.8M parameters), trained from scratch (no ImageNet weights).
- **Output**: a distortion score, 0 = identical, higher = worse. It approximates histogram-equalised `1 - VSI`
  on KADIS-style synthetic distortions; it is **not** calibrated to human opinion scores (no human-rated data was
  used) and is much smaller than the paper's ViT-B/16 model. For research-grade numbers use the paper's weights.
- **Licence of the weights**: Apache-2.0. Training images: public domain, CC0 and CC-BY-2.0 photographs (below);
  the CC-BY-2.0 images (scikit-learn's `china.jpg`, `flower.jpg`) are credited here as their licence asks.
- **sha256**: `{sha}`
- **Seed**: {provenance['seed']}; **code**: commit `{provenance['commit']}`{dirty}.

## Training data

{data['train_pairs']} training/validation pairs and {data['heldout_pairs']} held-out pairs, generated by
`examples/bundled_model/prepare_data.py` (deterministic crops: random downscale {data['min_scale']}-1, square sides
{data['sizes']} px, random flips; held-out crops {data['heldout_size']} px) and `vtamiq-train make-kadis` (our Python
port of the KADID-10k distortions, 24 types, denoise skipped, 5 levels; labels VSI). Sources (licences as stated in
each package's own files, see `sources.json` from `prepare_data.py`):

| image | package / file | licence | attribution | use | crops |
|---|---|---|---|---|---|
{rows}

## Training

`examples/bundled_model/train.sh` reproduces this file from scratch (see `examples/bundled_model/README.md`):
stage `bundled-default` of `vtamiq-train` (AdamW, MAE + rank loss, settings in the safetensors metadata), best epoch
by validation SROCC on 10 % of the training references.

| epoch | train loss | lr after the epoch | val SROCC | val PLCC | pairs/s |
|---|---|---|---|---|---|
{epochs}

Best epoch: {provenance['metrics']['best_epoch']}.
{held}
## Limitations

Trained on crops of only {sum(1 for s in data['sources'] if not s['held_out'])} photographs (several grayscale or
textures), with synthetic distortions and a full-reference label (VSI) as the target; expect it to follow VSI-like
behaviour rather than human judgements, and to be less reliable on content far from these photographs.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="exported model directory (vtamiq-train export)")
    parser.add_argument("--run", type=Path, required=True, help="training run folder (config.json, metrics.jsonl)")
    parser.add_argument("--data", type=Path, required=True, help="data folder of prepare_data.py / make-kadis")
    parser.add_argument("--eval", type=Path, help="JSON written by benchmarks/eval_bundled.py --output")
    parser.add_argument("--out-dir", type=Path, default=REPO / "vtamiq_metric" / "weights")
    parser.add_argument("--note", default="", help="free text stored in the provenance (e.g. how the run ended)")
    args = parser.parse_args(argv)

    model = load_model(args.model)
    config = json.loads((args.run / "config.json").read_text())
    epochs = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    best = max(epochs, key=lambda r: r["val_srocc"])
    manifest = json.loads((args.data / "sources.json").read_text())
    commit, dirty = _commit(args.run)
    eval_result = json.loads(args.eval.read_text()) if args.eval else None
    sources = [{k: s[k] for k in ("name", "package", "version", "file", "sha256", "licence", "attribution",
                                  "held_out")} | {"crops": len(s["crops"])} for s in manifest["sources"]]
    provenance = {
        "name": NAME,
        "license": "Apache-2.0",
        "seed": config["seed"],
        "commit": commit,
        "commit_dirty": dirty,
        "data": {
            "generator": "examples/bundled_model/prepare_data.py + vtamiq-train make-kadis (VSI labels)",
            "crop_seed": manifest["seed"], "sizes": manifest["sizes"], "heldout_size": manifest["heldout_size"],
            "min_scale": manifest["min_scale"], "sources": sources,
            "train_pairs": _count_rows(args.data / "kadis700k_scores.csv"),
            "heldout_pairs": _count_rows(args.data / "heldout" / "kadis700k_scores.csv"),
        },
        "training_config": {k: v for k, v in config.items() if k not in ("data_root", "output", "progress")},
        "metrics": {"best_epoch": best["epoch"], "val": {k: v for k, v in best.items() if k.startswith("val_")},
                    "epochs": epochs, "heldout": _heldout_summary(eval_result) if eval_result else None},
    }
    if args.note:
        provenance["note"] = args.note
    model.provenance = {}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, provenance=provenance)
        target = args.out_dir / FILE_NAME
        shutil.copyfile(Path(tmp) / "model.safetensors", target)
    sha = sha256sum(target)
    (args.out_dir / "MODEL_CARD.md").write_text(_card(provenance, sha, eval_result))
    print(f"wrote {target} ({target.stat().st_size / 2**20:.1f} MiB) and {args.out_dir / 'MODEL_CARD.md'}")
    print(f"""
PRETRAINED entry for vtamiq_metric/hub.py:

    "{NAME}": PretrainedCfg(
        name="{NAME}",
        sha256="{sha}",
        license="Apache-2.0",
        bundled_path="weights/{FILE_NAME}",
        notes="VTAMIQ tiny (3.8M params) trained from scratch on KADIS-style synthetic distortions (VSI labels) of "
              "public-domain/CC0/CC-BY photographs from scikit-image and scikit-learn; see weights/MODEL_CARD.md",
        tags=("bundled", "default"),
    ),

DEFAULT_MODEL = "{NAME}"
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
