#!/usr/bin/env bash
# Score a Kvasir run's best checkpoint on its held-out validation images at ORIGINAL resolution,
# without and with flip test-time augmentation, and compare the two paired per image.
#
# Usage:  bench/kvasir_eval.sh RUN_DIR [EXPERIMENT] [TTA]
#   RUN_DIR     a `segapp fit` run folder (RUN_DIR/checkpoints/best.ckpt)
#   EXPERIMENT  the experiment config it was trained with (default configs/experiment/kvasir_effl0.yaml)
#   TTA         segapp-predict --tta mode (default flip4: identity, h-, v- and hv-flip)
# Writes RUN_DIR/val_report/ (segapp validate + EvalReport: the split the run never trained on),
# RUN_DIR/val_images/ (links to those images and masks), RUN_DIR/pred_tta/ (segapp-predict),
# RUN_DIR/eval_tta/ (segapp-eval) and RUN_DIR/tta_compare/ (segapp-eval --compare).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="${1:?usage: bench/kvasir_eval.sh RUN_DIR [EXPERIMENT] [TTA]}"
EXP="${2:-configs/experiment/kvasir_effl0.yaml}"
TTA="${3:-flip4}"
BIN="$( [ -x .venv/bin/segapp ] && echo .venv/bin/ || echo "" )"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" NO_ALBUMENTATIONS_UPDATE=1
CKPT="$RUN/checkpoints/best.ckpt"
[ -f "$CKPT" ] || { echo "no $CKPT: expected a finished segapp fit run folder" >&2; exit 2; }
log() { echo "[kvasir_eval $(date -u +%H:%M:%S)] $*"; }

log "validate $CKPT (original size, no TTA)"
rm -rf "$RUN/val_report"
"${BIN}segapp" validate --config configs/quickstart.yaml --config "$EXP" --trainer.default_root_dir "$RUN" \
  --ckpt_path "$CKPT" --trainer.callbacks+=segapp.lit.report_callback.EvalReport --trainer.callbacks.split=val \
  --trainer.logger false --trainer.enable_progress_bar false > "$RUN/val_report.log" 2>&1

log "link the validation images listed in $RUN/val_report/metrics.csv"
ROOT=$("${BIN}python" -c 'import sys, yaml; print(yaml.safe_load(open("configs/data/kvasir.yaml"))["root"])')
rm -rf "$RUN/val_images" && mkdir -p "$RUN/val_images/images" "$RUN/val_images/masks"
tail -n +2 "$RUN/val_report/metrics.csv" | cut -d, -f1 | while read -r stem; do
  ln -s "$PWD/$ROOT/images/$stem.jpg" "$RUN/val_images/images/$stem.jpg"
  ln -s "$PWD/$ROOT/masks/$stem.jpg" "$RUN/val_images/masks/$stem.jpg"
done

log "segapp-predict --tta $TTA over $(ls "$RUN/val_images/images" | wc -l) images"
rm -rf "$RUN/pred_tta" "$RUN/eval_tta" "$RUN/tta_compare"
"${BIN}segapp-predict" --checkpoint "$CKPT" --input "$RUN/val_images/images" --output "$RUN/pred_tta" \
  --tta "$TTA" > "$RUN/pred_tta.log" 2>&1
"${BIN}segapp-eval" --pred "$RUN/pred_tta" --gt "$RUN/val_images" --out "$RUN/eval_tta" > "$RUN/eval_tta.log" 2>&1
"${BIN}segapp-eval" --compare "$RUN/val_report" "$RUN/eval_tta" --out "$RUN/tta_compare" | tee "$RUN/tta_compare.log"
"${BIN}python" - "$RUN" <<'PYEOF'
import json, sys
run = sys.argv[1]
for name in ("val_report", "eval_tta"):
    d = json.load(open(f"{run}/{name}/summary.json"))["summary"]["metrics"]["dice"]
    print(f"{name:10s} mean per-image Dice {d['mean']:.4f}  95% CI {d.get('ci_low', float('nan')):.4f}-{d.get('ci_high', float('nan')):.4f}  median {d.get('median', float('nan')):.4f}")
PYEOF
