#!/usr/bin/env bash
# Run the shipped ablation studies one after another (one heavy job at a time on a small CPU) and
# copy what docs/tricks.md shows -- results.csv, the curves PNG, report.md -- into docs/tricks/.
#
# Usage:  bench/run_ablations.sh [STUDY ...]      (default: all eleven, synthetic first, then Kvasir)
# Environment:
#   OUT      run folders (default runs/ablation; resumable: finished runs are skipped)
#   DOCS     where the small artefacts go (default docs/tricks; empty = do not copy)
#   SEGAPP_ABLATE  the command (default .venv/bin/segapp-ablate, else segapp-ablate on PATH)
# The synthetic studies need data/synthetic (make demo, or
#   segapp-data synth --out data/synthetic --n 240 --size 128 --seed 0); the kvasir_* studies read
# ../shared/data/kvasir-seg through configs/data/kvasir.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/ablation}"
DOCS="${DOCS-docs/tricks}"
ABLATE="${SEGAPP_ABLATE:-$( [ -x .venv/bin/segapp-ablate ] && echo .venv/bin/segapp-ablate || echo segapp-ablate )}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" NO_ALBUMENTATIONS_UPDATE=1
STUDIES=("$@")
[ ${#STUDIES[@]} -gt 0 ] || STUDIES=(init norm depth unet regularisation lr_schedule transfer
                                      kvasir_depth kvasir_regularisation kvasir_transfer kvasir_precision)
log() { echo "[run_ablations $(date -u +%H:%M:%S)] $*"; }
for s in "${STUDIES[@]}"; do
  study="configs/ablation/$s.yaml"
  [ -f "$study" ] || { log "no study file $study (expected one of configs/ablation/*.yaml)"; exit 2; }
  log "study $s -> $OUT/$s"
  start=$(date +%s)
  "$ABLATE" --config configs/quickstart.yaml --study "$study" --out "$OUT/$s" > "$OUT/$s.log" 2>&1 \
    || { log "FAILED: see $OUT/$s.log"; tail -5 "$OUT/$s.log"; exit 1; }
  log "study $s done in $(( $(date +%s) - start )) s"
  if [ -n "$DOCS" ]; then
    mkdir -p "$DOCS/$s"
    cp "$OUT/$s/results.csv" "$OUT/$s/report.md" "$OUT/$s/"*_curves.png "$DOCS/$s/"
  fi
done
