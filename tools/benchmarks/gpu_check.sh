#!/usr/bin/env bash
# The project's CUDA paths in one run, one table (tools/benchmarks/gpu_check.py says what is checked):
# stage-1 / stage-3 AMP iterations with CPU-side and GPU-side augmentation (step time, samples/s, memory
# peak), the GPU-side augmentation on CUDA vs the CPU, 2a faiss GPU vs faiss-cpu, 2c on CUDA vs the CPU,
# a 2-process NCCL run when there are 2 GPUs. About 5 minutes on one H200; GPU_CHECK_TIMEOUT (seconds,
# default 480) stops it, and the JSON (--out, default work_dirs/benchmarks/gpu_check.json) keeps every finished check.
# Without CUDA it runs the same checks at a tiny size on the CPU.
#   tools/benchmarks/gpu_check.sh [--tiny] [--out FILE] [--work-dir DIR] [--workers N] [--iters N] [--skip ...]
# Interpreter: PYTHON (default python).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec timeout --signal=INT --kill-after=20 "${GPU_CHECK_TIMEOUT:-480}" "${PYTHON:-python}" tools/benchmarks/gpu_check.py "$@"
