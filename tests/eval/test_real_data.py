"""A few real Kvasir-SEG masks (JPEG, large images): pairing by stem across extensions, gallery, specks."""

import json

import numpy as np
import pytest
from scipy import ndimage

from segapp.eval import ReportOptions, pair_folders, read_metrics_csv, write_report
from segapp.io import read_mask, write_mask_png
from tests.conftest import KVASIR

pytestmark = [pytest.mark.real_data, pytest.mark.skipif(not KVASIR.is_dir(), reason="needs ../shared/data/kvasir-seg")]


def test_report_on_kvasir_masks(tmp_path):
    masks = sorted((KVASIR / "masks").iterdir())[:6]
    pred = tmp_path / "pred"
    for i, m in enumerate(masks):  # predictions = ground truth grown by i px: Dice falls with i
        gt = read_mask(m)
        write_mask_png(pred / f"{m.stem}.jpg.mask.png", ndimage.binary_dilation(gt, iterations=4 * i) if i else gt)
    pairing = pair_folders(pred, KVASIR)
    assert (
        len(pairing.cases) == 6
        and sum(u["side"] == "ground_truth" for u in pairing.unpaired) == len(list((KVASIR / "masks").iterdir())) - 6
    )
    doc = write_report(
        tmp_path / "rep", pairing.cases, opts=ReportOptions(worst=3, n_boot=200), unpaired=pairing.unpaired
    )
    rows = read_metrics_csv(tmp_path / "rep" / "metrics.csv")
    assert doc["worst"] == [r["image"] for r in sorted(rows, key=lambda r: r["dice"])][:3]
    assert masks[0].stem not in doc["worst"]  # the exact prediction (Dice 1) is not among the worst
    s = doc["summary"]
    assert s["metrics"]["dice"]["median"] < 1.0 and s["cases"]["both"] == 6
    assert s["lesions"]["fn"] == 0  # one-pixel JPEG specks in the masks are not counted as lesions
    html = (tmp_path / "rep" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert json.loads((tmp_path / "rep" / "summary.json").read_text())["summary"]["n_images"] == 6
    assert np.isfinite(s["metrics"]["hd95"]["mean"])
