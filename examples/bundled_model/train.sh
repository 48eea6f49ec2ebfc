#!/usr/bin/env bash
# Reproduce the bundled default model (vtamiq_metric/weights/vtamiq_tiny_patch16.safetensors) from scratch.
# Run from the repository root with the package installed (pip install -e ".[train]"). CPU only; about 75 min on
# 2 shared cores (data 7.5 min, training 63 min, evaluation 2 min). See examples/bundled_model/README.md.
#
#   bash examples/bundled_model/train.sh            # everything
#   DATA=/big/disk/bundled RUN=runs/try bash examples/bundled_model/train.sh
set -euo pipefail

DATA=${DATA:-runs/bundled/data}         # crops, distorted images, labels (~500 MB)
RUN=${RUN:-runs/bundled/run}            # checkpoints, metrics, export
SRC=${SRC:-/tmp/imgsrc}                 # throwaway install of the packages holding the photographs
SEED=${SEED:-0}
WORKERS=${WORKERS:-2}                   # make-kadis processes

# 1. Photographs: scikit-image and scikit-learn wheels (not imported, no dependencies needed).
if [ ! -d "$SRC/skimage" ] || [ ! -d "$SRC/sklearn" ]; then
  python -m pip install --no-deps --target "$SRC" scikit-image==0.26.0 scikit-learn==1.9.1
fi
# 2. Reference crops (training sources, and held-out sources for evaluation) + sources.json.
PYTHONPATH="$SRC" python examples/bundled_model/prepare_data.py --out "$DATA" --seed "$SEED"
# 3. KADIS-style pairs with VSI labels: 2 distortion types per training crop, every type for held-out crops.
vtamiq-train make-kadis --refs "$DATA/ref_imgs" --out "$DATA" --seed "$SEED" --types-per-ref 2 --skip-types 15 \
  --workers "$WORKERS" --no-progress
vtamiq-train make-kadis --refs "$DATA/heldout/ref_imgs" --out "$DATA/heldout" --seed $((SEED + 1)) \
  --types-per-ref 24 --skip-types 15 --workers "$WORKERS" --no-progress
# 4. Train (stage "bundled-default" in vtamiq_metric/training/config.py), then export the best epoch.
mkdir -p "$RUN" && { git rev-parse HEAD; git status --porcelain --untracked-files=no; } > "$RUN/git_commit.txt"
vtamiq-train train --stage bundled-default --data-root "$DATA" --output "$RUN" --seed "$SEED" --workers 1 \
  --no-progress
vtamiq-train export --checkpoint "$RUN" --out "$RUN/export"
# 5. Held-out evaluation, then write the weights (with provenance) and the model card into the package.
python benchmarks/eval_bundled.py "$RUN/export" "$DATA/heldout" --patches 256 --output "$RUN/eval_heldout.json"
python examples/bundled_model/finalize.py --model "$RUN/export" --run "$RUN" --data "$DATA" \
  --eval "$RUN/eval_heldout.json"
