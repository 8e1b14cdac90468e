"""Killed and terminated runs (issue 14, item 6): no decoding process outlives ``segapp-predict``,
and SIGTERM stops it like Ctrl-C: finished rows in a closed CSV, exit code 143, resumable."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import flags
from tests.inference.test_predict_cli import predict_in_process, read_rows

pytestmark = pytest.mark.slow
N_IMAGES = 150


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc; psutil may not be installed)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            parents[int(d.name)] = int(stat[stat.rfind(")") + 2 :].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - found
        found |= frontier
    return found


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


@pytest.fixture(scope="module")
def many_images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("many") / "in"
    root.mkdir()
    rng = np.random.default_rng(4)
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)).save(root / f"im{i:03d}.png")
    return root


def start_run(ckpt: Path, inp: Path, out: Path, log: Path) -> tuple[subprocess.Popen, list[str], set[int]]:
    """Start a run with two decoding workers; return once it wrote a few masks and its children."""
    args = flags(checkpoint=ckpt, input=inp, output=out, workers=2, batch_size=1, tta="flip4", no_progress=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "segapp.cli.predict", *args], stdout=fh, stderr=fh, env=env)
    deadline = time.time() + 240
    while time.time() < deadline and len(list(out.glob("*.mask.png"))) < 4 and proc.poll() is None:
        time.sleep(0.05)
    return proc, args, descendants(proc.pid)


def wait_gone(pids: set[int], seconds: float = 60) -> set[int]:
    """Bounded wait for ``pids`` to exit; returns those still running (then kills them)."""
    deadline = time.time() + seconds
    while time.time() < deadline and any(running(p) for p in pids):
        time.sleep(0.2)
    left = {p for p in pids if running(p)}
    for p in left:
        os.kill(p, signal.SIGKILL)
    return left


def test_kill_9_leaves_no_worker_forkserver_or_resource_tracker(tiny_ckpt, many_images, tmp_path):
    proc, _, children = start_run(tiny_ckpt, many_images, tmp_path / "out", tmp_path / "log.txt")
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be killed")
    assert len(children) >= 3, children  # two workers + forkserver (+ resource tracker)
    proc.send_signal(signal.SIGKILL)
    left = wait_gone(children)  # not reaped yet on purpose: a zombie main process must not keep them alive
    proc.wait()
    assert left == set()


def test_sigterm_stops_like_ctrl_c_with_exit_143_a_closed_csv_and_resume(tiny_ckpt, many_images, tmp_path, capsys):
    out = tmp_path / "out"
    proc, args, children = start_run(tiny_ckpt, many_images, out, tmp_path / "log.txt")
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be stopped")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, (tmp_path / "log.txt").read_text()
    assert wait_gone(children) == set()
    log = (tmp_path / "log.txt").read_text()
    assert "Traceback" not in log and "stopped early" in log, log
    rows = list(csv.DictReader((out / "predictions.csv").read_text().splitlines()))
    assert 0 < len(rows) < N_IMAGES
    assert all(r["status"] == "ok" and r["seconds"] and (out / r["output"]).is_file() for r in rows)
    run = json.loads((out / "run.json").read_text())
    assert run["exit_code"] == 143 and run["summary"]["interrupted"] is True
    assert not list(out.rglob(".tmp-*")) and not (out / ".segapp-predict.lock").exists()
    args = [a for a in args if a != "--no-progress"]
    code, _, err = predict_in_process(capsys, *args[:7], "0", *args[8:], "--resume")  # --workers 0
    assert code == 0, err
    assert len(read_rows(out)) == N_IMAGES
