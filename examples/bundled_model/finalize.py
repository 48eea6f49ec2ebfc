"""Write the bundled default model into the package: weights with full provenance, and the model card.

Last step of ``examples/bundled_model/train.sh``::

    python examples/bundled_model/finalize.py --model RUN/round2/export --run RUN --data DATA --eval RUN/eval.json

Writes ``vtamiq_metric/weights/vtamiq_tiny_patch16_kadis_photos_robust.safetensors`` (the last round's model exported
by ``vtamiq-train export``, re-saved with this provenance in its safetensors metadata: seed, commit, the teacher, the
data list with licences and authors, stage 1's training, every round's training config, per-epoch validation metrics
and quick evaluation, and the held-out figures of ``benchmarks/eval_model.py``) and
``vtamiq_metric/weights/MODEL_CARD.md``, then prints the file's sha256 and the registry entry for
``vtamiq_metric/hub.py``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from vtamiq_metric import VTAMIQ
from vtamiq_metric.hub import AUTHORS_REPOSITORY_URL, AUTHORS_WEIGHTS_URL, load_model, save_pretrained, sha256sum
from vtamiq_metric.training.adversarial import ADVERSARIAL_CSV
from vtamiq_metric.training.datasets.kadis700k import KADIS_SCORES_FILE
from vtamiq_metric.training.labels.teacher import SAMPLES_PER_DEGREE, SPREADS

NAME = "vtamiq_tiny_patch16.kadis_photos_robust"
FILE_NAME = "vtamiq_tiny_patch16_kadis_photos_robust.safetensors"
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
    return _current_commit()


def _current_commit() -> tuple[str, bool]:
    """The checked-out commit and whether tracked files differ from it."""
    return _git("rev-parse", "HEAD"), bool(_git("status", "--porcelain", "--untracked-files=no"))


def _replace(target: Path, write: Callable[[Path], object]) -> None:
    """Write ``target`` through a temporary sibling and a rename: it is replaced whole or not at all."""
    partial = target.with_name(f".{target.name}.partial")
    write(partial)
    os.replace(partial, target)


def _count_rows(path: Path) -> int:
    with open(path, newline="") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


_COLUMNS = ("model", "teacher", "vsi", "psnr")


def _heldout_summary(result: dict) -> dict:
    """The headline figures of ``benchmarks/eval_model.py``'s JSON, for the provenance metadata (what it holds)."""
    out: dict = {}

    def srocc(entry: dict) -> dict:
        return {k: v["srocc"] for k, v in entry.items() if isinstance(v, dict) and "srocc" in v}

    if "severity" in result:
        out["severity_pair_accuracy"] = {k: v["pair_accuracy"] for k, v in result["severity"].items()}
        out["severity_monotone"] = {k: v["monotone"] for k, v in result["severity"].items()}
    for key, name in (("weak_label", "srocc_vs_1_minus_vsi"),
                      ("weak_label_full_size", "srocc_vs_1_minus_vsi_full_size"),
                      ("teacher_label", "srocc_vs_teacher"), ("teacher_label_full_size", "srocc_vs_teacher_full_size")):
        if key in result:
            out[name] = srocc(result[key])
    if "identity" in result:
        out.update({"max_abs_identical": result["identity"]["max_abs_identical"],
                    "min_score": result["identity"]["min_score"],
                    "identical_below_all_distorted": result["identity"]["below_all_distorted"]})
    if "stability" in result:
        out["stability_max_std_over_range"] = result["stability"]["max_std_over_range"]
    loss = result.get("loss", {})
    if "gradient_cosine" in loss:
        out["gradient_cosine_median"] = loss["gradient_cosine"]["median"]
    if "pixel_optimisation" in loss:
        out["pixel_optimisation"] = {lr: {k: v for k, v in run.items() if not isinstance(v, list)}
                                     for lr, run in loss["pixel_optimisation"].items()}
    if loss.get("restoration"):
        out["restoration"] = {task: {k: v[k] for k in ("vsi_gain", "psnr_change", "l1", "l1+vtamiq", "degraded")}
                              for task, v in loss["restoration"].items()}
    if "stacking" in result:
        out["stacking"] = {k: {"share": v["share"], "by_second": v["by_second"]}
                           for k, v in result["stacking"]["per_scorer"].items()} | {
            "cases": result["stacking"]["cases"]}
    if "restoration_alone" in result:
        out["restoration_alone"] = {task: {k: v[k] for k in ("degraded", "restored", "psnr_change", "teacher_change")}
                                    for task, v in result["restoration_alone"].items()}
    if "partners" in result:
        out["partners"] = {task: {"variants": v["variants"], "mean_rank": v["mean_rank"], "best": v["best"]}
                           for task, v in result["partners"].items()}
    if "tid2013" in result:
        out["tid2013_srocc"] = srocc(result["tid2013"])
        if "identity" in result["tid2013"]:
            out["tid2013_identical_below_all_distorted"] = result["tid2013"]["identity"]["below_all_distorted"]
    for key in ("seconds_per_pair", "weights_mib", "weights_file_mib"):
        if key in result:
            out[key] = result[key]
    return out


