#!/usr/bin/env bash
# --engine auto (ONNX Runtime over the cached export) vs --engine torch on one checkpoint and folder,
# alternating ROUNDS times, wall time with start-up; then mask agreement and the largest
# probability difference between the two (docs/benchmarks.md, "Engine choice").
#
# Usage:  bench/engine_compare.sh CHECKPOINT INPUT_DIR [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=$(realpath "${1:?usage: bench/engine_compare.sh CHECKPOINT INPUT_DIR [ROUNDS]}")
INPUT=$(realpath "${2:?input folder}")
ROUNDS="${3:-3}"
PY="$PWD/.venv/bin/python"
WORK=$(mktemp -d /tmp/engine-compare.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
N=$(find -L "$INPUT" -type f | wc -l)

run() {  # NAME ARGS...
  local name="$1"; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$PY" -m segapp.cli.predict --checkpoint "$CKPT" --input "$INPUT" --output "$WORK/$name" --overwrite \
    --no-progress --save-probs npy "$@" >/dev/null 2>"$WORK/$name.err" || { cat "$WORK/$name.err"; exit 1; }
  t1=$(date +%s.%N)
  echo "$name $(echo "$t1 - $t0" | bc)" | tee -a "$WORK/times.txt"
}

"$PY" -m segapp.cli.predict --checkpoint "$CKPT" --input "$INPUT" --output "$WORK/warm" --precision fp32 \
  --engine onnx --no-progress --no-review >/dev/null 2>&1  # the one-time export, not timed
for _ in $(seq "$ROUNDS"); do
  run auto_fp32 --precision fp32
  run torch_fp32 --precision fp32 --engine torch
  run default
done
"$PY" - "$WORK" "$N" <<'PYEOF'
import json, statistics, sys
from pathlib import Path
import numpy as np
from PIL import Image
from segapp.machine import cpu_model
work, n = Path(sys.argv[1]), int(sys.argv[2])
times = {}
for line in open(work / "times.txt"):
    k, v = line.split()
    times.setdefault(k, []).append(float(v))
base = statistics.median(times["torch_fp32"])
print(f"{n} images, {cpu_model()}; median of {len(times['torch_fp32'])} alternating rounds, wall time with start-up")
print("| command | engine | s/image | speed-up vs --engine torch --precision fp32 |")
print("|---|---|---:|---:|")
for k, v in times.items():
    eng = json.loads((work / k / "run.json").read_text())["engine"]
    m = statistics.median(v)
    print(f"| {k} | {eng['engine']} {eng['precision']} | {m / n:.4f} | {base / m:.2f}x |")
diffs, agree = [], []
for mask in sorted((work / "auto_fp32").glob("*.mask.png")):
    a = np.asarray(Image.open(mask)) > 0
    b = np.asarray(Image.open(work / "torch_fp32" / mask.name)) > 0
    agree.append(float((a == b).mean()))
    pa = np.load(work / "auto_fp32" / mask.name.replace(".mask.png", ".prob.npy"))
    pb = np.load(work / "torch_fp32" / mask.name.replace(".mask.png", ".prob.npy"))
    diffs.append(float(np.abs(pa - pb).max()))
print(f"auto (ONNX) vs torch fp32: max probability difference {max(diffs):.2e}, "
      f"pixel agreement min {min(agree):.6f}, identical masks {sum(x == 1.0 for x in agree)}/{len(agree)}")
PYEOF
