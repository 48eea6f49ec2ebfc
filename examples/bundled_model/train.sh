#!/usr/bin/env bash
# Reproduce the bundled default model (vtamiq_metric/weights/vtamiq_tiny_patch16_kadis_photos.safetensors) from
# scratch. Run from the repository root with the package installed (pip install -e ".[train]"). CPU only; about
# 3.5 hours on 2 shared cores (data 10 min, training ~3 h, evaluation ~30 min). See examples/bundled_model/README.md.
#
#   PHOTOS=/path/to/photos bash examples/bundled_model/train.sh      # everything
#   PHOTOS=... DATA=/big/disk/bundled RUN=runs/try bash examples/bundled_model/train.sh
#
# Every step resumes where it stopped: rerun the same command after an interruption.
set -euo pipefail

PHOTOS=${PHOTOS:?set PHOTOS to the photograph folder (cq100/, lomiri/, camera-traps/)}
DATA=${DATA:-runs/bundled/data}         # crops, distorted images, labels (~700 MB)
RUN=${RUN:-runs/bundled/run}            # checkpoints, metrics, export, evaluation
SRC=${SRC:-/tmp/imgsrc}                 # throwaway install of the packages holding the package photographs
SEED=${SEED:-0}
WORKERS=${WORKERS:-2}                   # make-kadis processes
TID2013=${TID2013:-}                    # optional: a folder in TID2013's layout, for the MOS check

# 1. Package photographs: scikit-image and scikit-learn wheels (not imported, no dependencies needed).
if [ ! -d "$SRC/skimage" ] || [ ! -d "$SRC/sklearn" ]; then
  python -m pip install --no-deps --target "$SRC" scikit-image==0.26.0 scikit-learn==1.9.1
fi
# 2. Reference crops (training sources, held-out crops and photographs) + sources.json.
if [ ! -f "$DATA/sources.json" ]; then
  PYTHONPATH="$SRC" python examples/bundled_model/prepare_data.py --out "$DATA" --photos "$PHOTOS" --seed "$SEED"
fi
# 3. KADIS-style pairs with VSI labels: 4 distortion types per training crop, every type for held-out crops.
vtamiq-train make-kadis --refs "$DATA/ref_imgs" --out "$DATA" --seed "$SEED" --types-per-ref 4 --skip-types 15 \
  --workers "$WORKERS" --no-progress
vtamiq-train make-kadis --refs "$DATA/heldout/ref_imgs" --out "$DATA/heldout" --seed $((SEED + 1)) \
  --types-per-ref 24 --skip-types 15 --workers "$WORKERS" --no-progress
# 4. Train (stage "bundled-default" in vtamiq_metric/training/config.py), then export the best epoch.
mkdir -p "$RUN"
[ -f "$RUN/git_commit.txt" ] || { git rev-parse HEAD; git status --porcelain --untracked-files=no; } > "$RUN/git_commit.txt"
vtamiq-train train --stage bundled-default --data-root "$DATA" --output "$RUN" --seed "$SEED" --workers 1 \
  --no-progress --resume
vtamiq-train export --model "$RUN" --out "$RUN/export"
# 5. Held-out evaluation, then write the weights (with provenance) and the model card into the package.
python benchmarks/eval_model.py --model "$RUN/export" --heldout "$DATA/heldout" --train-refs "$DATA/ref_imgs" \
  ${TID2013:+--tid2013 "$TID2013"} --output "$RUN/eval.json"
python examples/bundled_model/finalize.py --model "$RUN/export" --run "$RUN" --data "$DATA" --eval "$RUN/eval.json"