def _fig(value: object, spec: str = ".3f") -> str:
    """A figure of the card ('-' where there is none)."""
    return "-" if value is None or isinstance(value, str) else format(float(value), spec)


def _row(label: str, cells: tuple[str, ...] | list[str], goal: str) -> str:
    return f"| {label} | {' | '.join(cells)} | {goal} |"


def _loss_rows(result: dict) -> list[str]:
    """Check 1: pixel optimisation with the loss alone, and the gradient's direction."""
    loss, rows = result.get("loss", {}), []
    for lr, run in loss.get("pixel_optimisation", {}).items():
        cases = run.get("pairs", len(run.get("psnr_before", [])) or "?")
        rows.append(_row(f"1. pixels optimised with the loss alone (Adam lr {lr}, {run['steps']} steps, {cases} "
                         f"blurred, noisy and JPEG crops; PSNR {run['mean_psnr_change']:+.2f} dB on average): share "
                         "of cases brought closer to the reference, judged by",
                         ("-", _fig(run.get("improved_teacher"), ".2f"), _fig(run["improved_vsi"], ".2f"),
                          _fig(run["improved_psnr"], ".2f")),
                         ">= 5/6 by the teacher and PSNR; +1 dB at lr 0.01"))
    if "gradient_cosine" in loss:
        rows.append(_row("1. median cosine of d score / d dist with dist - ref",
                         (_fig(loss["gradient_cosine"]["median"]), "", "", "1 (MSE)"), ">= 0.15"))
    return rows


def _stacking_rows(result: dict) -> list[str]:
    """Check 2: stacked distortions."""
    if "stacking" not in result:
        return []
    st = result["stacking"]
    per = st["per_scorer"]

    def shares(kind: str | None = None) -> list[str]:
        return [_fig(per[s]["share"] if kind is None else per[s]["by_second"].get(kind), ".2f") if s in per else "-"
                for s in _COLUMNS]

    headline = [_fig(per[s]["share"], ".3f") if s in per else "-" for s in _COLUMNS]  # 0.949 is not 0.95
    rows = [_row(f"2. a second distortion raises the score ({st['cases']} stacks of {st['photos']} photographs "
                 f"costing >= {st['min_cost_db']:g} dB)", headline, ">= 0.95")]
    rows += [_row(f"2. ... second distortion {kind} ({count} stacks)", shares(kind), "")
             for kind, count in st["cases_by_second"].items()]
    others = ", ".join(f"{s} {_fig(v['share'], '.2f')}" for s, v in per.items() if s not in _COLUMNS)
    if others:
        rows.append(_row(f"2. ... other measures: {others}", ("", "", "", ""), ""))
    return rows


def _alone_rows(result: dict) -> list[str]:
    """Check 3: a restoration CNN trained with the loss alone."""
    rows = []
    for task, v in result.get("restoration_alone", {}).items():
        deg, res = v["degraded"], v["restored"]
        rows.append(_row(f"3. {task} CNN trained with the loss alone ({v['steps']} steps): input -> output; colour "
                         f"cast of the outputs at most {res['cast_max']:.1f} / 255",
                         ("-", f"{deg['teacher']:.3f} -> {res['teacher']:.3f}",
                          f"{1 - deg['vsi']:.4f} -> {1 - res['vsi']:.4f}", f"{deg['psnr']:.2f} -> {res['psnr']:.2f}"),
                         "PSNR up, teacher down, cast <= 2/255"))
    return rows


