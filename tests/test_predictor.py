import csv
import subprocess
import sys

import numpy as np
from PIL import Image

from segapp.io import read_mask


def test_segapp_predict_writes_masks_at_original_size_and_a_csv(tiny_ckpt, tmp_path):
    inp = tmp_path / "in"
    (inp / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(inp / "a.png")
    Image.fromarray(rng.integers(0, 255, (33, 40), dtype=np.uint8)).save(inp / "sub" / "a.jpg")
    (inp / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, "-m", "segapp.cli.predict", "--checkpoint", str(tiny_ckpt), "--input", str(inp), "--output", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 1, res.stderr  # one file failed
    assert read_mask(out / "a.png.mask.png").shape == (50, 70)
    assert read_mask(out / "sub" / "a.jpg.mask.png").shape == (33, 40)
    rows = {r["input"]: r for r in csv.DictReader(open(out / "predictions.csv"))}
    assert rows["broken.png"]["status"] == "error" and "not a readable image" in rows["broken.png"]["reason"]
    assert rows["sub/a.jpg"]["status"] == "ok" and rows["sub/a.jpg"]["output"] == "sub/a.jpg.mask.png"


def test_output_inside_input_is_refused(tiny_ckpt, tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "segapp.cli.predict", "--checkpoint", str(tiny_ckpt), "--input", str(tmp_path), "--output", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2 and "inside the input folder" in res.stderr
