"""Per-image metrics on hand-made masks with exactly known values, and cross-checks."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from segapp.eval import EmptyPolicy, MetricConfig, image_metrics
from segapp.eval.lesions import match_lesions
from segapp.eval.metrics import overlap_scores


def square(y: int, x: int, side: int, shape=(48, 48)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y : y + side, x : x + side] = True
    return m


def pixel(y: int, x: int, shape=(32, 32)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y, x] = True
    return m


def test_shifted_square_overlap_is_exact():
    gt, pred = square(10, 10, 10), square(10, 12, 10)  # 10x10 square moved 2 px right
    r = image_metrics(pred, gt)
    assert r["case"] == "both"
    assert r["intersection"] == 80 and r["gt_pixels"] == 100 and r["pred_pixels"] == 100
    assert r["dice"] == pytest.approx(0.8)
    assert r["iou"] == pytest.approx(80 / 120)
    assert r["precision"] == pytest.approx(0.8) and r["recall"] == pytest.approx(0.8)
    assert r["isic_jaccard"] == pytest.approx(80 / 120)  # 0.667 >= 0.65 is kept
    assert r["hd95"] == pytest.approx(2.0)  # MONAI's HD95 here: the shift


def test_isic_jaccard_is_zero_below_065():
    gt, pred = square(10, 10, 10), square(10, 13, 10)  # IoU = 70/130 = 0.538
    r = image_metrics(pred, gt)
    assert r["iou"] == pytest.approx(70 / 130)
    assert r["isic_jaccard"] == 0.0


@pytest.mark.parametrize(("a", "b", "dist"), [((5, 5), (5, 12), 7.0), ((5, 5), (8, 9), 5.0)])
def test_single_pixel_distances_are_exact(a, b, dist):
    gt, pred = pixel(*a), pixel(*b)
    r = image_metrics(pred, gt, MetricConfig(tolerance=dist - 0.5, min_lesion_area=1))
    assert r["dice"] == 0.0 and r["lesion_tp"] == 0 and r["lesion_fp"] == 1 and r["lesion_fn"] == 1
    assert r["hd95"] == pytest.approx(dist) and r["assd"] == pytest.approx(dist)
    assert r["bf1"] == 0.0 and r["nsd"] == 0.0
    assert image_metrics(pred, gt, MetricConfig(tolerance=dist))["bf1"] == pytest.approx(1.0)


def test_spacing_gives_distances_in_mm():
    gt, pred = pixel(5, 5), pixel(8, 5)  # 3 rows apart
    r = image_metrics(pred, gt, MetricConfig(spacing=(2.0, 0.5)))
    assert r["hd95"] == pytest.approx(6.0) and r["assd"] == pytest.approx(6.0)
    assert MetricConfig(spacing=(2.0, 0.5)).unit == "mm" and MetricConfig().unit == "px"


def test_concentric_squares_boundary_f1():
    """Prediction = GT square shrunk by 3 px: every predicted edge pixel is 3 px from the GT edge."""
    gt, pred = square(10, 10, 20), square(13, 13, 14)
    r = image_metrics(pred, gt, MetricConfig(tolerance=3.0))
    # GT edge (76 px) to predicted edge: 56 side pixels at 3, 8 at sqrt(10), 8 at sqrt(13), 4 corners at sqrt(18)
    recall = 56 / 76
    assert r["bf1"] == pytest.approx(2 * recall / (1 + recall))
    assert r["nsd"] == pytest.approx((52 + 56) / (52 + 76))
    assert r["dice"] == pytest.approx(2 * 196 / (400 + 196))


@pytest.mark.parametrize(
    ("gt_on", "pred_on", "case"), [(False, False, "both_empty"), (False, True, "false_pos"), (True, False, "missed")]
)
def test_empty_mask_policy_default(gt_on, pred_on, case):
    gt = square(5, 5, 6) if gt_on else np.zeros((48, 48), bool)
    pred = square(20, 20, 6) if pred_on else np.zeros((48, 48), bool)
    r = image_metrics(pred, gt)
    assert r["case"] == case
    expected = 1.0 if case == "both_empty" else 0.0
    for m in ("dice", "iou", "precision", "recall", "isic_jaccard", "bf1", "nsd"):
        assert r[m] == expected, m
    if case == "both_empty":
        assert r["hd95"] == 0.0 and r["assd"] == 0.0
    else:
        assert math.isnan(r["hd95"]) and math.isnan(r["assd"])


def test_empty_mask_policy_alternatives():
    empty, lesion = np.zeros((30, 40), bool), square(5, 5, 6, (30, 40))
    cfg = MetricConfig(policy=EmptyPolicy(empty_empty=math.nan, distance_empty="max"))
    both = image_metrics(empty, empty, cfg)
    assert math.isnan(both["dice"]) and math.isnan(both["iou"]) and both["hd95"] == 0.0
    missed = image_metrics(empty, lesion, cfg)
    assert missed["hd95"] == pytest.approx(50.0) and missed["assd"] == pytest.approx(50.0)  # 30-40-50 diagonal
    mm = image_metrics(empty, lesion, MetricConfig(spacing=(0.5, 0.5), policy=EmptyPolicy(distance_empty="max")))
    assert mm["hd95"] == pytest.approx(25.0)


def test_policy_and_config_reject_bad_values():
    with pytest.raises(ValueError, match="empty_empty"):
        EmptyPolicy(empty_empty=2.0)
    with pytest.raises(ValueError, match="distance_empty"):
        EmptyPolicy(distance_empty="inf")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spacing"):
        MetricConfig(spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="same shape"):
        image_metrics(np.zeros((4, 4)), np.zeros((4, 5)))


def test_disjoint_blobs_lesion_detection():
    gt = square(2, 2, 6) | square(30, 30, 6)  # two lesions
    pred = square(3, 3, 4) | square(2, 30, 5)  # finds the first, plus one false blob
    assert match_lesions(pred, gt) == {
        "lesions_gt": 2,
        "lesions_pred": 2,
        "lesion_tp": 1,
        "lesion_fp": 1,
        "lesion_fn": 1,
    }


def test_one_blob_over_two_lesions_and_connectivity():
    gt = square(5, 5, 5) | square(5, 12, 5)
    pred = square(5, 5, 12)
    assert match_lesions(pred, gt) == {
        "lesions_gt": 2,
        "lesions_pred": 1,
        "lesion_tp": 2,
        "lesion_fp": 0,
        "lesion_fn": 0,
    }
    diag = pixel(5, 5) | pixel(6, 6)  # touch only at a corner
    assert match_lesions(diag, diag, connectivity=8)["lesions_gt"] == 1
    assert match_lesions(diag, diag, connectivity=4)["lesions_gt"] == 2


def test_small_components_are_not_lesions():
    gt = square(10, 10, 10) | pixel(40, 40, (48, 48))  # a lesion and a one-pixel speck
    pred = square(10, 10, 10) | square(30, 2, 3, (48, 48))  # 9-pixel false blob
    assert match_lesions(pred, gt, min_area=1) == {
        "lesions_gt": 2,
        "lesions_pred": 2,
        "lesion_tp": 1,
        "lesion_fp": 1,
        "lesion_fn": 1,
    }
    assert match_lesions(pred, gt, min_area=10) == {
        "lesions_gt": 1,
        "lesions_pred": 1,
        "lesion_tp": 1,
        "lesion_fp": 0,
        "lesion_fn": 0,
    }
    assert image_metrics(pred, gt)["lesions_gt"] == 1  # default min_lesion_area = 10
    # detecting a lesion under min_area is no false positive (it counted as one)
    small = square(10, 10, 3)  # 9 pixels
    over = square(9, 9, 4)  # a 16-pixel prediction covering it
    counts = match_lesions(over, small.astype(bool), min_area=10)
    assert counts["lesions_gt"] == 0 and counts["lesion_fp"] == 0 and counts["lesions_pred"] == 1
    with pytest.raises(ValueError, match="min_lesion_area"):
        MetricConfig(min_lesion_area=0)


def test_lesion_min_overlap():
    gt = square(10, 10, 10)
    pred = square(18, 10, 10)  # covers 20 % of the lesion, 20 % of itself is lesion
    assert match_lesions(pred, gt, min_overlap=0.0)["lesion_tp"] == 1
    r = match_lesions(pred, gt, min_overlap=0.5)
    assert r["lesion_tp"] == 0 and r["lesion_fn"] == 1 and r["lesion_fp"] == 1


def test_dice_matches_training_metric():
    from segapp.lit.metrics import per_image_dice, per_image_iou

    rng = np.random.default_rng(0)
    preds = rng.random((6, 16, 16)) > 0.6
    gts = rng.random((6, 16, 16)) > 0.7
    preds[0] = gts[0] = False  # both empty
    gts[1] = False  # false positive image
    want_d = per_image_dice(torch.from_numpy(preds), torch.from_numpy(gts)).numpy()
    want_j = per_image_iou(torch.from_numpy(preds), torch.from_numpy(gts)).numpy()
    got = [overlap_scores(p, g) for p, g in zip(preds, gts, strict=True)]
    np.testing.assert_allclose([g["dice"] for g in got], want_d, rtol=1e-12)
    np.testing.assert_allclose([g["iou"] for g in got], want_j, rtol=1e-12)


def _scipy_reference(pred: np.ndarray, gt: np.ndarray, spacing, tol: float) -> dict[str, float]:
    """Independent surface metrics: edges by erosion, distances by scipy's exact EDT."""
    ep, eg = pred & ~ndimage.binary_erosion(pred), gt & ~ndimage.binary_erosion(gt)
    d_pg = ndimage.distance_transform_edt(~eg, sampling=spacing)[ep]
    d_gp = ndimage.distance_transform_edt(~ep, sampling=spacing)[eg]
    p, r = (d_pg <= tol).mean(), (d_gp <= tol).mean()
    return {
        "hd95": max(np.percentile(d_pg, 95), np.percentile(d_gp, 95)),
        "assd": np.concatenate([d_pg, d_gp]).mean(),
        "bf1": 2 * p * r / (p + r) if p + r else 0.0,
        "nsd": ((d_pg <= tol).sum() + (d_gp <= tol).sum()) / (d_pg.size + d_gp.size),
    }


