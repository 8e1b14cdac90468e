#!/usr/bin/env bash
# Kvasir-SEG: scratch U-Net vs EfficientNet-Lite0-pretrained U-Net (frozen, then fine-tuned) at the
# SAME wall-clock budget per run (Lightning trainer.max_time), on the same split (data.seed 42 in
# configs/data/kvasir.yaml), for several seeds; validation Dice of every run goes to one CSV.
#
# Usage:  bench/kvasir_compare.sh [BUDGET] [SEEDS] [OUT]
#   BUDGET  DD:HH:MM:SS per run                     (default 00:00:40:00 = 40 min)
#   SEEDS   seeds, space separated, quoted          (default "0 1")
#   OUT     results folder                          (default runs/kvasir_compare)
# Environment:
#   MODELS   experiments to compare (default "scratch effl0" -> configs/experiment/kvasir_<m>.yaml)
#   EPOCHS   trainer.max_epochs (the cosine follows it) for every run (default: each experiment's own, sized
#            for 40 min on 2 AVX2 cores: effl0 17, effl0_320 14, scratch 8);
#            EPOCHS_<model> for one model
#   BF16     auto (default): bf16-mixed + channels_last only if the CPU has AMX/AVX512-BF16
#            (without them bf16 autocast is emulated and ~10x slower); 1 force, 0 never
#   EXTRA    extra arguments for every `segapp fit` (e.g. "--data.root /data/kvasir-seg")
#   WARM     1 (default): first fill the resized-image cache with a tiny 1-epoch run, so that
#            no compared run pays the JPEG decoding of the first epoch inside its budget
#   SEGAPP   the segapp command (default .venv/bin/segapp, else segapp on PATH)
# Output: OUT/results.csv  (model, seed, budget, epochs, wall_s, best_val_dice, last_val_dice,
#         val_dice_at_tuned_threshold, tuned_threshold, checkpoint) and OUT/<model>-s<seed>/ runs.
# Smoke test (about 5 min):  WARM=0 bench/kvasir_compare.sh 00:00:01:00 0 /tmp/kvasir_smoke
set -euo pipefail
cd "$(dirname "$0")/.."

BUDGET="${1:-00:00:40:00}"
SEEDS="${2:-0 1}"
OUT="${3:-runs/kvasir_compare}"
MODELS="${MODELS:-scratch effl0}"
WARM="${WARM:-1}"
SEGAPP="${SEGAPP:-$( [ -x .venv/bin/segapp ] && echo .venv/bin/segapp || echo segapp )}"
PY="$(dirname "$(command -v "$SEGAPP")")/python"
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" NO_ALBUMENTATIONS_UPDATE=1
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
epoch_args() {  # --max_epochs (the cosine follows it) for model $1, from EPOCHS_<model> or EPOCHS
  local var="EPOCHS_$1" n
  n="${!var:-${EPOCHS:-}}"
  [ -z "$n" ] || echo "--trainer.max_epochs $n"
}
BF16="${BF16:-auto}"
if [ "$BF16" = auto ]; then
  BF16=$("$PY" -c 'from segapp.machine import cpu_supports_bf16; print(int(cpu_supports_bf16()))')
fi
PREC_ARGS=()
[ "$BF16" = 1 ] && PREC_ARGS=(--trainer.precision bf16-mixed --model.channels_last true)
mkdir -p "$OUT"
CSV="$OUT/results.csv"
[ -f "$CSV" ] || echo "model,seed,budget,epochs,wall_s,best_val_dice,last_val_dice,val_dice_at_tuned_threshold,tuned_threshold,checkpoint" > "$CSV"
log() { echo "[kvasir_compare $(date -u +%H:%M:%S)] $*"; }
log "$("$PY" -c 'from segapp.machine import cpu_model; print(cpu_model())'), $(nproc) cores, torch $("$PY" -c 'import torch; print(torch.__version__, torch.get_num_threads(), "threads")'), bf16=$BF16"

if [ "$WARM" = 1 ]; then
  log "warming the resized-image cache (tiny net, 1 epoch; not timed)"
  rm -rf "$OUT/_warm"  # segapp fit refuses a run folder that holds checkpoints
  "$SEGAPP" fit --config configs/quickstart.yaml --config configs/experiment/kvasir_scratch.yaml \
    --trainer.default_root_dir "$OUT/_warm" --trainer.max_epochs 1 --trainer.max_time null \
    --model.scheduler null --model.net.init_args.depth 2 --model.net.init_args.base_channels 4 \
    --trainer.enable_progress_bar false "${EXTRA_ARGS[@]}" > "$OUT/_warm.log" 2>&1
fi

for seed in $SEEDS; do
  for model in $MODELS; do
    run="$OUT/$model-s$seed"
    rm -rf "$run"
    log "fit $model seed $seed budget $BUDGET -> $run"
    cmd=("$SEGAPP" fit --config configs/quickstart.yaml --config "configs/experiment/kvasir_$model.yaml"
         --seed_everything "$seed" --trainer.max_time "$BUDGET" --trainer.default_root_dir "$run"
         --trainer.enable_progress_bar false $(epoch_args "$model") "${PREC_ARGS[@]}" "${EXTRA_ARGS[@]}")
    echo "${cmd[*]}" > "$OUT/$model-s$seed.cmd"
    start=$(date +%s)
    "${cmd[@]}" > "$OUT/$model-s$seed.log" 2>&1 || { log "FAILED, see $OUT/$model-s$seed.log"; tail -5 "$OUT/$model-s$seed.log"; exit 1; }
    wall=$(( $(date +%s) - start ))
    "$PY" - "$run" "$model" "$seed" "$BUDGET" "$wall" >> "$CSV" <<'PYEOF'
import csv, glob, sys
run, model, seed, budget, wall = sys.argv[1:]
rows = list(csv.DictReader(open(sorted(glob.glob(f"{run}/logs/version_*/metrics.csv"))[-1])))
def col(name):
    return [(int(r["epoch"]), float(r[name])) for r in rows if r.get(name)]
dice, tuned, thr = col("val/dice"), col("val/dice_at_best_threshold"), col("val/best_threshold")
if not dice:
    sys.exit(f"{run}: no val/dice logged (budget too short for one epoch?)")
best = max(dice, key=lambda t: t[1])
at_best = dict(tuned).get(best[0], float("nan")), dict(thr).get(best[0], float("nan"))
print(f"{model},{seed},{budget},{dice[-1][0] + 1},{wall},{best[1]:.4f},{dice[-1][1]:.4f},"
      f"{at_best[0]:.4f},{at_best[1]:.2f},{run}/checkpoints/best.ckpt")
PYEOF
    log "$(tail -1 "$CSV")"
  done
done

"$PY" - "$CSV" <<'PYEOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("\nmodel     runs  best val Dice (mean +- half-range)   epochs")
for m in dict.fromkeys(r["model"] for r in rows):
    d = [float(r["best_val_dice"]) for r in rows if r["model"] == m]
    e = [r["epochs"] for r in rows if r["model"] == m]
    print(f"{m:9s} {len(d):4d}  {statistics.mean(d):.4f} +- {(max(d) - min(d)) / 2:.4f}   {'/'.join(e)}")
PYEOF
log "results in $CSV"
