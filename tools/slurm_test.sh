#!/usr/bin/env bash
# Testing / stage-2 mining on a Slurm cluster (one task per GPU).
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]
# CHECKPOINT may be "none" (or "") for configs that need no weights (selective search).
# Environment: GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS, PYTHON (python).

set -x

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
# OpenMMLab's convention: the repository root on PYTHONPATH, so that a config's custom_imports may name
# the repository's own modules (projects.*).
export PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}"

CKPT_ARGS=()
if [ -n "$CHECKPOINT" ] && [ "$CHECKPOINT" != "none" ]; then
    CKPT_ARGS=("$CHECKPOINT")
fi

# SRUN_ARGS is split on purpose (several srun options in one variable).
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    --gres=gpu:"${GPUS_PER_NODE}" \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$(dirname "$0")/test.py" "${CONFIG}" "${CKPT_ARGS[@]}" \
    --launcher="slurm" "${@:5}"
