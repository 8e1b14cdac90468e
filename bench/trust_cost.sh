#!/usr/bin/env bash
# The cost of the default trust signals and of an ensemble, side by side in one run
# (docs/benchmarks.md, "Trust"): the same checkpoint over the same folder, alternating
#   before   segapp-predict of commit BEFORE (default 4660a40: no trust signals), in a git worktree
#   default  segapp-predict now (trust signals, thumbnails and review.html on)
#   noreview segapp-predict now with --no-review (trust columns only)
#   ensemble segapp-predict now with --checkpoint CV_DIR (K members)
# ROUNDS times each, wall time with process start-up; prints seconds per image per variant.
#
# Usage:  bench/trust_cost.sh CHECKPOINT CV_DIR INPUT_DIR [ROUNDS] [BEFORE]
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT="${1:?usage: bench/trust_cost.sh CHECKPOINT CV_DIR INPUT_DIR [ROUNDS] [BEFORE]}"
CV="${2:?cv folder}"
INPUT="${3:?input folder}"
ROUNDS="${4:-3}"
BEFORE="${5:-4660a40}"
PY="$PWD/.venv/bin/python"
CKPT=$(realpath "$CKPT"); CV=$(realpath "$CV"); INPUT=$(realpath "$INPUT")
WORK=$(mktemp -d /tmp/trust-cost.XXXXXX)
trap 'git worktree remove --force "$WORK/before" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
git worktree add --detach "$WORK/before" "$BEFORE" >/dev/null 2>&1
N=$(find -L "$INPUT" -type f | wc -l)  # -L: test splits are folders of links

run() {  # VARIANT ARGS... -> seconds
  local variant="$1"; shift
  local t0 t1
  t0=$(date +%s.%N)
  # from $WORK: `python -m` puts the working folder first on sys.path, so the worktree's segapp is imported
  (cd "$WORK" && "$@" --input "$INPUT" --output "$WORK/out-$variant" --overwrite --no-progress >/dev/null 2>&1) || true
  t1=$(date +%s.%N)
  echo "$variant $(echo "$t1 - $t0" | bc)" | tee -a "$WORK/times.txt"
}

for r in $(seq "$ROUNDS"); do
  run before env PYTHONPATH="$WORK/before" "$PY" -m segapp.cli.predict --checkpoint "$CKPT"
  run default "$PY" -m segapp.cli.predict --checkpoint "$CKPT"
  run noreview "$PY" -m segapp.cli.predict --checkpoint "$CKPT" --no-review
  run ensemble "$PY" -m segapp.cli.predict --checkpoint "$CV"
done
"$PY" - "$WORK/times.txt" "$N" <<'PYEOF'
import statistics, sys
from segapp.machine import cpu_model
times, n = {}, int(sys.argv[2])
for line in open(sys.argv[1]):
    k, v = line.split()
    times.setdefault(k, []).append(float(v))
base = statistics.median(times["before"])
print(f"{n} images, {cpu_model()}; median of {len(times['before'])} alternating rounds, wall time with start-up")
print("| variant | s/image | x before |")
print("|---|---:|---:|")
for k, v in times.items():
    m = statistics.median(v)
    print(f"| {k} | {m / n:.4f} | {m / base:.2f} |")
PYEOF
