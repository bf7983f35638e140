#!/usr/bin/env bash
# Training on a Slurm cluster, one task per GPU, started by srun:
#   [GPUS=16 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=...] \
#       tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args]
# Each task runs tools/train.py --launcher slurm: mmengine reads SLURM_PROCID, SLURM_NTASKS
# and SLURM_NODELIST, takes the first node as master (port: MASTER_PORT, default 29500) and
# uses NCCL. GPU nodes only: without CUDA use tools/dist_train.sh (torchrun, gloo).
# Resume a preempted job with the same command plus --resume.
set -eo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py args]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
DIR="$(cd "$(dirname "$0")" && pwd)"
PYTHON=${PYTHON:-"$DIR/../.venv/bin/python"}
[ -x "$PYTHON" ] || PYTHON=python

# --kill-on-bad-exit: one failed task (e.g. a NaN loss) ends the job instead of leaving the
# others waiting in a collective until the timeout.
PYTHONPATH="$DIR/..":$PYTHONPATH \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$DIR/train.py" "$CONFIG" --work-dir "$WORK_DIR" --launcher slurm "${@:5}"