def _score_rows(result: dict) -> list[str]:
    """Checks 5-8: identity, severity, stability, agreement with the teacher and VSI, people, size and speed."""
    rows = []
    if "identity" in result:
        ident = result["identity"]
        rows += [_row("5. largest abs score of an identical pair", (_fig(ident["max_abs_identical"], ".1e"), "0", "0",
                                                                    "-"), "<= 1e-3"),
                 _row("5. lowest score of any pair (identical ones included)", (_fig(ident["min_score"], ".1e"), "", "",
                                                                                 ""), ">= 0"),
                 _row("5. identical pair below every distorted pair of its image",
                      (_fig(ident["below_all_distorted"], ".2f"), "", "", ""), "1")]
    if "severity" in result:
        sev = result["severity"]
        rows += [_row("5. level pairs of the severity ladders ordered correctly",
                      [_fig(sev.get(s, {}).get("pair_accuracy"), ".4f") for s in _COLUMNS], ">= 0.99"),
                 _row("5. severity ladders fully monotone", [_fig(sev.get(s, {}).get("monotone")) for s in _COLUMNS],
                      "")]
    if "stability" in result:
        stab = result["stability"]
        rows.append(_row(f"5. std over {stab['seeds']} seeds ({stab['patches']} patches) / score range, max",
                         (_fig(stab["max_std_over_range"], ".4f"), "", "", ""), "<= 0.05"))
    for key, label, goal in (
            ("teacher_label", "SROCC with the teacher (KADIS-style held-out crops)", ">= 0.93"),
            ("teacher_label_full_size", "SROCC with the teacher (whole held-out photographs, every type, levels 2, 4)",
             ">= 0.90"),
            ("weak_label", "SROCC with 1 - VSI (KADIS-style held-out crops)", ""),
            ("weak_label_full_size", "SROCC with 1 - VSI (whole held-out photographs)", "")):
        if key in result:
            entry, target = result[key], "teacher" if key.startswith("teacher") else "vsi"
            cells = ["1" if s == target else _fig(entry.get(s, {}).get("srocc"), ".4f") for s in _COLUMNS]
            rows.append(_row(f"6. {label}, {entry['model']['n']} pairs", cells, goal))
    if "tid2013" in result:
        tid = result["tid2013"]
        rows.append(_row(f"7. SROCC with MOS, {tid['model']['n']} TID2013 pairs",
                         [_fig(tid.get(s, {}).get("srocc"), ".4f") for s in _COLUMNS], ">= 0.70"))
        if "identity" in tid:
            rows.append(_row("7. TID2013: identical pair below every distorted pair of its image",
                             (_fig(tid["identity"]["below_all_distorted"], ".2f"), "", "", ""), "1"))
    if "weights_file_mib" in result or "weights_mib" in result:
        size = result.get("weights_file_mib", result.get("weights_mib"))
        what = "file" if "weights_file_mib" in result else "in memory"
        rows.append(_row(f"8. weights ({what}, MiB)", (_fig(size, ".1f"), "", "", ""), "<= 19.07 MiB (20 MB)"))
    if "seconds_per_pair" in result:
        rows.append(_row(f"8. CPU seconds per pair at the defaults ({result.get('threads', '?')} threads)",
                         (_fig(result["seconds_per_pair"]), "", "", ""), "not slower"))
    if "speed" in result:
        speed = result["speed"]
        rows.append(_row(f"8. time per pair / the previous default model's, same run ({speed['pairs']})",
                         (_fig(speed["ratio"], ".2f"), "", "", ""), "<= 1"))
    return rows


def _partner_section(result: dict) -> str:
    """Check 4: the loss as a partner of L1, beside the partners a user would pick."""
    parts = []
    for task, v in result.get("partners", {}).items():
        lines = "\n".join(
            f"| {variant} | {m['psnr']:.2f} | {m['fsim']:.4f} | {m['gmsd']:.4f} | {m['haarpsi']:.4f} | "
            f"{v['mean_rank'][variant]:.2f} |" for variant, m in v["variants"].items())
        deg = v["degraded"]
        parts.append(f"""
**4. With L1, beside the partners a user would pick** ({task}: {v['degradation'][0]} {v['degradation'][1]}). The
same 5-layer residual CNN, initial weights, {v['crop']} px training crops, degradations and {v['steps']} Adam steps for
each objective; the second term weighted so that both start equal; 1 - MS-SSIM with {v['ms_ssim_scales']} scales (as
many as the crop allows). Held-out means of measures none of them trains on (GMSD: lower is better); the mean rank is
over FSIM, GMSD and HaarPSI (target: `l1+vtamiq` first, PSNR no lower than `l1+ms_ssim`'s minus 0.5 dB). Degraded
input: PSNR {deg['psnr']:.2f}, FSIM {deg['fsim']:.4f}, GMSD {deg['gmsd']:.4f}, HaarPSI {deg['haarpsi']:.4f}.

| trained with | PSNR | FSIM | GMSD | HaarPSI | mean rank |
|---|---|---|---|---|---|
{lines}
""")
    return "".join(parts)


