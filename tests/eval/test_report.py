"""The written report: files, columns, strict JSON, a self-contained HTML, worst cases in Dice order."""

import csv
import json
import re

import numpy as np
import pytest
from PIL import Image

from segapp.eval import EvalCase, ReportOptions, write_report
from segapp.eval.report import read_metrics_csv, worst_cases

SHIFTS = {"s0": 0, "s1": 1, "s3": 3, "s5": 5, "s7": 7, "s9": 9}  # square shifted right by k px


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.fixture
def cases(tmp_path):
    out = []
    rng = np.random.default_rng(0)
    for name, k in SHIFTS.items():
        gt = np.zeros((40, 48), np.uint8)
        gt[10:30, 10:30] = 255
        pred = np.roll(gt, k, axis=1)
        _save(tmp_path / "img" / f"{name}.png", rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
        _save(tmp_path / "gt" / f"{name}.png", gt)
        _save(tmp_path / "pred" / f"{name}.png", pred)
        out.append(
            EvalCase(
                name,
                tmp_path / "pred" / f"{name}.png",
                (tmp_path / "gt" / f"{name}.png",),
                tmp_path / "img" / f"{name}.png",
            )
        )
    empty = np.zeros((40, 48), np.uint8)
    _save(tmp_path / "gt" / "empty.png", empty)
    _save(tmp_path / "pred" / "empty.png", empty)
    out.append(EvalCase("empty", tmp_path / "pred" / "empty.png", (tmp_path / "gt" / "empty.png",), None))
    return out


def _no_nan(text: str) -> dict:
    def bad(c):
        raise AssertionError(f"non-standard JSON constant {c}")

    return json.loads(text, parse_constant=bad)


def test_report_files_and_metrics(cases, tmp_path):
    out = tmp_path / "rep"
    doc = write_report(
        out,
        cases,
        opts=ReportOptions(worst=4, n_boot=200),
        unpaired=[{"side": "prediction", "file": "x.png", "reason": "r"}],
    )
    for f in ("metrics.csv", "summary.json", "report.html", "figures/histograms.png", "figures/worst_cases.png"):
        assert (out / f).is_file(), f
    header = next(csv.reader((out / "metrics.csv").read_text().splitlines()))
    assert header[:4] == ["image", "dice", "iou", "precision"] and "hd95" in header and "case" in header
    rows = {r["image"]: r for r in read_metrics_csv(out / "metrics.csv")}
    assert len(rows) == 7
    for name, k in SHIFTS.items():  # 20x20 square shifted by k: Dice = (20 - k) / 20
        assert rows[name]["dice"] == pytest.approx((20 - k) / 20, abs=1e-6)
    assert rows["empty"]["case"] == "both_empty" and rows["empty"]["dice"] == 1.0
    summary = _no_nan((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(doc))
    assert summary["summary"]["cases"]["both_empty"] == 1 and summary["summary"]["n_images"] == 7
    assert summary["worst"] == ["s9", "s7", "s5", "s3"]
    assert summary["unpaired"][0]["file"] == "x.png"


def test_html_is_self_contained(cases, tmp_path):
    write_report(tmp_path / "rep", cases, opts=ReportOptions(worst=3, n_boot=100))
    html = (tmp_path / "rep" / "report.html").read_text()
    assert not re.search(r"https?://|//cdn|<link|<script|url\(|@import", html, re.I)
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) == 1 + 3  # histograms + 3 gallery images
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "Dice, macro" in html and "Dice, micro" in html


def test_gallery_lists_worst_cases_in_ascending_dice(cases, tmp_path):
    write_report(tmp_path / "rep", cases, opts=ReportOptions(worst=5, n_boot=100))
    html = (tmp_path / "rep" / "report.html").read_text()
    dice = [float(d) for d in re.findall(r'data-dice="([0-9.]+)"', html)]
    names = re.findall(r"<b>#\d+ (\w+)</b>", html)
    assert names == ["s9", "s7", "s5", "s3", "s1"]
    assert dice == sorted(dice) and dice[0] == pytest.approx(11 / 20)


def test_worst_cases_puts_undefined_dice_last_and_breaks_ties_by_name():
    rows = [
        {"image": "b", "dice": 0.5},
        {"image": "n", "dice": float("nan")},
        {"image": "a", "dice": 0.5},
        {"image": "c", "dice": 0.1},
    ]
    assert [r["image"] for r in worst_cases(rows, 10)] == ["c", "a", "b", "n"]


def test_size_mismatch_is_listed_not_scored(cases, tmp_path):
    _save(tmp_path / "pred" / "s0.png", np.zeros((20, 24), np.uint8))
    doc = write_report(tmp_path / "rep", cases, opts=ReportOptions(n_boot=50))
    assert doc["summary"]["n_images"] == 6
    assert any("differs from ground truth" in u["reason"] for u in doc["unpaired"])
