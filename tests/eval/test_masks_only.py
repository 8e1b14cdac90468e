"""``segapp-eval --gt`` with a folder of masks only, label-map ground truth, and its messages."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from segapp.eval.pairing import pair_folders
from segapp.eval.report import ReportOptions, case_loader
from tests.conftest import REPO


def _square(value: int = 255, shift: int = 0) -> np.ndarray:
    m = np.zeros((32, 32), np.uint8)
    m[8:24, 8 + shift : 24 + shift] = value
    return m


def _save(path, arr) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _eval(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "segapp.cli.eval", "--n-boot", "50", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture
def masks_only(tmp_path):
    """``gt/`` holds masks only (``a_mask.png``, ``b.png``, ``c_mask.png`` + ``c_mask_1.png``);
    ``pred/`` and ``images/`` beside it."""
    gt, pred, img = tmp_path / "gt", tmp_path / "pred", tmp_path / "images"
    _save(gt / "a_mask.png", _square())
    _save(gt / "b.png", _square())
    left, right = np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8)
    left[8:24, 4:12], right[8:24, 20:28] = 255, 255
    _save(gt / "c_mask.png", left)
    _save(gt / "c_mask_1.png", right)  # OR-ed with c_mask.png, as in training
    for name, arr in (("a", _square(shift=2)), ("b", _square()), ("c", left | right)):
        _save(pred / f"{name}.png", arr)
        _save(img / f"{name}.jpg", np.dstack([_square(200)] * 3))
    return tmp_path


def test_eval_against_a_folder_of_masks_only(masks_only):
    t = masks_only
    out = _eval("--pred", str(t / "pred"), "--gt", str(t / "gt"), "--out", str(t / "rep"))
    assert out.returncode == 0, out.stderr
    assert "over 3 of 3 ground-truth images" in out.stdout
    doc = json.loads((t / "rep" / "summary.json").read_text())
    assert doc["summary"]["n_images"] == 3 and doc["unpaired"] == [] and doc["warnings"] == []
    rows = (t / "rep" / "metrics.csv").read_text().splitlines()
    dice = {r.split(",")[0]: float(r.split(",")[1]) for r in rows[1:]}
    assert dice["b"] == 1.0 and dice["c"] == 1.0 and dice["a"] == pytest.approx(14 / 16)
    assert (t / "rep" / "figures" / "worst_cases.png").is_file()


def test_gallery_canvas_is_the_mask_or_the_images_given(masks_only):
    t = masks_only
    bare = pair_folders(t / "pred", t / "gt")
    assert all(c.image is None for c in bare.cases)
    canvas, gt, _ = case_loader(bare.cases, ReportOptions())("b")
    assert np.array_equal(canvas[..., 0] > 64, gt)  # contours drawn on the mask itself
    with_images = pair_folders(t / "pred", t / "gt", images=t / "images")
    assert [c.image.name for c in with_images.cases] == ["a.jpg", "b.jpg", "c.jpg"]
    image, _, _ = case_loader(with_images.cases, ReportOptions())("b")
    assert image.shape == (32, 32, 3)


def test_every_pair_rejected_prints_the_reasons(masks_only):
    t = masks_only
    for name in ("x", "y"):
        _save(t / "other" / f"{name}.png", _square())
    out = _eval("--pred", str(t / "other"), "--gt", str(t / "gt"), "--out", str(t / "rep"))
    assert out.returncode == 2
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and "no image could be scored" in err[0]
    assert "2 x no ground truth with this name" in err[0] and "3 x no prediction for this image" in err[0]
    assert "see the unpaired files" not in err[0] and not (t / "rep" / "summary.json").exists()


def test_hd95_undefined_everywhere_says_na(tmp_path):
    for name in ("a", "b"):
        _save(tmp_path / "gt" / f"{name}.png", np.zeros((32, 32), np.uint8))
        _save(tmp_path / "pred" / f"{name}.png", _square())  # lesion predicted where there is none
    out = _eval("--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--out", str(tmp_path / "rep"))
    assert out.returncode == 0, out.stderr
    assert "HD95 n/a (undefined on all 2 images" in out.stdout and "nan" not in out.stdout.lower()
    assert "Warning" not in out.stderr  # no numpy all-NaN warnings for the user
    html = (tmp_path / "rep" / "report.html").read_text()
    row = re.search(r"<td>hd95 \(px\)</td>(.*?)</tr>", html).group(1)
    assert row.count("n/a") == 5 and "nan" not in row  # mean, median, std, CI low and high


def test_odd_prediction_values_get_a_warning(masks_only):
    t = masks_only
    _save(t / "pred" / "b.png", (_square() > 0).astype(np.uint8) * 180 + 20)  # a probability-like map
    out = _eval("--pred", str(t / "pred"), "--gt", str(t / "gt"), "--out", str(t / "rep"))
    assert out.returncode == 0, out.stderr
    assert "warning: 1 prediction(s) have values other than 0/255 or 0/1" in out.stderr and "b.png" in out.stderr
    assert json.loads((t / "rep" / "summary.json").read_text())["odd_predictions"][0]["file"].endswith("b.png")


def test_label_map_ground_truth_uses_the_training_rule(tmp_path):
    for i in range(3):
        gt = _square(1)
        gt[8:12, 8:24] = 2  # a second label inside the lesion
        _save(tmp_path / "data" / "images" / f"c{i}.png", np.dstack([_square(200)] * 3))
        _save(tmp_path / "data" / "masks" / f"c{i}.png", gt)
        _save(tmp_path / "pred" / f"c{i}.png", _square())
    out = _eval("--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "data"), "--out", str(tmp_path / "rep"))
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert doc["config"]["gt_mask_rule"]["kind"] == "labels" and doc["summary"]["dice_macro"] == 1.0
    out = _eval(
        "--pred",
        str(tmp_path / "pred"),
        "--gt",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "rep2"),
        "--foreground-labels",
        "2",
    )
    assert json.loads((tmp_path / "rep2" / "summary.json").read_text())["summary"]["dice_macro"] == pytest.approx(
        2 * 64 / (256 + 64)
    )
