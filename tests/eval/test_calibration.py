"""Calibration error, per-image uncertainty and the AUROC of ``segapp.eval.calibration`` (numpy only)."""

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage
from scipy import stats as sps

from segapp.eval.calibration import (
    ReliabilityBins,
    auroc,
    band_radius,
    binary_entropy,
    calibration_error,
    dilate,
    uncertainty_region,
    uncertainty_score,
)
from segapp.eval.stats import uncertainty_summary


def test_ece_of_calibrated_probabilities_is_near_zero():
    rng = np.random.default_rng(0)
    p = rng.random((400, 500))
    y = rng.random(p.shape) < p  # labels ~ Bernoulli(p): calibrated by construction
    res = calibration_error(p, y)
    assert res["ece"] < 0.005 and res["mce"] < 0.02
    assert res["brier"] == pytest.approx(1 / 6, abs=0.003)  # E[p(1 - p)] for p ~ U(0, 1)
    assert sum(b["count"] for b in res["bins"]) == res["n_pixels"] == p.size
    assert res["n_bins"] == len(res["bins"]) == 15


def test_ece_of_overconfident_probabilities_is_known():
    # half the pixels say 0.95 but 70 % are lesion (gap 0.25); half say 0.02 but 20 % are (gap 0.18)
    p = np.r_[np.full(1000, 0.95), np.full(1000, 0.02)]
    y = np.r_[np.arange(1000) < 700, np.arange(1000) < 200]
    res = calibration_error(p, y)
    assert res["ece"] == pytest.approx(0.5 * 0.25 + 0.5 * 0.18)
    assert res["mce"] == pytest.approx(0.25)
    brier = 0.5 * (0.7 * 0.05**2 + 0.3 * 0.95**2) + 0.5 * (0.2 * 0.98**2 + 0.8 * 0.02**2)
    assert res["brier"] == pytest.approx(brier)
    nll = -0.5 * (0.7 * math.log(0.95) + 0.3 * math.log(0.05)) - 0.5 * (0.2 * math.log(0.02) + 0.8 * math.log(0.98))
    assert res["nll"] == pytest.approx(nll)
    full = [b for b in res["bins"] if b["count"]]
    assert [b["count"] for b in full] == [1000, 1000]
    assert full[1]["mean_prob"] == pytest.approx(0.95) and full[1]["frac_pos"] == pytest.approx(0.7)


def test_streamed_bins_equal_one_shot_and_edges():
    rng = np.random.default_rng(1)
    cases = [(rng.random((20 + i, 30)), rng.random((20 + i, 30)) < 0.3) for i in range(5)]
    bins = ReliabilityBins()
    for p, y in cases:
        bins.update(p, y)
    streamed = bins.result()
    whole = calibration_error(
        np.concatenate([p.ravel() for p, _ in cases]), np.concatenate([y.ravel() for _, y in cases])
    )
    for k in ("ece", "mce", "brier", "nll", "n_pixels"):
        assert streamed[k] == pytest.approx(whole[k])
    assert streamed["n_images"] == 5 and whole["n_images"] == 1
    edge = calibration_error(np.array([0.0, 1 / 15, 0.999, 1.0]), np.array([0, 0, 1, 1]))
    counts = [b["count"] for b in edge["bins"]]
    assert counts[0] == 1 and counts[1] == 1 and counts[-1] == 2 and sum(counts) == 4


def test_bins_refuse_bad_input():
    bins = ReliabilityBins()
    with pytest.raises(ValueError, match="shape"):
        bins.update(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"\[0, 1\].*-0.5"):
        bins.update(np.full((2, 2), -0.5), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        bins.update(np.full((2, 2), np.nan), np.zeros((2, 2)))
    assert math.isnan(bins.result()["ece"]) and bins.n_pixels == 0


def test_binary_entropy_in_bits():
    h = binary_entropy(np.array([0.0, 0.5, 1.0, 0.25]))
    assert h[:3].tolist() == [0.0, 1.0, 0.0]
    assert h[3] == pytest.approx(-(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75)))


