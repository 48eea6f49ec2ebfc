#!/usr/bin/env bash
# Reproduce the bundled default model (vtamiq_metric/weights/, registry name in vtamiq_metric/hub.py DEFAULT_MODEL)
# from scratch. Run from the repository root with the package installed (pip install -e ".[train]"). CPU only; see
# examples/bundled_model/README.md for the time each step took.
#
#   PHOTOS=/path/to/photos bash examples/bundled_model/train.sh      # everything
#   PHOTOS=... DATA=/big/disk/bundled RUN=runs/try bash examples/bundled_model/train.sh
#   PHOTOS=... STAGE1=path/to/vsi_student bash examples/bundled_model/train.sh   # skip stage 1 (a trained VSI student)
#
# Two stages. Stage 1 trains the VSI student from scratch (the previous default's recipe, stage "bundled-default").
# Stage 2 adds patch_fidelity and fine-tunes it on the teacher's labels (VSI + S-CIELAB + MS-SSIM) of new KADIS-style
# pairs and of our colour distortions (round 0), then runs ROUNDS model-in-the-loop rounds: images optimised against
# the previous round's model with its loss alone, labelled by the teacher, added to the training data.
#
# Every step resumes where it stopped: rerun the same command after an interruption.
set -euo pipefail

PHOTOS=${PHOTOS:?set PHOTOS to the photograph folder (cq100/, lomiri/, camera-traps/)}
DATA=${DATA:-runs/bundled/data}         # crops, distorted images, labels (~1 GB)
RUN=${RUN:-runs/bundled/run}            # checkpoints, metrics, exports, evaluations
SRC=${SRC:-/tmp/imgsrc}                 # throwaway install of the packages holding the package photographs
SEED=${SEED:-0}
WORKERS=${WORKERS:-2}                   # make-kadis processes
ROUNDS=${ROUNDS:-1}                     # model-in-the-loop rounds after round 0
STAGE1=${STAGE1:-}                      # an existing stage-1 model (skips step 4)
TID2013=${TID2013:-}                    # optional: a folder in TID2013's layout, for the MOS check
ROBUST="python examples/bundled_model/robust.py"

# 1. Package photographs: scikit-image and scikit-learn wheels (not imported, no dependencies needed).
if [ ! -d "$SRC/skimage" ] || [ ! -d "$SRC/sklearn" ]; then
  python -m pip install --no-deps --target "$SRC" scikit-image==0.26.0 scikit-learn==1.9.1
fi
# 2. Reference crops (training sources, held-out crops and photographs) + sources.json.
if [ ! -f "$DATA/sources.json" ]; then
  PYTHONPATH="$SRC" python examples/bundled_model/prepare_data.py --out "$DATA" --photos "$PHOTOS" --seed "$SEED"
fi
# 3. KADIS-style pairs. Held out: every KADID type but denoising and every colour type (26-32) of the held-out crops,
#    labelled with VSI and the teacher (the model card's checks).
vtamiq-train make-kadis --refs "$DATA/heldout/ref_imgs" --out "$DATA/heldout" --seed $((SEED + 1)) \
  --types-per-ref 24 --skip-types 15 --extra-types 26-32 --label vsi,teacher --workers "$WORKERS" --no-progress
mkdir -p "$RUN"
[ -f "$RUN/git_commit.txt" ] || { git rev-parse HEAD; git status --porcelain --untracked-files=no; } > "$RUN/git_commit.txt"
# 4. Stage 1: the VSI student (the previous default's recipe, stage "bundled-default"): 4 KADID types per training
#    crop, VSI labels.
if [ -z "$STAGE1" ]; then
  vtamiq-train make-kadis --refs "$DATA/ref_imgs" --out "$DATA" --seed "$SEED" --types-per-ref 4 --skip-types 15 \
    --workers "$WORKERS" --no-progress
  vtamiq-train train --stage bundled-default --data-root "$DATA" --output "$RUN/stage1" --seed "$SEED" --workers 1 \
    --no-progress --resume
  vtamiq-train export --model "$RUN/stage1" --out "$RUN/stage1/export"
  STAGE1="$RUN/stage1/export"
fi
# Stage 2's pairs: 2 other KADID types and 1 colour type per training crop (a different seed), labelled by the teacher.
vtamiq-train make-kadis --refs "$DATA/ref_imgs" --out "$DATA/stage2" --seed $((SEED + 2)) --types-per-ref 2 \
  --skip-types 15 --extra-types 26-32 --extra-types-per-ref 1 --label teacher --workers "$WORKERS" --no-progress
# 5. Stage 2: grow (patch_fidelity), then round 0 on the teacher's labels and ROUNDS model-in-the-loop rounds.
[ -f "$RUN/grown/model.safetensors" ] || $ROBUST grow --model "$STAGE1" --out "$RUN/grown" --set patch_fidelity=true
# Round r >= 1 adds pairs optimised against the model round r - 1 started from (round 1: the grown stage-1 model;
# round 2: round 0's; ...), so that a round's adversarial set can be generated while the previous round trains.
previous="$RUN/grown"
attacked="$RUN/grown"
adversarial=()
for round in $(seq 0 "$ROUNDS"); do
  if [ "$round" -gt 0 ]; then
    [ -f "$DATA/adversarial$round/adversarial.csv" ] || $ROBUST adversarial --model "$attacked" \
      --refs "$DATA/ref_imgs" --out "$DATA/adversarial$round" --seed "$round"
    adversarial+=("$DATA/adversarial$round")
    attacked="$previous"
  fi
  $ROBUST merge --kadis "$DATA/stage2" --adversarial "${adversarial[@]}" --out "$DATA/round$round.csv"
  # Round 0: the stage's 2 epochs (lr x0.3 after the first); later rounds fine-tune for 1 epoch.
  epochs=$([ "$round" -eq 0 ] && echo 2 || echo 1)
  vtamiq-train train --stage bundled-robust --data-root "$DATA/round$round.csv" --init "$previous" \
    --output "$RUN/round$round" --seed "$SEED" --workers 1 --no-progress --resume --epochs "$epochs"
  [ -f "$RUN/round$round/export/model.safetensors" ] || \
    vtamiq-train export --model "$RUN/round$round" --out "$RUN/round$round/export"
  [ -f "$RUN/round$round/quick.json" ] || python benchmarks/eval_model.py --quick --model "$RUN/round$round/export" \
    --heldout "$DATA/heldout" --train-refs "$DATA/ref_imgs" --output "$RUN/round$round/quick.json"
  previous="$RUN/round$round/export"
done
# 6. Held-out evaluation, then write the weights (with provenance) and the model card into the package.
python benchmarks/eval_model.py --model "$previous" --heldout "$DATA/heldout" --train-refs "$DATA/ref_imgs" \
  ${TID2013:+--tid2013 "$TID2013"} --output "$RUN/eval.json"
python examples/bundled_model/finalize.py --model "$previous" --run "$RUN" --data "$DATA" --eval "$RUN/eval.json"