def _legacy_restoration_section(result: dict) -> str:
    """The L1 against L1 + VTAMIQLoss table of evaluations made before check 4 existed."""
    restoration = result.get("loss", {}).get("restoration")
    if not restoration:
        return ""
    lines = "\n".join(
        f"| {task} ({v['degradation'][0]} {v['degradation'][1]}) | {v['degraded']['psnr']:.2f} / "
        f"{v['degraded']['vsi']:.4f} | {v['l1']['psnr']:.2f} / {v['l1']['vsi']:.4f} | "
        f"{v['l1+vtamiq']['psnr']:.2f} / {v['l1+vtamiq']['vsi']:.4f} | {v['vsi_gain']:+.4f} | "
        f"{v['psnr_change']:+.2f} |"
        for task, v in restoration.items())
    steps = next(iter(restoration.values()))["steps"]
    return f"""
**The loss in training.** A 5-layer residual CNN trained for {steps} Adam steps on 64 px crops of the training
photographs, once with L1 and once with L1 + `VTAMIQLoss` (64 patches, weighted so both terms start equal), same
initial weights, crops and degradations; PSNR (dB) / VSI on centre crops of the held-out photographs (targets: VSI
higher with the loss, PSNR at most 0.5 dB lower):

| task | degraded input | L1 | L1 + VTAMIQLoss | VSI gain | PSNR change |
|---|---|---|---|---|---|
{lines}
"""


def _evaluation_section(result: dict) -> str:
    """The card's held-out section: every check the evaluation JSON holds (issue 20's numbering), none required."""
    rows = _loss_rows(result) + _stacking_rows(result) + _alone_rows(result) + _score_rows(result)
    sev = result.get("severity", {})
    families = ""
    if "model" in sev:
        lines = "\n".join(f"| {family} | " + " | ".join(
            _fig(sev[s]["per_family"][family]["pair_accuracy"]) if s in sev else "-" for s in _COLUMNS) + " |"
            for family in sev["model"]["per_family"])
        families = f"""
Level pairs ordered correctly, per ladder (`vtamiq_metric.training.acceptance.LADDERS`):

| ladder | model | teacher | VSI | PSNR |
|---|---|---|---|---|
{lines}
"""
    quick = " **Quick run** (`--quick`: checks 1-3 on a subset)." if result.get("quick") else ""
    crops = (f" and {result['weak_label']['model']['n']} KADIS-style pairs of crops of them"
             if "weak_label" in result else "")
    table = f"""
| check | model | teacher | VSI | PSNR | target |
|---|---|---|---|---|---|
{chr(10).join(rows)}
""" if rows else ""
    return f"""
## Held-out evaluation (`benchmarks/eval_model.py`)

On photographs the model never saw: {result['heldout_photos']} held-out photographs{crops}; `score()` defaults
({result['patches']} patches, seed 0).{quick} The teacher (the distortion `D` of
`vtamiq_metric.training.labels.teacher`), VSI and PSNR are scored as distortions (D, 1 - VSI, -PSNR) so that every
column reads the same way; the numbers are issue 20's checks.
{table}{_partner_section(result)}{_legacy_restoration_section(result)}{families}"""


def _epoch_rows(epochs: list[dict]) -> str:
    return "\n".join(
        f"| {r['epoch']} | {r['train_loss']:.4f} | {r['lr']:.1e} | {r['val_srocc']:.4f} | {r['val_plcc']:.4f} | "
        f"{r['pairs_per_second']:.2f} |" for r in epochs)


def _round_rows(rounds: list[dict], heldout: dict | None) -> str:
    """One line per round: its data, its validation and what it did to checks 1-3 (its quick evaluation; for a last
    round without one, the full evaluation's, marked)."""
    lines = []
    for r in rounds:
        quick = r.get("quick") or {}
        label = str(r["round"])
        if not quick and r is rounds[-1] and heldout:
            quick, label = heldout, f"{r['round']} (full evaluation)"
        pixel = quick.get("pixel_optimisation", {})
        pix = {lr: "-" if lr not in pixel else (
            f"{pixel[lr]['improved_psnr'] * pixel[lr].get('pairs', 6):.0f}/{pixel[lr].get('pairs', 6)}, "
            f"{pixel[lr]['mean_psnr_change']:+.2f} dB") for lr in ("0.05", "0.01")}

        stack = quick.get("stacking", {}).get("model", {}).get("share")
        alone = quick.get("restoration_alone", {})
        tasks = "; ".join(f"{task} {v['degraded']['psnr']:.1f} -> {v['restored']['psnr']:.1f} dB"
                          for task, v in alone.items()) or "-"
        lines.append(f"| {label} | {r['pairs']} ({r['adversarial_pairs']} optimised) | {r['best_epoch']} | "
                     f"{r['val'].get('val_srocc', float('nan')):.4f} | {pix['0.05']} | {pix['0.01']} | "
                     f"{_fig(stack, '.2f')} | {tasks} |")
    return "\n".join(lines)


