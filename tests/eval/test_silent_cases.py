"""``segapp-eval`` cases that used to give a plausible wrong number with exit 0 (docs/reliability.md,
"Evaluation: segapp-eval")."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from segapp.cli.eval import main


def _run(capsys, *args: str) -> tuple[int, str, str]:
    """``segapp-eval``'s ``main`` in this process: ``(exit code, stdout, stderr)``."""
    with pytest.raises(SystemExit) as e:
        main(["--n-boot", "50", *args])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def _square(shift: int = 0, value: int = 255) -> np.ndarray:
    m = np.zeros((32, 32), np.uint8)
    m[8:24, 8 + shift : 24 + shift] = value
    return m


def _photo(seed: int) -> np.ndarray:
    """A colour 'photo': smooth mid-grey shading plus noise, a brighter blob in the middle."""
    rng = np.random.default_rng(seed)
    base = np.linspace(60, 200, 32)[None, :, None] + rng.normal(0, 12, (32, 32, 3))
    base[8:24, 8:24] += 40
    return np.clip(base, 0, 255).astype(np.uint8)


def _save(path, arr, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)


def test_a_dataset_that_pairs_only_with_other_settings_is_refused_not_read_as_masks(tmp_path, capsys):
    """``img/x.png`` + ``ann/x-label.png``: read as 'masks only', every photo was scored as a mask."""
    for i in range(3):
        _save(tmp_path / "gt" / "img" / f"s{i}.png", _photo(i))
        _save(tmp_path / "gt" / "ann" / f"s{i}-label.png", _square())
        _save(tmp_path / "pred" / f"s{i}.png", _square())
    args = ["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--out", str(tmp_path / "o")]
    rc, out, err = _run(capsys, *args)
    assert rc == 2 and "Dice" not in out
    assert "--layout suffix --mask-suffix=-label --mask-dir ann" in err and err.count("\n") == 1
    rc, out, err = _run(capsys, *args, "--layout", "suffix", "--mask-suffix=-label", "--mask-dir", "ann")
    assert rc == 0, err
    assert "Dice macro 1.0000" in out


def test_photos_given_as_ground_truth_masks_are_refused_naming_the_file(tmp_path, capsys):
    for i in range(2):
        _save(tmp_path / "gt" / f"s{i}.png", _photo(i))
        _save(tmp_path / "pred" / f"s{i}.png", _square())
    rc, out, err = _run(
        capsys, "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--out", str(tmp_path / "o")
    )
    assert rc == 2 and "Dice" not in out
    assert "s0.png" in err and "photo" in err and "3-channel" in err


def test_colour_and_jpeg_masks_are_not_photos():
    """RGB masks with JPEG noise along the edges (Kvasir-SEG) and colour-coded masks stay masks."""
    from segapp.eval.report import photo_reason

    buf = io.BytesIO()
    yy, xx = np.mgrid[:128, :128]
    big = (((yy - 60) ** 2 + (xx - 64) ** 2 < 40**2) * 255).astype(np.uint8)
    Image.fromarray(np.dstack([big] * 3)).save(buf, format="JPEG", quality=40)
    jpeg = np.asarray(Image.open(buf))
    assert len(np.unique(jpeg)) > 64 and photo_reason(jpeg) is None
    red = np.dstack([big, np.zeros_like(big), np.zeros_like(big)])
    assert photo_reason(red) is None
    assert photo_reason(_photo(0)) is not None


