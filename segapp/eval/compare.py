"""Compare two evaluation runs image by image (``segapp-eval --compare A B``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from segapp.eval.report import json_safe, read_metrics_csv  # noqa: E402
from segapp.eval.stats import DIRECTION, paired_compare  # noqa: E402
from segapp.io import atomic_write  # noqa: E402


def metrics_path(run: str | Path) -> Path:
    """``run`` itself if it is a file, else ``run/metrics.csv``.

    Raises:
        ValueError: If no ``metrics.csv`` is there.
    """
    p = Path(run)
    p = p if p.is_file() else p / "metrics.csv"
    if not p.is_file():
        raise ValueError(f"no metrics.csv at {run}; expected a segapp-eval output folder or its metrics.csv")
    return p


def load_scores(run: str | Path, metric: str = "dice") -> dict[str, float]:
    """``image -> metric`` from a run's ``metrics.csv``."""
    rows = read_metrics_csv(metrics_path(run))
    if rows and metric not in rows[0]:
        raise ValueError(f"metric {metric!r} is not a column of {metrics_path(run)}; columns: {', '.join(rows[0])}")
    return {str(r["image"]): float(r[metric]) for r in rows}


SCORED_ALIKE = ("empty_empty", "gt_mask_rule", "pred_threshold")
"""``summary.json`` settings every metric depends on; the metric's own follow (:data:`METRIC_SETTINGS`)."""
_DISTANCE = ("spacing", "unit", "distance_empty")
_LESION = ("connectivity", "lesion_min_overlap", "min_lesion_area")
METRIC_SETTINGS = {
    "hd95": _DISTANCE,
    "assd": _DISTANCE,
    "bf1": ("spacing", "unit", "tolerance"),
    "nsd": ("spacing", "unit", "tolerance"),
    **{c: _LESION for c in ("lesions_gt", "lesions_pred", "lesion_tp", "lesion_fp", "lesion_fn")},
}


def _summary(run: str | Path) -> dict | None:
    """The run's ``summary.json`` (beside its ``metrics.csv``), or ``None`` when there is none."""
    path = metrics_path(run).parent / "summary.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _setting(config: dict, key: str):
    value = config.get(key)
    if key == "gt_mask_rule" and isinstance(value, dict):
        return _rule_target(value)
    return value


def _rule_target(rule: dict) -> str:
    """What a ground-truth mask rule counts as lesion, in words; binary and grey rules read 0/255 and
    0/1 masks alike, so both are "non-zero" unless the grey threshold was set (another threshold)."""
    if rule.get("kind") == "labels" and rule.get("labels") is not None:
        return f"labels {list(rule['labels'])}"
    if rule.get("kind") == "grey" and float(rule.get("threshold", 127.0)) != 127.0:
        return f"grey above {float(rule['threshold']):g}"
    return "non-zero"


def setting_differences(a: str | Path, b: str | Path, metric: str) -> list[str]:
    """The settings ``metric`` depends on that differ between how runs ``a`` and ``b`` were scored
    (empty when either run has no ``summary.json``: a bare ``metrics.csv``)."""
    sa, sb = _summary(a), _summary(b)
    if sa is None or sb is None:
        return []
    ca, cb = sa.get("config", {}), sb.get("config", {})
    keys = SCORED_ALIKE + METRIC_SETTINGS.get(metric, ())
    return [f"{k} {_setting(ca, k)} in A, {_setting(cb, k)} in B" for k in keys if _setting(ca, k) != _setting(cb, k)]


def ground_truth_note(a: str | Path, b: str | Path) -> str | None:
    """A note when the two runs were scored against different ground-truth folders."""
    ga, gb = ((_summary(r) or {}).get("source", {}).get("gt") for r in (a, b))
    if ga and gb and Path(ga).resolve() != Path(gb).resolve():
        return f"A was scored against --gt {ga} and B against {gb}: check they hold the same masks"
    return None


def compare_runs(
    a: str | Path, b: str | Path, metric: str = "dice", out: str | Path | None = None, seed: int = 0
) -> dict:
    """Paired comparison of ``metric`` between runs ``a`` and ``b`` (difference is ``b - a``).

    Writes ``compare.json``, ``compare.csv`` (per image) and ``compare.png`` (scatter) to
    ``out`` when given. Runs scored with different settings of the metric (the empty-mask policy,
    the ground truth's mask rule, spacing for distances, ...; read from each ``summary.json``) are
    refused: their difference would not be the models'. Returns the ``compare.json`` content;
    better/worse follow the metric's direction (:data:`~segapp.eval.stats.DIRECTION`: lower is
    better for HD95 and ASSD).
    """
    sa, sb = load_scores(a, metric), load_scores(b, metric)
    differ = setting_differences(a, b, metric)
    if differ:
        raise ValueError(
            f"{a} and {b} were scored with different settings ({'; '.join(differ)}), so a paired difference of "
            f"{metric} would be partly the settings'; expected two runs scored alike; fix: score one of them "
            "again with segapp-eval and the other's settings (its summary.json 'config' lists them)"
        )
    cmp = paired_compare(sa, sb, seed=seed, direction=DIRECTION.get(metric))
    res = {"a": str(a), "b": str(b), "metric": metric, **cmp, "ground_truth_note": ground_truth_note(a, b)}
    if out is None:
        return res
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "compare.json") as tmp:
        tmp.write_text(json.dumps(json_safe(res), indent=2))
    keys = sorted(set(sa) & set(sb))
    with atomic_write(out / "compare.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", f"{metric}_a", f"{metric}_b", "diff"])
        w.writerows([k, sa[k], sb[k], sb[k] - sa[k]] for k in keys)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter([sa[k] for k in keys], [sb[k] for k in keys], s=10, alpha=0.7)
    lo = min([0.0] + [sa[k] for k in keys] + [sb[k] for k in keys])
    hi = max([1.0] + [sa[k] for k in keys] + [sb[k] for k in keys])
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel(f"{metric} A")
    ax.set_ylabel(f"{metric} B")
    ax.set_title(f"p = {res['wilcoxon_p']:.3g} (Wilcoxon)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "compare.png", dpi=100)
    plt.close(fig)
    return res
