"""``segapp-predict --max-pixels / --max-file-pixels``: oversized inputs become error rows naming the size."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.inference.formats import write_dicom
from tests.io.test_limits import _big_tiff

pytestmark = pytest.mark.slow


def predict(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "segapp.cli.predict", "--no-progress", "--workers", "0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def reasons(out: Path) -> dict[str, str]:
    rows = csv.DictReader((out / "predictions.csv").read_text().splitlines())
    return {r["input"]: r["reason"] if r["status"] == "error" else "ok" for r in rows}


def test_oversized_inputs_are_error_rows_and_the_limits_are_options(tiny_ckpt, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(src / "ok.png")
    _big_tiff(src / "bomb.tif")
    write_dicom(src / "cine.dcm", np.zeros((6, 32, 32), np.uint8))
    ckpt = ("--checkpoint", str(tiny_ckpt))

    run = predict(*ckpt, "--input", str(src), "--output", str(tmp_path / "o1"))
    assert run.returncode == 1, run.stderr  # some inputs failed
    got = reasons(tmp_path / "o1")
    assert got["ok.png"] == "ok" and got["cine.dcm"] == "ok"
    assert "15000x15000 (HxW) = 225 Mpx per frame exceeds the 179 Mpx limit" in got["bomb.tif"]

    run = predict(
        *ckpt,
        "--input",
        str(src),
        "--output",
        str(tmp_path / "o2"),
        "--max-pixels",
        "1999",
        "--max-file-pixels",
        "6000",
    )
    assert run.returncode == 3, run.stderr  # nothing could be read
    got = reasons(tmp_path / "o2")
    assert "--max-pixels 2000" in got["ok.png"] and "40x50 (HxW)" in got["ok.png"]
    assert "6 frames of 32x32 (HxW)" in got["cine.dcm"] and "--max-file-pixels 6144" in got["cine.dcm"]

    run = predict(*ckpt, "--input", str(src), "--output", str(tmp_path / "o3"), "--max-pixels", "0")
    assert run.returncode == 2 and "--max-pixels and --max-file-pixels must be >= 1" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