def _card(provenance: dict, sha: str, eval_result: dict | None, size_mib: float, config: dict) -> str:
    data = provenance["data"]
    by_set: dict[str, list[dict]] = {}
    for s in data["sources"]:
        by_set.setdefault(s["package"], []).append(s)
    sets = "\n".join(
        f"| {name} | {sum(not s['held_out'] for s in items)} / {sum(s['held_out'] for s in items)} | "
        f"{', '.join(sorted({s['licence'] for s in items}))} |" for name, items in by_set.items())
    rows = "\n".join(
        f"| {s['name']} | `{s['file']}` | {s['licence']} | {s['attribution'] or '-'} | "
        f"{'held out' if s['held_out'] else 'train'} | {s['crops']} |" for s in data["sources"])
    held = _evaluation_section(eval_result) if eval_result is not None else ""
    dirty = " (+ uncommitted changes)" if provenance.get("commit_dirty") else ""
    teacher = provenance["teacher"]
    spreads = teacher["spreads"]
    stage1 = provenance["stage1"]
    cfg1, cfg = stage1.get("training_config", {}), provenance["training_config"]
    stage1_epochs = stage1.get("metrics", {}).get("epochs", [])
    rounds = provenance["rounds"]
    return f"""# {NAME}

The default model of vtamiq-metric: `vtamiq_metric.score(ref, dist)` and `VTAMIQLoss()` use it when no model is
named. It ships inside the package (`vtamiq_metric/weights/{FILE_NAME}`, {size_mib:.1f} MiB), so it works offline
straight after `pip install`.

- **Architecture**: VTAMIQ, preset `vtamiq_tiny_patch16` (ViT width 192, depth 6, 3 heads, patch 16; DiffNet 4x4
  residual channel-attention blocks; 3.8M parameters), trained from scratch (no ImageNet weights), with this
  package's three options: `zero_identity` (the head scores `|head(diff) - head(0)|`, and identical patch sets score
  exactly 0), `token_distance` (an LPIPS-like distance between the aligned patch tokens of every layer, added to the
  score; `vtamiq_metric/model/distance.py`) and `patch_fidelity` (an SSIM-like colour term on the sampled patches
  in an opponent colour space, with three learned weights; `vtamiq_metric/model/fidelity.py`), so that a colour
  cast or lost contrast costs something the optimiser cannot trade away.{_viewing_note(config, provenance)}
- **Output**: a distortion score, 0 = identical, never negative, higher = worse. It approximates the teacher below
  on KADIS-style synthetic distortions, colour casts and images optimised against earlier versions of itself; it is
  **not** calibrated to human opinion scores (no human-rated data was used) and is much smaller than the paper's
  ViT-B/16 model. For research-grade numbers use the paper's weights: the authors' KADIS-700k checkpoint
  `vtamiq_kadis700k.pth`, linked from the README of {AUTHORS_REPOSITORY_URL} and downloaded from
  {AUTHORS_WEIGHTS_URL}; pass the file as it is,
  `load_model("vtamiq_kadis700k.pth")` or `vtamiq score --model vtamiq_kadis700k.pth` (converted once, then cached).
- **Licence of the weights**: Apache-2.0. The training photographs carry their own licences (below: public domain,
  CC0, CC BY, CC BY-SA, CDLA-Permissive-1.0); their authors are credited here as those licences ask.
- **sha256**: `{sha}`
- **Seed**: {provenance['seed']}; **code**: commit `{provenance['commit']}`{dirty}.

## The teacher

No single full-reference measure is safe to imitate: VSI barely sees colour casts, a colour difference misses blur,
a structural index misses hue. The labels of stage 2 come from their sum, each divided by its spread (its standard
deviation over KADIS-style pairs of the training crops, `SPREADS` of `vtamiq_metric.training.labels.teacher`), so that
each counts equally on typical distortions:

    D = (1 - VSI) / {spreads['vsi']} + S-CIELAB mean CIEDE2000 / {spreads['scielab']}
        + (1 - MS-SSIM) / {spreads['ms_ssim']}

VSI (Zhang et al. 2014, this package's port), S-CIELAB (Zhang & Wandell 1997: opponent-colour spatial filtering
at {teacher['samples_per_degree']:g} samples per degree, then CIEDE2000 from scikit-image) and MS-SSIM (Wang et al.
2003; equal to piq's to 1e-12), all at the viewing distance of VSI's reference code (images downscaled to about
256 px first). The training label is the similarity `1 / (1 + D)`. On the 12 TID2013 pairs of the project's fragment
its SROCC with MOS is 0.839 (VSI 0.825, S-CIELAB 0.573, MS-SSIM 0.594).

## Training data

Stage 1: {stage1.get('data', {}).get('train_pairs', '-')} KADIS-style pairs of the training crops (4 of the 24
KADID types per crop, denoise skipped, VSI labels). Stage 2: {data['stage2_pairs']} new KADIS-style pairs of the
same crops (another seed; 2 KADID types and 1 colour type per crop: white-balance and per-channel gain casts,
hue rotation, and stacks: noise then a gain cast, JPEG then a white-balance cast, lens blur then JPEG or noise;
types 26-32 of `vtamiq_metric.training.distortions`), labelled by the teacher, plus
{sum(data['adversarial_pairs'].values())} images optimised against the model (below). {data['heldout_pairs']}
held-out pairs of crops of the held-out photographs (every type, VSI and teacher labels) serve the checks. All are
generated by `examples/bundled_model/prepare_data.py` (photographs longer than {data.get('max_side', '-')} px
downscaled first; deterministic crops: random downscale {data['min_scale']}-1, square sides {data['sizes']} px,
random flips; held-out crops {data['heldout_size']} px) and `vtamiq-train make-kadis` (our Python port of the
KADID-10k distortions). Held-out photographs never reach training.

| image set | photographs (train / held out) | licences |
|---|---|---|
{sets}

Every photograph, its licence and its author (as stated by its source: scikit-image docstrings, scikit-learn's
README, CQ100's `metadata.csv`, Debian's copyright files, the camera-trap README):

| image | file | licence | author / attribution | use | crops |
|---|---|---|---|---|---|
{rows}

## Training

`examples/bundled_model/train.sh` reproduces this file from scratch (see `examples/bundled_model/README.md`).

**Stage 1, a student of VSI** (stage `bundled-default` of `vtamiq-train`, the previous default model's recipe): AdamW
lr {cfg1.get('lr', '-')} (x{cfg1.get('lr_gamma', '-')} at epochs {cfg1.get('lr_milestones', '-')}),
{cfg1.get('epochs', '-')} epochs, batch {cfg1.get('batch_size', '-')}, MAE + rank loss on histogram-equalised
`1 - VSI`.

| epoch | train loss | lr after the epoch | val SROCC | val PLCC | pairs/s |
|---|---|---|---|---|---|
{_epoch_rows(stage1_epochs)}

**Stage 2, a robust student of the teacher** (stage `bundled-robust`): `patch_fidelity` added to the stage-1 model
(its three weights start at softplus(0)), then rounds of AdamW lr {cfg['lr']} (x{cfg['lr_gamma']} at epochs
{cfg['lr_milestones']}), {cfg['epochs']} epochs, batch {cfg['batch_size']}, {cfg['train_patches']} patches per
image, MAE + rank loss on the teacher's similarity, precision {cfg['precision']}, each round starting from the
previous one. Round r >= 1 adds images optimised against the model round r - 1 started from: degraded training crops
(a KADIS type or a blur, noise or JPEG level), Adam at lr 0.05 on their pixels with the model's loss alone,
snapshots after 10, 25 and 40 steps, each labelled by the teacher
(`vtamiq_metric.training.adversarial.make_adversarial_set`). Each round was measured on checks 1-3
(`eval_model.py --quick`, on a subset of the held-out photographs) before the next. Check 1: PSNR raised in how
many cases, and the mean change; check 2: share of stacks scored worse than their first part; check 3: PSNR of the
degraded input and of the CNN trained with the loss alone:

| round | training pairs | best epoch | val SROCC | check 1, lr 0.05 | check 1, lr 0.01 | check 2 | check 3 |
|---|---|---|---|---|---|---|---|
{_round_rows(rounds, provenance['metrics'].get('heldout'))}

Epochs of the last round:

| epoch | train loss | lr after the epoch | val SROCC | val PLCC | pairs/s |
|---|---|---|---|---|---|
{_epoch_rows(provenance['metrics']['epochs'])}

Best epoch: {provenance['metrics']['best_epoch']}.{_note(provenance)}
{held}
## Limitations

Trained on crops of {sum(1 for s in data['sources'] if not s['held_out'])} photographs with synthetic distortions
and a combination of full-reference measures as the target: expect the teacher's behaviour rather than human
judgements, and less reliability on content far from these photographs. As a loss on its own it is safe at the step
sizes measured above, not at any step size; pair it with L1 for training (README, "As a loss"). The TID2013 figure
above uses only 12 pairs.
"""


