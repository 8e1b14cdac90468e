#!/usr/bin/env bash
# Build the CPU prediction image offline and run it over generated scans; compare with the host.
#
#   bash docker/smoke-test.sh            # SKIP (exit 0) only if no Docker engine can start here
#   SEGAPP_REQUIRE_DOCKER=1 bash docker/smoke-test.sh   # (CI) SKIP becomes a failure
#
# Steps: install docker.io + debootstrap when missing; start dockerd (overlay2, no networking of
# its own, folders under /tmp); build a Debian bookworm base with debootstrap and tag it as the
# Dockerfile's base; fill docker/wheelhouse; build with --network none; train + export a tiny
# 2-fold ensemble and export it as one ONNX graph; run the container with --network none over
# PNG/DICOM/NIfTI/broken files; check masks, CSV (trust columns included), review.html and exit
# code against `segapp-predict --model` on the host; stop dockerd; clean up.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
VENV=${VENV:-$REPO/.venv}
PY=$VENV/bin/python
IMAGE=segapp-predict:smoke
BASE=python:3.11-slim-bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${SEGAPP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/segapp}
WORK=$(mktemp -d /tmp/segapp-docker.XXXXXX)
DOCKERD_PID=""
export DOCKER_HOST=unix://$WORK/docker.sock
# Debian's docker.io client builds with its built-in BuildKit; a newer client on PATH may want buildx.
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=docker
docker() { "$DOCKER" "$@"; }

log() { printf '[smoke] %s\n' "$*"; }
skip() {
  if [ "${SEGAPP_REQUIRE_DOCKER:-0}" = "1" ]; then log "FAIL (SEGAPP_REQUIRE_DOCKER=1): $*"; exit 1; fi
  log "SKIP: $*"; exit 0
}
cleanup() {
  if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    kill "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    kill -9 "$DOCKERD_PID" 2>/dev/null || true
  fi
  umount -R "$WORK/root/overlay2" 2>/dev/null || true
  rm -rf "$WORK" 2>/dev/null || log "left $WORK behind (busy mounts)"
}
trap cleanup EXIT

install_engine() {
  command -v dockerd >/dev/null && command -v debootstrap >/dev/null && return 0
  [ "$(id -u)" = 0 ] || return 1
  log "installing docker.io and debootstrap"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends docker.io debootstrap >/dev/null
}

start_engine() {
  mkdir -p "$WORK/root" "$WORK/exec"
  dockerd --storage-driver=overlay2 --iptables=false --ip-forward=false --bridge=none \
    --data-root="$WORK/root" --exec-root="$WORK/exec" --pidfile="$WORK/dockerd.pid" \
    --host="$DOCKER_HOST" >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 60); do
    docker version >/dev/null 2>&1 && return 0
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 1
  done
  tail -5 "$WORK/dockerd.log" >&2 || true
  return 1
}

base_image() {
  docker image inspect "$BASE" >/dev/null 2>&1 && return 0
  local tarball=$CACHE/docker-base-bookworm.tar
  if [ ! -s "$tarball" ]; then
    log "building the base image with debootstrap (a few minutes, cached in $tarball)"
    mkdir -p "$CACHE"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm \
      "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; return 1; }
    tar -C "$WORK/rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$WORK/rootfs"
  fi
  docker import "$tarball" "$BASE" >/dev/null
}

wheelhouse() {
  log "filling docker/wheelhouse"
  "$VENV/bin/pip" download --quiet --only-binary=:all: -d docker/wheelhouse \
    -r docker/requirements-cpu.txt setuptools wheel 2>"$WORK/pip-download.log" || { tail -5 "$WORK/pip-download.log"; return 1; }
}

tiny_model() {
  log "training a tiny 2-fold ensemble and exporting it as one ONNX graph"
  "$VENV/bin/segapp-data" synth --out "$WORK/train" --n 48 --size 64 --seed 0 >/dev/null
  "$VENV/bin/segapp-cv" --num-folds 2 --out "$WORK/cv" --config configs/quickstart.yaml \
    --data.root "$WORK/train" --data.image_size 64 --data.num_workers 0 --trainer.max_epochs 2 \
    --model.net.init_args.depth 3 --trainer.enable_progress_bar false >"$WORK/fit.log" 2>&1 \
    || { tail -20 "$WORK/fit.log"; return 1; }
  mkdir -p "$WORK/model"
  "$VENV/bin/segapp-export" --checkpoint "$WORK/cv" --format onnx --out "$WORK/model/model.onnx" >/dev/null
}

