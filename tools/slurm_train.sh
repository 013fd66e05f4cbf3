#!/usr/bin/env bash
# Train under Slurm, one task per GPU:
#   GPUS=16 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [options]
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=${4:-work_dirs/$JOB_NAME}
shift $(( $# >= 4 ? 4 : 3 ))
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}

cd "$(dirname "$0")/.."
PYTHONPATH="$(pwd):${PYTHONPATH:-}" \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    python -u tools/train.py "$CONFIG" --work-dir="$WORK_DIR" --launcher slurm "$@"
