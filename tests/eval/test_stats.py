"""Dataset statistics: bootstrap CIs, macro vs micro Dice, paired comparison."""

import math

import numpy as np
import pytest

from segapp.eval import bootstrap_ci, paired_compare, summarize
from segapp.eval.stats import describe, seeds_compare


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    v = np.random.default_rng(0).normal(0.8, 0.1, 200)
    lo, hi = bootstrap_ci(v, seed=3)
    assert (lo, hi) == bootstrap_ci(v, seed=3)
    assert lo < v.mean() < hi
    # standard error of the mean ~ 0.1 / sqrt(200) = 0.007: the 95 % CI is about +-0.014
    assert 0.02 < hi - lo < 0.035
    lo_small, hi_small = bootstrap_ci(v[:20], seed=3)
    assert hi_small - lo_small > hi - lo


def test_describe_counts_nans_and_constant_values():
    d = describe([1.0, 1.0, math.nan, 1.0, 1.0, 1.0, 1.0])
    assert d["n"] == 6 and d["n_nan"] == 1
    assert d["mean"] == d["median"] == d["ci_low"] == d["ci_high"] == 1.0 and d["std"] == 0.0
    few = describe([1.0, 1.0, math.nan, 1.0])  # 3 values: no CI (fewer than MIN_CI_N)
    assert few["n"] == 3 and few["mean"] == 1.0 and math.isnan(few["ci_low"]) and math.isnan(few["ci_high"])
    empty = describe([math.nan])
    assert empty["n"] == 0 and math.isnan(empty["mean"]) and math.isnan(empty["ci_low"])


def _row(name, inter, p, t, dice, case="both", hd=1.0):
    row = {
        "image": name,
        "case": case,
        "intersection": inter,
        "pred_pixels": p,
        "gt_pixels": t,
        "lesion_tp": 1,
        "lesion_fp": 0,
        "lesion_fn": 0,
    }
    for m in ("dice", "iou", "precision", "recall", "isic_jaccard", "bf1", "nsd"):
        row[m] = dice
    row.update(hd95=hd, assd=hd)
    return row


def test_macro_and_micro_dice_differ_as_defined():
    # a tiny lesion missed (Dice 0) and a big one found exactly (Dice 1)
    rows = [_row("small", 0, 0, 10, 0.0, case="missed", hd=math.nan), _row("big", 1000, 1000, 1000, 1.0)]
    rows[0].update(lesion_tp=0, lesion_fn=1)
    s = summarize(rows, n_boot=200)
    assert s["dice_macro"] == pytest.approx(0.5)
    assert s["dice_micro"] == pytest.approx(2000 / 2010)
    assert s["iou_micro"] == pytest.approx(1000 / 1010)
    assert s["cases"] == {"both_empty": 0, "false_pos": 0, "missed": 1, "both": 1}
    assert s["distance_undefined"] == 1 and s["metrics"]["hd95"]["n"] == 1
    assert s["lesions"]["tp"] == 1 and s["lesions"]["fn"] == 1 and s["lesions"]["recall"] == pytest.approx(0.5)


def test_summarize_rejects_no_rows():
    with pytest.raises(ValueError, match="no images"):
        summarize([])


def test_paired_compare_detects_a_consistent_improvement():
    rng = np.random.default_rng(1)
    a = {f"i{k}": float(v) for k, v in enumerate(rng.uniform(0.5, 0.9, 40))}
    b = {k: v + 0.05 + rng.normal(0, 0.01) for k, v in a.items()}
    b["only_b"] = 0.3
    r = paired_compare(a, b)
    assert r["n_paired"] == 40 and r["only_b"] == 1 and r["only_a"] == 0
    assert r["mean_diff"] == pytest.approx(0.05, abs=0.01)
    assert r["mean_diff_ci"][0] > 0 and r["wilcoxon_p"] < 1e-6 and r["b_better"] == 40


def test_paired_compare_identical_runs():
    a = {"x": 0.5, "y": 0.7, "z": 0.9}
    r = paired_compare(a, dict(a))
    assert r["wilcoxon_p"] == 1.0 and r["ties"] == 3 and r["mean_diff"] == 0.0
    with pytest.raises(ValueError, match="share no image"):
        paired_compare({"x": 1.0}, {"y": 1.0})


def _runs(base: np.ndarray, shifts: list[float]) -> list[dict[str, float]]:
    return [{f"img{i}": float(v + s) for i, v in enumerate(base)} for s in shifts]


def test_seeds_compare_widens_only_when_the_seeds_disagree():
    base = np.random.default_rng(1).uniform(0.6, 0.95, 150)
    ref = _runs(base, [0.0, 0.0, 0.0])
    steady = seeds_compare(ref, _runs(base, [0.02, 0.021, 0.019]))
    assert steady["mean_diff"] == pytest.approx(0.02)
    assert steady["ci_images"][0] > 0.018 and steady["ci_seeds_and_images"][0] > 0.018
    assert steady["b_better"] == 150 and steady["n_runs_b"] == 3
    # one lucky seed: the same +0.007 mean, every image the same, but the seeds disagree
    lucky = seeds_compare(ref, _runs(base, [0.06, -0.02, -0.019]))
    assert lucky["mean_diff"] == pytest.approx(0.007)
    assert lucky["ci_images"][0] > 0.006  # the images alone cannot see the seed noise
    assert lucky["ci_seeds_and_images"][0] < 0 < lucky["ci_seeds_and_images"][1]
    assert lucky["run_means_b"] == pytest.approx([base.mean() + s for s in (0.06, -0.02, -0.019)])


def test_seeds_compare_refuses_runs_scored_on_other_images():
    base = np.linspace(0.5, 0.9, 10)
    other = _runs(base, [0.0])[0] | {"extra": 0.5}
    with pytest.raises(ValueError, match="run 1 was scored on other images.*same test split"):
        seeds_compare(_runs(base, [0.0]), [other])
    with pytest.raises(ValueError, match="at least one run of each model"):
        seeds_compare([], _runs(base, [0.0]))
    with pytest.raises(ValueError, match="no image has a score in every run"):
        seeds_compare(_runs(base, [0.0]), [dict.fromkeys(_runs(base, [0.0])[0], math.nan)])