def _blobs(rng, shape=(64, 64)) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.random(shape), 4)
    m = noise > np.quantile(noise, 0.7)
    m[:2], m[-2:], m[:, :2], m[:, -2:] = False, False, False, False
    return m


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("spacing", [None, (0.7, 1.3)])
def test_surface_metrics_match_scipy_reference(seed, spacing):
    rng = np.random.default_rng(seed)
    gt, pred = _blobs(rng), _blobs(rng)
    cfg = MetricConfig(spacing=spacing, tolerance=2.0)
    got = image_metrics(pred, gt, cfg)
    want = _scipy_reference(pred, gt, spacing or (1.0, 1.0), 2.0)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-6), k


def test_surface_metrics_match_monai_public_functions():
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    rng = np.random.default_rng(7)
    gt, pred = _blobs(rng), _blobs(rng)
    got = image_metrics(pred, gt, MetricConfig(tolerance=1.5))
    yp, yt = torch.from_numpy(pred)[None, None].float(), torch.from_numpy(gt)[None, None].float()
    hd95 = compute_hausdorff_distance(yp, yt, include_background=True, percentile=95).item()
    assd = compute_average_surface_distance(yp, yt, include_background=True, symmetric=True).item()
    nsd = compute_surface_dice(yp, yt, [1.5], include_background=True).item()
    assert got["hd95"] == pytest.approx(hd95, rel=1e-5)
    assert got["assd"] == pytest.approx(assd, rel=1e-5)
    assert got["nsd"] == pytest.approx(nsd, rel=1e-5)


def test_eval_package_does_not_import_lightning():
    import subprocess
    import sys

    code = "import sys, segapp.eval, segapp.eval.compare, segapp.cli.eval; print('lightning' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
