"""Dataset-level statistics: mean, median, std, seeded bootstrap CIs, pooled scores, paired tests."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as sps

from segapp.eval.calibration import auroc
from segapp.eval.metrics import METRIC_COLUMNS
from segapp.eval.policy import CASES

MIN_CI_N = 5
"""Fewest images a bootstrap CI is given for: resampling one image gives a zero-width interval
(``0.8501 [0.8501, 0.8501]``), and a few give intervals far narrower than the truth."""


def ci_note(n: int) -> str | None:
    """Why there is no confidence interval for ``n`` images, or ``None`` when there is one."""
    return None if n >= MIN_CI_N else f"no 95 % CI: {n} image(s), fewer than {MIN_CI_N}"


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (NaNs dropped first).

    Returns ``(nan, nan)`` for fewer than :data:`MIN_CI_N` values. The same values and seed give
    the same interval.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size < MIN_CI_N:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def describe(values: Sequence[float], n_boot: int = 2000, seed: int = 0) -> dict[str, float | int]:
    """``n`` (finite values), ``n_nan``, ``mean``, ``median``, ``std`` (ddof=1), ``ci_low``, ``ci_high``."""
    v = np.asarray(values, dtype=np.float64)
    ok = v[~np.isnan(v)]
    lo, hi = bootstrap_ci(ok, n_boot=n_boot, seed=seed)
    nan = math.nan
    return {
        "n": int(ok.size),
        "n_nan": int(v.size - ok.size),
        "mean": float(ok.mean()) if ok.size else nan,
        "median": float(np.median(ok)) if ok.size else nan,
        "std": float(ok.std(ddof=1)) if ok.size > 1 else nan,
        "ci_low": lo,
        "ci_high": hi,
    }


def _pooled(rows: Sequence[Mapping], n_boot: int, seed: int) -> dict[str, float]:
    """Micro (pooled over all pixels) Dice and IoU with bootstrap CIs over images."""
    i = np.array([r["intersection"] for r in rows], dtype=np.float64)
    p = np.array([r["pred_pixels"] for r in rows], dtype=np.float64)
    t = np.array([r["gt_pixels"] for r in rows], dtype=np.float64)

    def dice_iou(ii: np.ndarray, pp: np.ndarray, tt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        si, sp, st = ii.sum(-1), pp.sum(-1), tt.sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return 2 * si / (sp + st), si / (sp + st - si)

    d, j = dice_iou(i, p, t)
    if len(rows) < MIN_CI_N:
        nan2 = [math.nan, math.nan]
        return {"dice_micro": float(d), "dice_micro_ci": nan2, "iou_micro": float(j), "iou_micro_ci": list(nan2)}
    idx = np.random.default_rng(seed).integers(0, len(rows), size=(n_boot, len(rows)))
    bd, bj = dice_iou(i[idx], p[idx], t[idx])
    with warnings.catch_warnings():  # every resample undefined (no lesion, none predicted): NaN, no console noise
        warnings.simplefilter("ignore", RuntimeWarning)
        d_ci, j_ci = ([float(np.nanquantile(x, 0.025)), float(np.nanquantile(x, 0.975))] for x in (bd, bj))
    return {"dice_micro": float(d), "dice_micro_ci": d_ci, "iou_micro": float(j), "iou_micro_ci": j_ci}


def _lesion_totals(rows: Sequence[Mapping]) -> dict[str, float | int]:
    tp, fp, fn = (int(sum(r[k] for r in rows)) for k in ("lesion_tp", "lesion_fp", "lesion_fn"))
    prec = tp / (tp + fp) if tp + fp else math.nan
    rec = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * prec * rec / (prec + rec) if tp else (0.0 if fp + fn else math.nan)
    return {"tp": tp, "fp": fp, "fn": fn, "precision": prec, "recall": rec, "f1": f1}


def summarize(rows: Sequence[Mapping], n_boot: int = 2000, seed: int = 0) -> dict:
    """Dataset summary of ``metrics.csv`` rows.

    Args:
        rows: One dict per image with :data:`~segapp.eval.metrics.METRIC_COLUMNS`, ``case``,
            pixel counts and lesion counts.
        n_boot: Bootstrap resamples for the 95 % confidence intervals.
        seed: Bootstrap seed.

    Returns:
        ``{"n_images", "cases", "metrics": {name: describe(...)}, "dice_macro", "dice_micro",
        "iou_micro", ..., "lesions": {...}}``. ``dice_macro`` is the mean of per-image Dice;
        ``dice_micro`` pools intersections and areas over all images.

    Raises:
        ValueError: If ``rows`` is empty.
    """
    if not rows:
        raise ValueError("no images to summarise: expected at least one paired prediction and ground truth")
    metrics = {m: describe([float(r[m]) for r in rows], n_boot, seed) for m in METRIC_COLUMNS}
    out: dict = {
        "n_images": len(rows),
        "cases": {c: sum(1 for r in rows if r["case"] == c) for c in CASES},
        "metrics": metrics,
        "dice_macro": metrics["dice"]["mean"],
        "dice_macro_ci": [metrics["dice"]["ci_low"], metrics["dice"]["ci_high"]],
    }
    out.update(_pooled(rows, n_boot, seed))
    out["lesions"] = _lesion_totals(rows)
    out["distance_undefined"] = metrics["hd95"]["n_nan"]
    out["ci_note"] = ci_note(len(rows))
    return out


FAILURE_DICE = 0.8


def _spearman(u: np.ndarray, d: np.ndarray) -> tuple[float, float]:
    """Spearman's rho and its p-value; NaN for fewer than 3 images or a constant column."""
    if u.size < 3 or np.ptp(u) == 0 or np.ptp(d) == 0:
        return math.nan, math.nan
    res = sps.spearmanr(u, d)
    return float(res.statistic), float(res.pvalue)