def test_uncertainty_score_crisp_is_zero_and_half_is_one():
    rng = np.random.default_rng(2)
    crisp = (rng.random((50, 60)) < 0.3).astype(np.float32)
    mask = np.zeros((50, 60), bool)
    mask[10:20, 10:30] = True
    assert uncertainty_score(crisp, mask) == 0.0
    assert uncertainty_score(crisp, np.zeros_like(mask)) == 0.0
    half = np.full((50, 60), 0.5, np.float32)
    assert uncertainty_score(half, mask) == pytest.approx(1.0)
    assert uncertainty_score(half, np.zeros_like(mask)) == pytest.approx(1.0)
    assert uncertainty_score(half, mask.astype(np.uint8) * 255) == pytest.approx(1.0)  # 0/255 masks too


def test_uncertainty_score_looks_at_the_lesion_and_its_border_only():
    p = np.full((100, 100), 0.5)  # unsure everywhere ...
    mask = np.zeros((100, 100), bool)
    mask[40:60, 40:60] = True
    r = band_radius(mask.shape)
    assert r == 2  # round(0.02 * 100)
    p[40 - r : 60 + r, 40 - r : 60 + r] = 1.0  # ... except the lesion and a band of r px: certain
    assert uncertainty_score(p, mask) == 0.0
    p[40 - r, 40 - r] = 0.5  # a corner of the square band counts (8-connected dilation)
    assert uncertainty_score(p, mask) == pytest.approx(1 / (20 + 2 * r) ** 2)
    with pytest.raises(ValueError, match="same shape"):
        uncertainty_score(p, mask[:50])


def test_dilation_matches_scipy_and_region_rules():
    rng = np.random.default_rng(3)
    for shape, r in (((40, 37), 1), ((64, 50), 3), ((9, 120), 5)):
        m = rng.random(shape) < 0.02
        want = ndimage.binary_dilation(m, np.ones((3, 3), bool), iterations=r)
        assert np.array_equal(dilate(m, r), want)
    assert band_radius((10, 400)) == 1 and band_radius((600, 530)) == 11
    assert uncertainty_region(np.zeros((5, 7), bool)).all()  # empty prediction: whole image


def test_auroc_matches_mann_whitney_with_ties():
    rng = np.random.default_rng(4)
    s = rng.integers(0, 6, 200).astype(float)  # many ties
    y = rng.random(200) < 0.3
    u = sps.mannwhitneyu(s[y], s[~y]).statistic
    assert auroc(s, y) == pytest.approx(u / (y.sum() * (~y).sum()))
    assert auroc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert auroc([1, 1], [False, True]) == 0.5
    assert math.isnan(auroc([1, 2], [True, True]))


def test_uncertainty_summary_finds_failures():
    rows = [{"dice": d, "uncertainty": u} for d, u in ((0.95, 0.05), (0.9, 0.1), (0.85, 0.2), (0.5, 0.4), (0.1, 0.9))]
    rows.append({"dice": 0.7, "uncertainty": math.nan})  # no map: left out
    s = uncertainty_summary(rows, failure_dice=0.8, n_boot=50)
    assert s["n"] == 5 and s["n_failures"] == 2 and s["auroc"] == 1.0
    assert s["spearman_rho"] == pytest.approx(-1.0)
    assert s["mean_uncertainty_failures"] == pytest.approx(0.65)


def test_calibration_module_imports_numpy_only():
    """Inference may import ``uncertainty_score`` in the slim ONNX image (no torch, OpenCV, scipy)."""
    code = (
        "import sys; from segapp.eval.calibration import uncertainty_score; "
        "print([m for m in ('torch', 'cv2', 'matplotlib', 'scipy', 'PIL') if m in sys.modules])"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
