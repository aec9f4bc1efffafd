#!/usr/bin/env bash
# Fine-tune an mmdet detector from a pre-trained checkpoint (the transfer benchmark).
#
# usage: tools/benchmarks/mmdetection/train.sh CONFIG CHECKPOINT GPUS [extra tools/det_train.py args]
#   CONFIG      a config under configs/benchmarks/mmdetection/
#   CHECKPOINT  a stage-1 / stage-3 checkpoint as training wrote it (backbone.* keys), a file made by
#               tools/model_converters/convert_official_orl.py, or "none" (random-init baseline)
#   GPUS        processes on this node; 0 runs one process on the CPU, 1 one process on one GPU
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) as for torchrun.
# The work dir is work_dirs/benchmarks/mmdetection/<config name>/<checkpoint name> unless
# --work-dir is given in the extra args.
set -euo pipefail

if [ $# -lt 3 ]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi

CFG=$1
CKPT=$2
GPUS=$3
shift 3

ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
PYTHON=${PYTHON:-python}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}

CFG_NAME=$(basename "${CFG%.*}")
CKPT_NAME=$(basename "${CKPT%.*}")
WORK_DIR="work_dirs/benchmarks/mmdetection/${CFG_NAME}/${CKPT_NAME}"
for arg in "$@"; do
    if [ "$arg" = "--work-dir" ] || [[ "$arg" == --work-dir=* ]]; then
        WORK_DIR=""
    fi
done
WORK_ARGS=()
if [ -n "$WORK_DIR" ]; then
    WORK_ARGS=(--work-dir "$WORK_DIR")
fi

if [ "$GPUS" -le 1 ] && [ "$NNODES" -eq 1 ]; then
    if [ "$GPUS" -eq 0 ]; then
        export CUDA_VISIBLE_DEVICES=""
    fi
    exec "$PYTHON" "$ROOT/tools/det_train.py" "$CFG" --pretrained "$CKPT" "${WORK_ARGS[@]}" "$@"
fi

exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$ROOT/tools/det_train.py" "$CFG" --pretrained "$CKPT" "${WORK_ARGS[@]}" \
    --launcher pytorch "$@"
