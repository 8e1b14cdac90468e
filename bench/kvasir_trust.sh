#!/usr/bin/env bash
# Trust benchmark on Kvasir-SEG (docs/benchmarks.md, "Trust"): a k-fold ensemble vs its members
# on the fixed 100-image test split (bench/splits/kvasir_test.txt), failure detection by the
# trust signals, out-of-distribution detection against foreign scans, calibration, and the cost.
#
# Usage:  bench/kvasir_trust.sh [OUT] [EPOCHS] [FOLDS]     (default runs/trust 6 3)
# Trains FOLDS members with segapp-cv on the other 800 pairs (each fold's validation part fits
# that member's temperature and OOD statistics; the pooled out-of-fold predictions fit the
# ensemble's threshold and temperature), then predicts the test split and the foreign scans with
# every member alone and with the ensemble, scores them with segapp-eval --probs, and writes
# OUT/trust_summary.json and OUT/trust_summary.md (bench/trust_report.py).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/trust}"
EPOCHS="${2:-6}"
FOLDS="${3:-3}"
BIN="$( [ -x .venv/bin/segapp ] && echo .venv/bin/ || echo "" )"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" NO_ALBUMENTATIONS_UPDATE=1
log() { echo "[kvasir_trust $(date -u +%H:%M:%S)] $*"; }

log "data: pool, fixed test split, foreign scans -> $OUT/data"
"${BIN}python" bench/trust_data.py --kvasir ../shared/data/kvasir-seg --out "$OUT/data"

if [ ! -f "$OUT/cv/ensemble.json" ]; then
  rm -rf "$OUT/cv"  # an interrupted cv: segapp-cv refuses folds that hold checkpoints
  log "segapp-cv: $FOLDS folds x $EPOCHS epochs (EfficientNet-Lite0 U-Net, 256 px)"
  "${BIN}segapp-cv" --num-folds "$FOLDS" --out "$OUT/cv" \
    --config configs/quickstart.yaml --config configs/experiment/kvasir_effl0.yaml \
    --data.root "$OUT/data/pool.csv" --data.layout csv --data.val_fraction 0.0 \
    --trainer.max_epochs "$EPOCHS" --trainer.max_time null \
    --trainer.enable_progress_bar false > "$OUT/cv.log" 2>&1
fi

predict() {  # NAME INPUT CHECKPOINT... : predictions with probabilities and uncertainty maps
  local name="$1" input="$2"; shift 2
  local t0; t0=$(date +%s.%N)
  "${BIN}segapp-predict" --checkpoint "$@" --input "$input" --output "$OUT/pred/$name" --overwrite \
    --save-probs npy --no-progress > "$OUT/pred/$name.log" 2>&1 || true
  echo "$name $(echo "$(date +%s.%N) - $t0" | bc)" >> "$OUT/pred/wall_seconds.txt"
}

mkdir -p "$OUT/pred"
rm -f "$OUT/pred/wall_seconds.txt"
MEMBERS=()
for k in $(seq 0 $((FOLDS - 1))); do MEMBERS+=("$OUT/cv/fold_$k/checkpoints/best.ckpt"); done
log "predict the test split: each member, then the ensemble"
for k in $(seq 0 $((FOLDS - 1))); do predict "test_member$k" "$OUT/data/test/images" "${MEMBERS[$k]}"; done
predict test_ensemble "$OUT/data/test/images" "$OUT/cv"
log "predict the foreign scans: member 0 and the ensemble"
for kind in synthetic photo ultrasound blank noise; do
  predict "foreign_${kind}_member0" "$OUT/data/foreign/$kind" "${MEMBERS[0]}"
  predict "foreign_${kind}_ensemble" "$OUT/data/foreign/$kind" "$OUT/cv"
done

log "score the test predictions (segapp-eval --probs)"
for name in $(ls "$OUT/pred" | grep '^test_' | grep -v '\.log$'); do
  "${BIN}segapp-eval" --pred "$OUT/pred/$name" --gt "$OUT/data/test" --probs "$OUT/pred/$name" \
    --out "$OUT/eval/$name" > "$OUT/eval_$name.log" 2>&1
done
"${BIN}python" bench/trust_report.py "$OUT" --folds "$FOLDS" | tee "$OUT/trust_summary.md"