def _note(provenance: dict) -> str:
    """The run's free-text note (``--note``), as a paragraph of the card."""
    return f"\n\n**How this run went.** {provenance['note']}" if provenance.get("note") else ""


def _viewing_note(config: dict, provenance: dict) -> str:
    """The card's line on ``downsample_side`` (empty when the model has none)."""
    side = config.get("downsample_side")
    if side is None:
        return ""
    refreshed = [r for r in provenance.get("refreshed", []) if "downsample_side" in r.get("config", {})]
    when = (f" It was switched on after training (commit `{refreshed[-1]['commit']}`; no tensor changed, and "
            "images shorter than that are scored exactly as before)." if refreshed else "")
    return f"""
- **Viewing distance** (`downsample_side={side}`): an image whose shorter side is at least {int(1.5 * side)} px is
  scored through `F x F` block averages, `F = round(min(H, W) / {side})`, the rule VSI applies before computing its
  label; the training crops are shorter, so this shows large images to the model at the scale of its labels.{when}"""


def _write_card(out_dir: Path, provenance: dict, eval_result: dict | None) -> str:
    """Write ``MODEL_CARD.md`` for the weights file in ``out_dir``; returns the file's sha256."""
    target = out_dir / FILE_NAME
    sha = sha256sum(target)
    size_mib = target.stat().st_size / 2**20
    config = load_model(target).config.to_dict()
    card = _card(provenance, sha, eval_result, size_mib, config)
    _replace(out_dir / "MODEL_CARD.md", lambda partial: partial.write_text(card, encoding="utf-8"))
    print(f"wrote {out_dir / 'MODEL_CARD.md'} for {target} ({size_mib:.1f} MiB, sha256 {sha})")
    return sha


