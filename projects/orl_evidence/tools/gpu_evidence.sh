#!/usr/bin/env bash
# GPU evidence: the mechanism yardstick (../mechanism.py, BYOL stage 3) and then the contrastive stage-3 arms
# (../stage3_arms.py) at a size where stage 1 and stage 3 have enough data and epochs to learn, planned for
# <= 10 minutes each on one GPU (../README.md has the sizes). MECHANISM=0 / STAGE3_ARMS=0 skip a part.
#
#   OUT=work_dirs/gpu_evidence projects/orl_evidence/tools/gpu_evidence.sh       # one GPU
#   OUT=/tmp/ev projects/orl_evidence/tools/gpu_evidence.sh --cpu-tiny          # the CPU smoke mode (tests)
#   GPU_EVIDENCE_CPU_TINY=1 projects/orl_evidence/tools/gpu_evidence.sh         # the same
#
# The run resumes, so a cut-off run is continued by running it again. Extra arguments go to mechanism.py
# (e.g. --seeds 0 1 2, --arms ...). Output: $OUT/results.json, $OUT/results.md and the run's console lines
# in $OUT/console.log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
# OpenMMLab's convention: the repository root on PYTHONPATH (the instrument configs import projects.orl_evidence).
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-python}"
MODE=gpu
if [[ "${1:-}" == "--cpu-tiny" ]]; then
    MODE=cpu-tiny
    shift
elif [[ "${GPU_EVIDENCE_CPU_TINY:-0}" == "1" ]]; then
    MODE=cpu-tiny
fi
OUT="${OUT:-$ROOT/work_dirs/gpu_evidence_$MODE}"
mkdir -p "$OUT"

if [[ "$MODE" == "gpu" ]]; then
    if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        echo "gpu_evidence.sh: no CUDA device is visible here; use --cpu-tiny for the CPU smoke mode" >&2
        exit 2
    fi
    ARGS=(--device cuda --arms random mocov2 instrument --seeds 0 1 --num-images 1000
          --stage1-epochs 20 --stage3-epochs 20 --instrument-epochs 6 --ft-iters 200
          --cfg-options
          stage1:train_dataloader.batch_size=128 stage1:train_dataloader.num_workers=8
          stage1:auto_scale_lr.enable=True
          stage3:train_dataloader.batch_size=64 stage3:train_dataloader.num_workers=8
          stage3:auto_scale_lr.enable=True
          2a:test_dataloader.num_workers=8 2b:test_dataloader.num_workers=8
          ft:train_dataloader.num_workers=4)
    ARMS_ARGS=(--device cuda --seeds 0 1 2 --num-images 2000 --epochs 40 --view-size 96 --patch-size 64
               --batch-size 128 --lr 0.12 --stage1-epochs 20 --ft-iters 200
               --cfg-options train_dataloader.num_workers=8)
else
    # The test suite's quick run (../tests/test_mechanism.py uses the same arguments and OUT, so this mode
    # resumes it): tiny scenes, one seed, the random-init baseline and the instrument arm.
    ARGS=(--quick --device cpu --arms instrument --ratios 0.1 0.2 --no-design)
    # ../tests/test_stage3_arms.py's quick run, which this mode resumes.
    ARMS_ARGS=(--quick --device cpu --arms image inter-random inter-instrument --seeds 0 --ft-iters 0)
fi

echo "gpu_evidence.sh ($MODE): $PYTHON projects/orl_evidence/tools/mechanism.py --out $OUT ${ARGS[*]} $*"
cd "$ROOT"
start=$(date +%s)
if [[ "${MECHANISM:-1}" == "1" ]]; then
    "$PYTHON" projects/orl_evidence/tools/mechanism.py --out "$OUT" "${ARGS[@]}" "$@" 2>&1 | tee "$OUT/console.log"
fi
if [[ "${STAGE3_ARMS:-1}" == "1" ]]; then
    echo "gpu_evidence.sh ($MODE): $PYTHON projects/orl_evidence/tools/stage3_arms.py --out $OUT/stage3_arms ${ARMS_ARGS[*]}"
    "$PYTHON" projects/orl_evidence/tools/stage3_arms.py --out "$OUT/stage3_arms" "${ARMS_ARGS[@]}" 2>&1 \
        | tee "$OUT/stage3_arms_console.log"
fi
echo "gpu_evidence.sh ($MODE): finished in $(( $(date +%s) - start )) s; results: $OUT/results.json" \
     "$OUT/stage3_arms/results.json"