def uncertainty_summary(
    rows: Sequence[Mapping], failure_dice: float = FAILURE_DICE, n_boot: int = 2000, seed: int = 0
) -> dict:
    """How well per-image ``uncertainty`` finds failures: AUROC for ``Dice < failure_dice`` and
    Spearman's rho of uncertainty against Dice (expected negative), over the images with both values.

    Returns:
        ``n``, ``n_failures``, ``failure_dice``, ``auroc`` (NaN when all or none fail),
        ``spearman_rho``, ``spearman_p``, ``mean_uncertainty_failures``, ``mean_uncertainty_others``
        and ``describe()`` of the uncertainty (``stats``).
    """
    pairs = [(float(r["uncertainty"]), float(r["dice"])) for r in rows if "uncertainty" in r]
    arr = np.array([p for p in pairs if not (math.isnan(p[0]) or math.isnan(p[1]))], np.float64).reshape(-1, 2)
    u, d = arr[:, 0], arr[:, 1]
    fail = d < failure_dice
    rho, p = _spearman(u, d)
    return {
        "n": int(u.size),
        "failure_dice": failure_dice,
        "n_failures": int(fail.sum()),
        "auroc": auroc(u, fail),
        "spearman_rho": rho,
        "spearman_p": p,
        "mean_uncertainty_failures": float(u[fail].mean()) if fail.any() else math.nan,
        "mean_uncertainty_others": float(u[~fail].mean()) if (~fail).any() else math.nan,
        "stats": describe([float(r["uncertainty"]) for r in rows if "uncertainty" in r], n_boot, seed),
    }


#: which way is better, per ``metrics.csv`` column: distances are better lower; ``uncertainty``
#: (and any column not named here) has no direction, so a comparison says higher/lower only
DIRECTION: dict[str, str] = {
    **{m: "higher" for m in ("dice", "iou", "precision", "recall", "isic_jaccard", "bf1", "nsd")},
    "hd95": "lower",
    "assd": "lower",
}


def _undefined(va: np.ndarray, vb: np.ndarray) -> dict[str, int]:
    """Images left out of a paired comparison because a side's value is NaN (HD95 with an empty mask)."""
    na, nb = np.isnan(va), np.isnan(vb)
    return {
        "undefined_a_only": int((na & ~nb).sum()),
        "undefined_b_only": int((nb & ~na).sum()),
        "undefined_both": int((na & nb).sum()),
        "n_undefined": int((na | nb).sum()),
    }


def _direction_counts(diff: np.ndarray, direction: str | None) -> dict[str, int | str | None]:
    """``b_higher``/``b_lower``, and ``b_better``/``b_worse`` by the metric's ``direction``
    (``None``: no direction, so no better or worse)."""
    hi, lo = int((diff > 0).sum()), int((diff < 0).sum())
    better, worse = {"higher": (hi, lo), "lower": (lo, hi)}.get(direction or "", (None, None))
    return {"direction": direction, "b_higher": hi, "b_lower": lo, "b_better": better, "b_worse": worse}