def _run_metrics(folder: Path) -> tuple[dict, list[dict], dict]:
    """``(config, epochs, best epoch)`` of a ``vtamiq-train train`` output folder."""
    config = json.loads((folder / "config.json").read_text())
    epochs = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if not epochs:
        raise SystemExit(f"finalize.py: {folder / 'metrics.jsonl'} holds no epoch")
    return config, epochs, max(epochs, key=lambda r: r["val_srocc"])


def _rounds(run: Path, data: Path) -> list[dict]:
    """Every ``<run>/round<r>/`` folder of train.sh: its data, training figures and quick evaluation."""
    folders = sorted((f for f in run.glob("round*") if f.name[5:].isdigit() and (f / "metrics.jsonl").is_file()),
                     key=lambda f: int(f.name[5:]))
    if not folders:
        raise SystemExit(f"finalize.py: no trained round under {run} (expected round0/, round1/, ... of train.sh)")
    rounds = []
    for folder in folders:
        index = int(folder.name[5:])
        config, epochs, best = _run_metrics(folder)
        adversarial = sum(_count_rows(data / f"adversarial{r}" / ADVERSARIAL_CSV) for r in range(1, index + 1))
        quick = folder / "quick.json"
        rounds.append({"round": index, "pairs": _count_rows(Path(config["data_root"])),
                       "adversarial_pairs": adversarial,
                       "training_config": _config_record(config), "epochs": epochs, "best_epoch": best["epoch"],
                       "val": {k: v for k, v in best.items() if k.startswith("val_")},
                       "quick": _heldout_summary(json.loads(quick.read_text())) if quick.is_file() else None})
    return rounds


def _config_record(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("data_root", "output", "progress")}