scans() {
  "$PY" - "$WORK/in" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, ".")
import numpy as np
from tests.inference.formats import make_scan_folder, write_study_dicom
make_scan_folder(Path(sys.argv[1]))
# a DICOM with the study identity a SEG copies (make_scan_folder's DICOMs lack it: they get reasons)
write_study_dicom(Path(sys.argv[1]) / "study.dcm", np.random.default_rng(5).integers(0, 255, (64, 72), dtype=np.uint8))
PY
}

main() {
  install_engine || skip "docker.io/debootstrap are not installed and cannot be installed here"
  start_engine || skip "dockerd could not start on this machine (see its log above)"
  log "dockerd up (pid $DOCKERD_PID)"
  base_image
  wheelhouse
  log "building $IMAGE with --network none"
  DOCKER_BUILDKIT=1 docker build --network none -f docker/Dockerfile -t "$IMAGE" \
    --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheelhouse . >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log"; exit 1; }
  tiny_model
  scans
  mkdir -p "$WORK/out" && chmod 777 "$WORK/out"

  log "checks: --help with no mounts, non-root user, read-only input"
  docker run --rm --network none "$IMAGE" --help >/dev/null
  uid=$(docker run --rm --network none --entrypoint id "$IMAGE" -u)
  [ "$uid" = 10001 ] || { log "container runs as uid $uid, expected 10001"; exit 1; }
  if docker run --rm --network none -v "$WORK/in:/data/in:ro" --entrypoint python3 "$IMAGE" \
       -c "open('/data/in/x', 'w')" 2>/dev/null; then log "container could write to /data/in"; exit 1; fi
  if docker run --rm --network none --entrypoint python3 "$IMAGE" -c "import torch" 2>/dev/null; then
    log "the CPU image carries torch; it should not"; exit 1; fi

  log "running the container over $(find "$WORK/in" -type f | wc -l) files"
  set +e
  docker run --rm --network none -v "$WORK/in:/data/in:ro" -v "$WORK/out:/data/out" \
    -v "$WORK/model:/model:ro" "$IMAGE"
  rc_container=$?
  "$VENV/bin/segapp-predict" --model "$WORK/model/model.onnx" --input "$WORK/in" --output "$WORK/host" \
    --dicom-seg >/dev/null
  rc_host=$?
  set -e
  log "exit codes: container $rc_container, host $rc_host"
  [ "$rc_container" = "$rc_host" ] || exit 1
  [ "$rc_container" = 1 ] || { log "expected exit code 1 (some files failed)"; exit 1; }
  "$PY" docker/compare_outputs.py "$WORK/out" "$WORK/host"
  [ -s "$WORK/out/study.dcm.seg.dcm" ] || { log "the container wrote no DICOM SEG for study.dcm"; exit 1; }

  log "two shards (JOB_COMPLETION_INDEX 0 and 1 of SEGAPP_SHARD_COUNT=2) side by side into one folder, then segapp-merge"
  mkdir -p "$WORK/sharded" && chmod 777 "$WORK/sharded"
  local pids=() rc_shard rc_merge
  for i in 0 1; do
    docker run --rm --network none -v "$WORK/in:/data/in:ro" -v "$WORK/sharded:/data/out" \
      -v "$WORK/model:/model:ro" -e JOB_COMPLETION_INDEX="$i" -e SEGAPP_SHARD_COUNT=2 "$IMAGE" \
      --model /model/model.onnx --input /data/in --output /data/out --shard auto --dicom-seg --no-progress &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    rc_shard=0; wait "$pid" || rc_shard=$?
    case "$rc_shard" in 0 | 1 | 3) ;; *) log "a shard exited with $rc_shard"; exit 1 ;; esac
  done
  [ ! -e "$WORK/sharded/predictions.csv" ] || { log "a shard wrote predictions.csv; only segapp-merge may"; exit 1; }
  rc_merge=0
  docker run --rm --network none -v "$WORK/in:/data/in:ro" -v "$WORK/sharded:/data/out" \
    --entrypoint segapp-merge "$IMAGE" /data/out || rc_merge=$?
  [ "$rc_merge" = 0 ] || { log "segapp-merge exited with $rc_merge, expected 0 (complete)"; exit 1; }
  "$PY" docker/compare_outputs.py "$WORK/sharded" "$WORK/out"
  log "PASS"
}

main "$@"
