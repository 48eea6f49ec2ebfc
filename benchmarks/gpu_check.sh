#!/usr/bin/env bash
# Every check of this project that needs CUDA, in at most about 6 minutes on one GPU, with every figure in ONE JSON
# file (issue 12):
#
#   1. cuda_tests           the `cuda`-marked tests (pytest -m cuda), JUnit outcomes per test
#   2. positions            CPU/CUDA agreement of CAPS patch positions and scores, CUDA repeat determinism
#   3. bench_score_eager    bench_score.py, paper2021, 1024 patches, batch 1 8 32 64, fp32/bf16/defaults
#   4. bench_score_compile  the same with torch.compile (bf16)
#   5. bench_train          bench_train.py, paper2021, batch 20, fp32 and bf16
#   6. torchrun_train       a 1-GPU torchrun run of `vtamiq-train train` (tiny preset, fake KADID-10k, 1 epoch)
#   7. nccl                 an NCCL process group and all-reduce under torchrun
#
# The targets (>= 1800 pairs/s model forward and >= 1500 pairs/s end-to-end score() from GPU tensors, at 1024
# patches) are printed beside the best measured cells and stored in the JSON with the rest.
#
# Usage:
#   benchmarks/gpu_check.sh [RESULT.json]   default: $OUT/gpu_check.json when $OUT is set, else ./gpu_check.json
#   benchmarks/gpu_check.sh --dry-run       print one line per step (name <TAB> time limit <TAB> command), run nothing
#
# Environment: PYTHON (default python), GPU_CHECK_BUDGET (seconds for all steps, default 345; each step is cut at
# its own limit or at what is left of the budget), GPU_CHECK_WORK (the folder for the pieces and logs; default a
# new folder beside the result). Without a CUDA device the script stops at once with exit status 2 and says why.
# Exit status: 0 when every step exited 0, 1 otherwise (the JSON is written either way), 2 without CUDA.

set -uo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY_RUN=1
    shift
fi
if [[ "${1:-}" == -* ]]; then
    echo "gpu_check: unknown option $1 (usage: benchmarks/gpu_check.sh [--dry-run] [RESULT.json])" >&2
    exit 64
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
PY=${PYTHON:-python}
RESULT=${1:-${OUT:-.}/gpu_check.json}
BUDGET=${GPU_CHECK_BUDGET:-345}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1

if [[ $DRY_RUN == 1 ]]; then
    WORK='$WORK'
else
    if ! "$PY" benchmarks/gpu_check.py require-cuda; then
        exit 2
    fi
    WORK=${GPU_CHECK_WORK:-$(dirname "$RESULT")/gpu_check_work}
    mkdir -p "$WORK" || exit 1
    # Only what an earlier run of this script left there.
    rm -rf "$WORK"/*.json "$WORK"/*.xml "$WORK"/*.log "$WORK"/*.md "$WORK/kadid" "$WORK/train_run"
    : > "$WORK/steps.tsv"
fi

START=$SECONDS
FAILED=0

# step NAME LIMIT COMMAND: run COMMAND (a bash command line) under `timeout`, log to $WORK/NAME.log, and append
# "NAME<TAB>exit status<TAB>seconds<TAB>limit" to $WORK/steps.tsv.
step() {
    local name=$1 limit=$2 command=$3
    if [[ $DRY_RUN == 1 ]]; then
        printf '%s\t%s\t%s\n' "$name" "$limit" "$command"
        return 0
    fi
    local left=$((BUDGET - (SECONDS - START)))
    ((left < limit)) && limit=$left
    if ((limit < 5)); then
        echo "gpu_check: skipping $name: the ${BUDGET} s budget is spent" | tee "$WORK/$name.log"
        printf '%s\t%s\t%s\t%s\n' "$name" 125 0 "$limit" >> "$WORK/steps.tsv"
        FAILED=1
        return 0
    fi
    echo "gpu_check: $name (at most $limit s)"
    local t0 rc
    t0=$(date +%s.%N)
    WORK="$WORK" timeout --kill-after=10 "$limit" bash -c "$command" > "$WORK/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')" \
        "$limit" >> "$WORK/steps.tsv"
    if ((rc != 0)); then
        FAILED=1
        echo "gpu_check: $name exited with $rc; the end of its log:"
        tail -n 15 "$WORK/$name.log"
    fi
}

SCORE="$PY benchmarks/bench_score.py --device cuda --preset paper2021 --batch-sizes 1 8 32 64 --patches 1024"
SCORE="$SCORE --stages forward score --iters 10 --warmup 3 --peak-tflops 989"
KADID_FLAGS="--dataset kadid10k --model-preset tiny --lr 1e-3 --lr-milestones 1 --batch-size 2 --train-patches 8"
KADID_FLAGS="$KADID_FLAGS --eval-patches 12 --workers 0 --device cuda --no-progress --epochs 1"
TORCHRUN="$PY -m torch.distributed.run --standalone --nproc_per_node 1"

step cuda_tests 60 "$PY -m pytest -q -p no:cacheprovider -m cuda tests --junitxml=\"\$WORK/cuda_tests.xml\""
step positions 20 "$PY benchmarks/gpu_check.py positions --out \"\$WORK/positions.json\""
step bench_score_eager 60 "$SCORE --precisions fp32 bf16 --out \"\$WORK/bench_score_eager.json\" \
--markdown \"\$WORK/bench_score_eager.md\""
step bench_score_compile 125 "$SCORE --precisions bf16 --compile --no-default \
--out \"\$WORK/bench_score_compile.json\" --markdown \"\$WORK/bench_score_compile.md\""
step bench_train 30 "$PY benchmarks/bench_train.py --preset paper2021 --device cuda --batch-size 20 --steps 20 \
--warmup 3 --out \"\$WORK/bench_train.json\""
step torchrun_train 30 "$PY -c 'import sys; from pathlib import Path; from tests.helpers import build_fake_kadid; \
build_fake_kadid(Path(sys.argv[1]), levels=3)' \"\$WORK/kadid\" && { $TORCHRUN -m vtamiq_metric.training.cli train \
$KADID_FLAGS --data-root \"\$WORK/kadid\" --output \"\$WORK/train_run\"; rc=\$?; $PY benchmarks/gpu_check.py \
train-summary --run \"\$WORK/train_run\" --returncode \$rc --out \"\$WORK/torchrun_train.json\"; exit \$rc; }"
step nccl 20 "$TORCHRUN benchmarks/gpu_check.py nccl --out \"\$WORK/nccl.json\""

if [[ $DRY_RUN == 1 ]]; then
    exit 0
fi
"$PY" benchmarks/gpu_check.py assemble --work "$WORK" --out "$RESULT" || FAILED=1
exit $FAILED