def _provenance(run: Path, data: Path, eval_result: dict | None) -> dict:
    """What the weights file records: seed, commit, teacher, data with licences, both stages, every round."""
    rounds = _rounds(run, data)
    last = rounds[-1]
    grown = load_model(run / "grown").provenance
    stage1 = grown.get("parent_provenance", {})
    manifest = json.loads((data / "sources.json").read_text())
    commit, dirty = _commit(run)
    sources = [{k: s.get(k) for k in ("name", "origin", "package", "version", "file", "sha256", "licence",
                                      "attribution", "held_out")} | {"crops": len(s["crops"])}
               for s in manifest["sources"]]
    return {
        "name": NAME,
        "license": "Apache-2.0",
        "seed": last["training_config"]["seed"],
        "commit": commit,
        "commit_dirty": dirty,
        "teacher": {"distortion": "(1 - VSI) / spreads.vsi + S-CIELAB mean CIEDE2000 / spreads.scielab "
                                  "+ (1 - MS-SSIM) / spreads.ms_ssim",
                    "label": "1 / (1 + D)", "spreads": dict(SPREADS), "samples_per_degree": SAMPLES_PER_DEGREE},
        "data": {
            "generator": "examples/bundled_model/prepare_data.py + vtamiq-train make-kadis (teacher labels) + "
                         "examples/bundled_model/robust.py adversarial",
            "crop_seed": manifest["seed"], "sizes": manifest["sizes"], "heldout_size": manifest["heldout_size"],
            "min_scale": manifest["min_scale"], "max_side": manifest.get("max_side"), "sources": sources,
            "stage2_pairs": _count_rows(data / "stage2" / KADIS_SCORES_FILE),
            "adversarial_pairs": {f.parent.name: _count_rows(f)
                                  for f in sorted(data.glob(f"adversarial*/{ADVERSARIAL_CSV}"))},
            "heldout_pairs": _count_rows(data / "heldout" / KADIS_SCORES_FILE),
        },
        "stage1": {k: stage1.get(k) for k in ("commit", "seed", "training_config", "metrics") if k in stage1}
                  | {"data": {k: v for k, v in stage1.get("data", {}).items() if k != "sources"}},
        "grown": {"added": grown.get("added")},
        "rounds": rounds,
        "training_config": last["training_config"],
        "metrics": {"best_epoch": last["best_epoch"], "val": last["val"], "epochs": last["epochs"],
                    "heldout": _heldout_summary(eval_result) if eval_result else None},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="exported model directory (vtamiq-train export)")
    parser.add_argument("--run", type=Path, help="train.sh's RUN folder (grown/, round0/, round1/, ...)")
    parser.add_argument("--data", type=Path, help="data folder of prepare_data.py / make-kadis")
    parser.add_argument("--eval", type=Path, help="JSON written by benchmarks/eval_model.py --output")
    parser.add_argument("--out-dir", type=Path, default=REPO / "vtamiq_metric" / "weights")
    parser.add_argument("--note", default="", help="free text stored in the provenance (e.g. how the run ended)")
    parser.add_argument("--refresh", action="store_true",
                        help="keep the tensors and provenance of the weights file in --out-dir, apply --set-config, "
                             "replace the held-out figures with --eval, re-save it and rewrite MODEL_CARD.md (for a "
                             "config switch that changes no tensor, e.g. downsample_side)")
    parser.add_argument("--set-config", action="append", default=[], metavar="KEY=JSON",
                        help="with --refresh: a VTAMIQConfig field to change, value read as JSON (repeatable)")
    parser.add_argument("--card-only", action="store_true",
                        help="keep the weights file in --out-dir as it is (same sha256) and rewrite only MODEL_CARD.md "
                             "from its provenance metadata and --eval (for an evaluation run after the weights landed)")
    args = parser.parse_args(argv)
    eval_result = json.loads(args.eval.read_text()) if args.eval else None
    target = args.out_dir / FILE_NAME
    if args.card_only:
        provenance = load_model(target).provenance
        _write_card(args.out_dir, provenance, eval_result)
        return 0
    if args.refresh:
        return _refresh(target, args.set_config, eval_result, args.out_dir)
    missing = [f"--{name}" for name in ("model", "run", "data") if getattr(args, name) is None]
    if missing:
        parser.error(f"{', '.join(missing)} required (unless --card-only)")

    model = load_model(args.model)
    provenance = _provenance(args.run, args.data, eval_result)
    if args.note:
        provenance["note"] = args.note
    model.provenance = {}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, provenance=provenance)
        _replace(target, lambda partial: shutil.copyfile(Path(tmp) / "model.safetensors", partial))
    sha = _write_card(args.out_dir, provenance, eval_result)
    _print_entry(sha)
    return 0


def _refresh(target: Path, settings: list[str], eval_result: dict | None, out_dir: Path) -> int:
    """Re-save the bundled weights with config changes that leave every tensor as it is, and new held-out figures."""
    old = load_model(target)
    changes = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"finalize.py: --set-config expects KEY=JSON, got {item!r}")
        changes[key] = json.loads(value)
    model = VTAMIQ(old.config.replace(**changes))
    model.load_state_dict(old.state_dict(), strict=True)  # the switch must not add, drop or reshape a tensor
    provenance = json.loads(json.dumps(old.provenance))
    commit, dirty = _current_commit()
    provenance.setdefault("refreshed", []).append({"commit": commit, "commit_dirty": dirty, "config": changes,
                                                   "tensors": "unchanged"})
    if eval_result is not None:
        provenance["metrics"]["heldout"] = _heldout_summary(eval_result)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, provenance=provenance)
        _replace(target, lambda partial: shutil.copyfile(Path(tmp) / "model.safetensors", partial))
    _print_entry(_write_card(out_dir, provenance, eval_result))
    return 0


def _print_entry(sha: str) -> None:
    print(f"""
PRETRAINED entry for vtamiq_metric/hub.py:

    "{NAME}": PretrainedCfg(
        name="{NAME}",
        sha256="{sha}",
        license="Apache-2.0",
        bundled_path="weights/{FILE_NAME}",
        notes="small VTAMIQ (3.8M parameters, token distance, patch fidelity, zero at identity) trained from "
              "scratch on KADIS-style and colour distortions of permissively licensed photographs and on images "
              "optimised against it, labelled by a teacher (VSI + S-CIELAB + MS-SSIM); not the paper's model and "
              "not calibrated to human scores; see weights/MODEL_CARD.md",
    ),

DEFAULT_MODEL = "{NAME}"
""")


if __name__ == "__main__":
    sys.exit(main())
