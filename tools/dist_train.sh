#!/usr/bin/env bash
# Train on GPUS processes of this node (or NNODES nodes) with torchrun:
#   bash tools/dist_train.sh CONFIG GPUS [train.py options]
# On a machine without GPUs the processes communicate with gloo.
set -euo pipefail
CONFIG=$1
GPUS=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}

cd "$(dirname "$0")/.."
PYTHONPATH="$(pwd):${PYTHONPATH:-}" \
python -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    tools/train.py "$CONFIG" --launcher pytorch "$@"
