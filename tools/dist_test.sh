#!/usr/bin/env bash
# Multi-process testing / stage-2 mining with torchrun.
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]
# CHECKPOINT may be "none" (or "") for configs that need no weights (selective search).
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT. Interpreter: PYTHON (default python).

CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
# OpenMMLab's convention: the repository root on PYTHONPATH, so that a config's custom_imports may name
# the repository's own modules (projects.*).
export PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}"

CKPT_ARGS=()
if [ -n "$CHECKPOINT" ] && [ "$CHECKPOINT" != "none" ]; then
    CKPT_ARGS=("$CHECKPOINT")
fi

"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/test.py" \
    "$CONFIG" \
    "${CKPT_ARGS[@]}" \
    --launcher pytorch "${@:4}"