def paired_compare(
    a: Mapping[str, float], b: Mapping[str, float], n_boot: int = 2000, seed: int = 0, direction: str | None = "higher"
) -> dict[str, float | int | list | str | None]:
    """Paired comparison of two runs' per-image scores (``b - a``) on the images both have.

    Uses the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, two-sided, zero differences
    dropped) and a paired bootstrap CI of the mean difference. Images where either side is NaN
    are left out and counted (``undefined_*``): silently dropping them let a run that missed
    lesions (HD95 undefined) "win" on the rest. ``direction`` (``higher``, ``lower`` or ``None``,
    see :data:`DIRECTION`) decides which sign counts as ``b_better``.

    Raises:
        ValueError: If the runs share no image.
    """
    keys = sorted(set(a) & set(b))
    if not keys:
        raise ValueError(
            f"the two runs share no image names (run A has {len(a)}, run B {len(b)}); compare runs on the same images"
        )
    va, vb = np.array([a[k] for k in keys], float), np.array([b[k] for k in keys], float)
    ok = ~(np.isnan(va) | np.isnan(vb))
    diff = vb[ok] - va[ok]
    nz = diff[diff != 0]
    if nz.size:
        res = sps.wilcoxon(nz)
        w_stat, p = float(res.statistic), float(res.pvalue)
    else:
        w_stat, p = math.nan, 1.0
    lo, hi = bootstrap_ci(diff, n_boot=n_boot, seed=seed)
    return {
        "n_paired": int(ok.sum()),
        "n_common": len(keys),
        **_undefined(va, vb),
        "only_a": len(set(a) - set(b)),
        "only_b": len(set(b) - set(a)),
        "mean_a": float(va[ok].mean()) if ok.any() else math.nan,
        "mean_b": float(vb[ok].mean()) if ok.any() else math.nan,
        "mean_diff": float(diff.mean()) if diff.size else math.nan,
        "mean_diff_ci": [lo, hi],
        "ci_note": ci_note(int(ok.sum())),
        **_direction_counts(diff, direction),
        "ties": int((diff == 0).sum()),
        "wilcoxon_statistic": w_stat,
        "wilcoxon_p": p,
    }


def seeds_compare(
    a_runs: Sequence[Mapping[str, float]],
    b_runs: Sequence[Mapping[str, float]],
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Two models trained with several seeds each, scored on the same images: ``b - a``.

    One run per seed says little when the seed moves a model as much as the effect looked for
    (about +-0.01 Dice at 10 CPU minutes, docs/benchmarks.md). This averages each image's score
    over a model's seeds and gives two 95 % CIs of the mean difference: ``ci_images`` resamples
    the images only (paired, given these seeds), ``ci_seeds_and_images`` also resamples each
    model's seeds with replacement, so it widens when the seeds disagree (a two-level bootstrap).

    Raises:
        ValueError: If a model has no run, the runs were not scored on the same images, or no
            image has a score (not NaN) in every run.
    """
    runs = [*a_runs, *b_runs]
    if not a_runs or not b_runs:
        raise ValueError(f"expected at least one run of each model, got {len(a_runs)} and {len(b_runs)}")
    keys = sorted(runs[0])
    for i, r in enumerate(runs):
        if set(r) != set(keys):
            raise ValueError(
                f"run {i} was scored on other images than run 0 ({len(set(r) ^ set(keys))} differ, e.g. "
                f"{sorted(set(r) ^ set(keys))[:3]}); score every run on the same test split"
            )
    a = np.array([[r[k] for k in keys] for r in a_runs], float)
    b = np.array([[r[k] for k in keys] for r in b_runs], float)
    ok = ~(np.isnan(a).any(0) | np.isnan(b).any(0))
    if not ok.any():
        raise ValueError(
            f"no image has a score in every run ({len(keys)} images, each NaN in some run); check the metrics"
        )
    a, b = a[:, ok], b[:, ok]
    per_image = b.mean(0) - a.mean(0)
    pooled = paired_compare(dict(enumerate(a.mean(0))), dict(enumerate(b.mean(0))), n_boot, seed)
    rng = np.random.default_rng(seed)
    sa = rng.integers(0, len(a), size=(n_boot, len(a)))
    sb = rng.integers(0, len(b), size=(n_boot, len(b)))
    idx = rng.integers(0, per_image.size, size=(n_boot, per_image.size))
    boot_a = np.take_along_axis(a[sa].mean(1), idx, axis=1).mean(1)
    boot_b = np.take_along_axis(b[sb].mean(1), idx, axis=1).mean(1)
    lo, hi = np.quantile(boot_b - boot_a, [0.025, 0.975])
    return {
        "n_images": int(per_image.size),
        "n_runs_a": len(a),
        "n_runs_b": len(b),
        "run_means_a": [float(x) for x in a.mean(1)],
        "run_means_b": [float(x) for x in b.mean(1)],
        "mean_a": pooled["mean_a"],
        "mean_b": pooled["mean_b"],
        "mean_diff": float(per_image.mean()),
        "ci_images": pooled["mean_diff_ci"],
        "ci_seeds_and_images": [float(lo), float(hi)],
        "b_better": pooled["b_better"],
        "b_worse": pooled["b_worse"],
        "ties": pooled["ties"],
        "wilcoxon_p": pooled["wilcoxon_p"],
    }