def _metrics_csv(path, rows: dict[str, tuple[float, float, float]]) -> str:
    """A minimal ``metrics.csv``: ``image -> (dice, hd95, uncertainty)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["image,dice,hd95,uncertainty"] + [f"{k},{d},{h},{u}" for k, (d, h, u) in rows.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_compare_counts_images_undefined_on_one_side_and_lower_hd95_is_better(tmp_path, capsys):
    """B misses 4 lesions (HD95 NaN): those 4 vanished without a word and 'B better' counted a higher HD95."""
    nan = float("nan")
    a = {f"i{k}": (0.85, 3.0, 0.2) for k in range(10)}
    b = {f"i{k}": ((0.0, nan, 0.1) if k < 4 else (0.9, 1.0, 0.3)) for k in range(10)}
    pa, pb = _metrics_csv(tmp_path / "A" / "metrics.csv", a), _metrics_csv(tmp_path / "B" / "metrics.csv", b)
    rc, out, err = _run(capsys, "--compare", pa, pb, "--metric", "hd95", "--out", str(tmp_path / "c"))
    assert rc == 0, err
    assert "lower is better" in out and "B better 6, worse 0" in out
    assert "left out: 4 of 10 common images where hd95 is undefined (4 in B only" in out
    cmp = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert cmp["undefined_b_only"] == 4 and cmp["n_undefined"] == 4 and cmp["direction"] == "lower"
    assert cmp["b_better"] == 6 and cmp["b_lower"] == 6
    rc, out, _ = _run(capsys, "--compare", pa, pb, "--metric", "uncertainty")
    assert "B higher 6, lower 4" in out and "no better direction" in out and "B better" not in out
    assert _run(capsys, "--compare", pa, pb)[1].count("B better 6, worse 4") == 1


def _gt_and_preds(root, n: int, missing: set[int]):
    """``root/gt/{images,masks}`` with ``n`` squares; ``root/pred`` predicts only the others, half shifted."""
    for i in range(n):
        _save(root / "gt" / "images" / f"s{i}.png", np.dstack([_square()] * 3))
        _save(root / "gt" / "masks" / f"s{i}.png", _square())
        if i not in missing:
            _save(root / "pred" / f"s{i}.png", _square(shift=4 * (i % 2)))
    _save(root / "pred" / "extra.png", _square())  # a harmless prediction without ground truth


def test_ground_truth_without_a_prediction_is_counted_apart_and_exits_1(tmp_path, capsys):
    """3 of 12 predictions deleted: '9 images, 3 left out', a mean over the 9, exit 0."""
    _gt_and_preds(tmp_path, 12, {0, 2, 4})
    args = ["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]
    rc, out, err = _run(capsys, *args, "--out", str(tmp_path / "o"))
    assert rc == 1
    assert "over 9 of 12 ground-truth images" in out
    assert "ground-truth images without a prediction: 3 of 12" in out and "predictions without ground truth: 1" in out
    assert "3 of 12 ground-truth images were not scored" in err and "--missing empty" in err
    cov = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]["coverage"]
    assert cov["without_prediction"] == 3 and cov["scored"] == 9 and cov["predictions_without_ground_truth"] == 1
    assert "9 of 12 ground-truth images scored" in (tmp_path / "o" / "report.html").read_text()
    rc, out, err = _run(capsys, *args, "--out", str(tmp_path / "e"), "--missing", "empty")
    assert rc == 0, err
    assert "over 12 of 12 ground-truth images" in out and "scored as empty predictions (--missing empty): 3" in out
    rows = {r["image"]: r for r in csv.DictReader((tmp_path / "e" / "metrics.csv").open())}
    assert float(rows["s0"]["dice"]) == 0.0 and rows["s0"]["case"] == "missed"


def test_a_mask_listed_in_predictions_csv_but_deleted_counts_as_missing(tmp_path):
    from segapp.eval.pairing import pair_folders

    _gt_and_preds(tmp_path, 2, set())
    pred = tmp_path / "pred"
    (pred / "predictions.csv").write_text("input,output,status\ns0.png,s0.png,ok\ns1.png,gone.png,ok\n")
    p = pair_folders(pred, tmp_path / "gt")
    assert [c.key for c in p.cases] == ["s0"]
    assert {u["reason"] for u in p.unpaired} == {"listed but not on disk", "no prediction for this image"}


def test_no_confidence_interval_from_fewer_than_five_images(tmp_path, capsys):
    """One image gave 'Dice macro 0.8501 [0.8501, 0.8501]', and a paired compare a CI that excluded 0."""
    from segapp.eval.stats import MIN_CI_N, bootstrap_ci, paired_compare

    assert all(np.isnan(bootstrap_ci([0.85] * (MIN_CI_N - 1))))
    assert not any(np.isnan(bootstrap_ci([0.8, 0.85, 0.9, 0.7, 0.6])))
    cmp = paired_compare({"a": 0.5}, {"a": 0.9})
    assert all(np.isnan(cmp["mean_diff_ci"])) and "fewer than 5" in cmp["ci_note"]
    _gt_and_preds(tmp_path, 1, set())
    rc, out, err = _run(
        capsys, "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--out", str(tmp_path / "o")
    )
    assert rc == 0, err
    assert "over 1 of 1 ground-truth images [CI n/a: 1 image(s), fewer than 5]" in out
    s = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]
    assert s["dice_macro_ci"] == [None, None] and s["dice_micro_ci"] == [None, None] and s["ci_note"]
    assert "no 95 % CI: 1 image(s)" in (tmp_path / "o" / "report.html").read_text()


def test_every_non_empty_jpeg_prediction_read_as_empty_is_counted(tmp_path, capsys):
    """0/1 masks saved as JPEG read as empty; only those with noise above 1 were warned about."""
    _gt_and_preds(tmp_path, 6, set(range(6)))
    for i in range(6):
        _save(tmp_path / "pred" / f"s{i}.jpg", _square(value=1), quality=95)  # {0, 1} only, or a little noise
    rc, out, err = _run(
        capsys, "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--out", str(tmp_path / "o")
    )
    assert "6 JPEG prediction(s) are not empty but have no value above 127, so they were read as empty" in err
    assert len(json.loads((tmp_path / "o" / "summary.json").read_text())["odd_predictions"]) == 6


def test_a_0_1_ground_truth_among_jpeg_masks_is_not_scored_as_empty(tmp_path, capsys):
    """Any JPEG mask makes the set's rule grey at 127, so a {0, 1} PNG mask read as empty: an empty
    prediction of its lesion scored Dice 1 (both empty), a right one Dice 0, exit 0."""
    for i in range(5):
        _save(tmp_path / "gt" / f"s{i}.jpg", _square(), quality=95)
        _save(tmp_path / "pred" / f"s{i}.png", _square())
    _save(tmp_path / "gt" / "odd.png", _square(value=1))
    _save(tmp_path / "pred" / "odd.png", np.zeros((32, 32), np.uint8))
    rc, out, err = _run(
        capsys, "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--out", str(tmp_path / "o")
    )
    assert rc == 1 and "over 5 of 6 ground-truth images" in out
    doc = json.loads((tmp_path / "o" / "summary.json").read_text())
    why = next(u for u in doc["unpaired"] if u["file"].endswith("odd.png") and u["side"] == "ground_truth")
    assert "look like a 0/1 or label mask" in why["reason"] and "not scored" in why["reason"]
    rows = list(csv.DictReader((tmp_path / "o" / "metrics.csv").open()))
    assert "odd" not in {r["image"] for r in rows}


def test_two_predictions_for_one_image_are_refused_naming_both(tmp_path, capsys):
    """``x.jpg.mask.png`` (stale) and ``x.png.mask.png``: the one sorting first was scored, the other
    counted as a harmless extra."""
    _gt_and_preds(tmp_path, 3, set())
    _save(tmp_path / "pred" / "s1.jpg", np.zeros((32, 32), np.uint8))  # a stale prediction beside s1.png
    rc, out, err = _run(
        capsys, "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--out", str(tmp_path / "o")
    )
    assert rc == 2 and "Dice" not in out
    assert "predictions for one ground-truth image: s1.jpg and s1.png" in err and "keep one prediction" in err


def test_ground_truth_masks_whose_image_is_missing_count_as_not_scored(tmp_path, capsys):
    """3 of 12 image files gone from a paired --gt: their masks and predictions vanished, '9 of 9'."""
    _gt_and_preds(tmp_path, 12, set())
    for i in (1, 3, 5):
        (tmp_path / "gt" / "images" / f"s{i}.png").unlink()
    rc, out, err = _run(
        capsys, "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--out", str(tmp_path / "o")
    )
    assert rc == 1 and "over 9 of 12 ground-truth images" in out
    assert "3 of them are masks whose image file is missing from the dataset" in err and "--layout masks" in err
    cov = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]["coverage"]
    assert cov["mask_without_image"] == 3 and cov["not_scored"] == 3


def test_compare_refuses_runs_scored_with_different_settings(tmp_path, capsys):
    """HD95 in mm against HD95 in pixels (or another empty-mask policy) was compared as if alike."""
    _gt_and_preds(tmp_path, 6, set())
    base = ["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]
    assert _run(capsys, *base, "--out", str(tmp_path / "px"))[0] == 0
    assert _run(capsys, *base, "--out", str(tmp_path / "mm"), "--spacing", "0.5", "0.5")[0] == 0
    rc, out, err = _run(capsys, "--compare", str(tmp_path / "px"), str(tmp_path / "mm"), "--metric", "hd95")
    assert rc == 2 and "were scored with different settings (spacing None in A, [0.5, 0.5] in B" in err
    assert "fix: score one of them again" in err
    rc, out, err = _run(capsys, "--compare", str(tmp_path / "px"), str(tmp_path / "mm"), "--metric", "dice")
    assert rc == 0 and "B-A +0.0000" in out  # Dice does not depend on the spacing


def test_a_ground_truth_below_the_grey_threshold_is_scored_as_empty_with_a_warning(tmp_path, capsys):
    """A {0, 100} mask among 0/255 ones: read as empty under the grey rule; said, not silent."""
    _gt_and_preds(tmp_path, 6, set())
    _save(tmp_path / "gt" / "masks" / "s2.png", _square(value=100))
    rc, out, err = _run(
        capsys, "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--out", str(tmp_path / "o")
    )
    assert rc == 0, err
    assert "1 ground-truth mask(s) have values but none above the grey threshold 127" in err and "s2.png" in err
