#!/usr/bin/env bash
# The budget planner vs the hand-written SMP reference on a fixed test split (issue 19), resumable.
#
# Usage:  bench/auto_compare.sh DATASET BUDGET_MIN OUT [more bench/auto_compare.py options]
#   DATASET  kvasir | ultrasound | dermoscopy_large | dermoscopy (bench/splits/synthetic.json) | a pool folder/CSV
#            (then also --test DIR)
# Examples (one at a time; each takes about BUDGET x arms (2, 3 with --recipe) + ~10 % + data, prediction, scoring):
#   nohup bench/auto_compare.sh kvasir 10 runs/auto_compare/kvasir_10m > runs/auto_compare/kvasir_10m.log 2>&1 &
#   nohup bench/auto_compare.sh ultrasound 10 runs/auto_compare/ultrasound_10m > runs/auto_compare/ultrasound_10m.log 2>&1 &
#   bench/auto_compare.sh kvasir 40 runs/auto_compare/kvasir_40m \
#       --recipe configs/quickstart.yaml --recipe configs/experiment/kvasir_effl0_320.yaml
#   bench/auto_compare.sh kvasir 10 runs/auto_compare/kvasir_10m --recipe configs/quickstart.yaml \
#       --recipe configs/experiment/kvasir_effl0.yaml --recipe-args="--trainer.max_epochs 3"
#   bench/auto_compare.sh ultrasound 10 runs/auto_compare/ultrasound_10m_s1 --seed 1   # every arm's training seed
# Rerun the same line after a kill: finished steps are skipped. Results: OUT/compare.md, OUT/compare.json.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n '2,15p' "$0"; exit 2; }
DATASET="$1" BUDGET="$2" OUT="$3"
shift 3
PY="$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT"
exec "$PY" bench/auto_compare.py --dataset "$DATASET" --budget "$BUDGET" --out "$OUT" "$@"
