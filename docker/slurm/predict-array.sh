#!/usr/bin/env bash
# Sharded prediction on a SLURM cluster: an 8-task job array, each task one shard of
# `segapp-predict --shard auto` (shard = SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of
# SLURM_ARRAY_TASK_COUNT) into one shared output folder, then one dependent job runs segapp-merge.
#
#   bash docker/slurm/predict-array.sh        # on a login node: submits the array and the merge job
#   SEGAPP_INPUT=/archive/scans SEGAPP_OUTPUT=/scratch/$USER/masks SEGAPP_MODEL=$HOME/model.onnx \
#     bash docker/slurm/predict-array.sh
#   sbatch --array=0-31 docker/slurm/predict-array.sh   # more shards: only the array changes
#
# Inside an array task the script runs the shard. The output folder must be on a file system every
# node sees (it holds each shard's own files; docs/inference.md, "Sharded runs"). A shard that was
# stopped (time limit, node failure) is finished with the command segapp-merge prints (--resume).
# A task requeued onto another node finds the lock its first run left there (another host): pass
# --break-lock by hand once you know that run is gone.
#
#SBATCH --job-name=segapp-predict
#SBATCH --array=0-7
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=08:00:00
#SBATCH --output=segapp-predict-%A_%a.log
set -euo pipefail

INPUT=${SEGAPP_INPUT:-$PWD/scans}
OUTPUT=${SEGAPP_OUTPUT:-$PWD/predictions}
MODEL=${SEGAPP_MODEL:-$PWD/model.onnx}
PREDICT=${SEGAPP_PREDICT:-segapp-predict}
MERGE=${SEGAPP_MERGE:-segapp-merge}

submit() {
  local array merge
  array=$(sbatch --parsable --export=ALL "$0")
  array=${array%%;*}
  # afterany, not afterok: segapp-merge checks every input itself and prints the command that
  # finishes a failed shard (exit 1); with afterok one failed task would leave the merge pending
  merge=$(sbatch --parsable --export=ALL --dependency="afterany:$array" --job-name=segapp-merge \
    --cpus-per-task=1 --mem=2G --time=01:00:00 --output=segapp-merge-%j.log \
    --wrap="$(printf '%q ' "$MERGE" "$OUTPUT")")
  echo "submitted shards as job $array and segapp-merge as job ${merge%%;*} (after all shards end)"
}

shard() {
  local rc=0
  # --workers/--batch-size auto size themselves to the task's CPUs (its affinity mask): with as
  # many decoding workers as cores, decode fights the forward pass (docs/benchmarks.md)
  "$PREDICT" --model "$MODEL" --input "$INPUT" --output "$OUTPUT" \
    --shard auto --resume --no-progress || rc=$?
  # 1: some inputs failed (error rows in the CSV); 3: every input of this shard failed: both mean
  # the shard is done, so the task counts as COMPLETED; anything else is a shard that did not finish
  case "$rc" in
    0 | 1 | 3) return 0 ;;
    *) return "$rc" ;;
  esac
}

if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
  submit
else
  shard
fi
