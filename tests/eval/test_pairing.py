"""Pairing predictions with ground truth, and listing what could not be paired."""

import csv

import numpy as np
import pytest
from PIL import Image

from segapp.data.errors import DuplicateFilesError
from segapp.eval.pairing import list_predictions, pair_folders


def _png(path, value=255, shape=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)


def _gt(root, names):
    for n in names:
        _png(root / "images" / f"{n}.jpg", 100)
        _png(root / "masks" / f"{n}.png")
    return root


def test_pairs_through_predictions_csv_and_lists_the_rest(tmp_path):
    gt = _gt(tmp_path / "gt", ["a", "b", "c"])
    _png(gt / "images" / "lonely.jpg")  # image without mask
    pred = tmp_path / "pred"
    _png(pred / "a.jpg.mask.png")
    _png(pred / "sub" / "b.jpg.mask.png")
    _png(pred / "zzz.jpg.mask.png")
    rows = [
        {"input": "a.jpg", "output": "a.jpg.mask.png", "status": "ok", "reason": ""},
        {"input": "sub/b.jpg", "output": "sub/b.jpg.mask.png", "status": "ok", "reason": ""},
        {"input": "zzz.jpg", "output": "zzz.jpg.mask.png", "status": "ok", "reason": ""},
        {"input": "c.jpg", "output": "", "status": "error", "reason": "file is empty (0 bytes)"},
    ]
    with open(pred / "predictions.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["input", "output", "status", "reason"])
        w.writeheader()
        w.writerows(rows)
    p = pair_folders(pred, gt)
    assert [c.key for c in p.cases] == ["a", "b"]
    assert p.cases[1].pred == pred / "sub" / "b.jpg.mask.png" and p.cases[1].image.name == "b.jpg"
    reasons = {(u["side"], u["file"].split("/")[-1]): u["reason"] for u in p.unpaired}
    assert "prediction failed" in reasons[("prediction", "c.jpg")]
    assert reasons[("prediction", "zzz.jpg.mask.png")] == "no ground truth with this name"
    assert reasons[("ground_truth", "c.png")] == "no prediction for this image"
    assert reasons[("ground_truth", "lonely.jpg")] == "image without a mask"


def test_pairs_a_plain_mask_folder_by_name(tmp_path):
    gt = _gt(tmp_path / "gt", ["a", "b"])
    pred = tmp_path / "pred"
    _png(pred / "a.png")
    _png(pred / "b.png")
    _png(pred / "sub" / "b.tif")  # second prediction for b
    found, failed = list_predictions(pred)
    assert failed == [] and len(found) == 3
    with pytest.raises(DuplicateFilesError, match=r"predictions for one ground-truth image: b.png and sub/b.tif"):
        pair_folders(pred, gt)  # the first one used to be scored, the other listed as a harmless extra
    (pred / "sub" / "b.tif").unlink()
    p = pair_folders(pred, gt)
    assert [c.key for c in p.cases] == ["a", "b"] and p.unpaired == []


def test_a_masks_only_folder_with_one_mask_named_two_ways_is_refused(tmp_path):
    """``a.png`` beside a stale ``a.jpg`` (or ``a_mask.png``) was OR-ed into one ground truth."""
    from segapp.eval.pairing import masks_only

    _png(tmp_path / "gt" / "a.png")
    _png(tmp_path / "gt" / "a_mask.png")
    _png(tmp_path / "gt" / "b_mask.png")
    _png(tmp_path / "gt" / "b_mask_1.png")  # several masks of one image, one naming: OR-ed
    with pytest.raises(DuplicateFilesError, match=r"mask files named two ways for one image: a.png and a_mask.png"):
        masks_only(tmp_path / "gt")
    (tmp_path / "gt" / "a_mask.png").unlink()
    _png(tmp_path / "gt" / "a.jpg")
    with pytest.raises(DuplicateFilesError, match=r"a.jpg and a.png"):
        masks_only(tmp_path / "gt")
    (tmp_path / "gt" / "a.jpg").unlink()
    assert [len(p.masks) for p in masks_only(tmp_path / "gt").pairs] == [1, 2]


def test_predict_output_folder_without_csv_uses_only_mask_files(tmp_path):
    gt = _gt(tmp_path / "gt", ["a", "b"])
    pred = tmp_path / "pred"
    for name in ("a.jpg.mask.png", "a.jpg.prob.png", "a.jpg.overlay.png", "b.jpg.mask.png"):
        _png(pred / name)
    p = pair_folders(pred, gt, layout="paired")
    assert [(c.key, c.pred.name) for c in p.cases] == [("a", "a.jpg.mask.png"), ("b", "b.jpg.mask.png")]
    assert p.unpaired == []


def test_frames_of_a_multi_frame_input_keep_their_own_names(tmp_path):
    """Every frame's row of predictions.csv has the same input: named by it alone, the frames all
    claimed one ground truth (frame 0 was scored against it, the rest called extras)."""
    gt = _gt(tmp_path / "gt", ["s"])
    pred = tmp_path / "pred"
    _png(pred / "s.dcm.f000.mask.png")
    _png(pred / "s.dcm.f001.mask.png")
    rows = ["input,frame,output,status", "s.dcm,0,s.dcm.f000.mask.png,ok", "s.dcm,1,s.dcm.f001.mask.png,ok"]
    (pred / "predictions.csv").write_text("\n".join(rows) + "\n")
    assert [n for n, _ in list_predictions(pred)[0]] == ["s.dcm.f000", "s.dcm.f001"]
    p = pair_folders(pred, gt)
    assert p.cases == [] and sorted(u["reason"] for u in p.unpaired) == [
        "no ground truth with this name",
        "no ground truth with this name",
        "no prediction for this image",
    ]
