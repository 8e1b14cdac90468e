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


def compare_runs(
    a: str | Path, b: str | Path, metric: str = "dice", out: str | Path | None = None, seed: int = 0
) -> dict:
    """Paired comparison of ``metric`` between runs ``a`` and ``b`` (difference is ``b - a``).

    Writes ``compare.json``, ``compare.csv`` (per image) and ``compare.png`` (scatter) to
    ``out`` when given. Returns the ``compare.json`` content; better/worse follow the metric's
    direction (:data:`~segapp.eval.stats.DIRECTION`: lower is better for HD95 and ASSD).
    """
    sa, sb = load_scores(a, metric), load_scores(b, metric)
    cmp = paired_compare(sa, sb, seed=seed, direction=DIRECTION.get(metric))
    res = {"a": str(a), "b": str(b), "metric": metric, **cmp}
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
