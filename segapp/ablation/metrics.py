"""Per-epoch curves and per-run summary numbers from a run folder's ``metrics.csv``."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

# results.csv columns after variant and seed, in order
RUN_COLUMNS = [
    "best_val_dice",
    "last_val_dice",
    "epochs_to_target",
    "final_train_loss",
    "train_val_gap",
    "epochs",
    "wall_s",
]
# with ``evaluate: true``: means over the validation images of the best checkpoint's report
EVAL_COLUMNS = {"val_hd95": "hd95", "val_assd": "assd", "val_bf1": "bf1", "val_nsd": "nsd"}
# ... and how many images they are over: HD95/ASSD leave out images where a mask is empty, so a
# run that misses lesions averages its distances over fewer (and easier) images
EVAL_COUNTS = ("val_hd95_n", "val_images")

_CURVES = {"train/loss_epoch": "train_loss", "train/dice": "train_dice", "val/dice": "val_dice", "val/loss": "val_loss"}


def fit_metrics_csv(run_dir: Path) -> Path:
    """``run_dir/logs/version_N/metrics.csv`` of the fit (lowest N: the runner starts each run folder empty).

    Raises:
        FileNotFoundError: The run wrote no CSV log (was the logger disabled?).
    """
    found = sorted(
        (run_dir / "logs").glob("version_*/metrics.csv"), key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0)
    )
    if not found:
        raise FileNotFoundError(
            f"no logs/version_*/metrics.csv under {run_dir}; the ablation runner needs the CSV logger "
            f"(trainer.logger: true)"
        )
    return found[0]


def read_epochs(path: Path) -> list[dict[str, float]]:
    """One dict per epoch (``epoch``, ``train_loss``, ``train_dice``, ``val_dice``, ``val_loss``; NaN when absent)."""
    epochs: dict[int, dict[str, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("epoch"):
                continue
            ep = int(float(row["epoch"]))
            rec = epochs.setdefault(ep, {"epoch": ep, **{v: math.nan for v in _CURVES.values()}})
            for col, name in _CURVES.items():
                if row.get(col):
                    rec[name] = float(row[col])
    return [epochs[k] for k in sorted(epochs)]


def _last(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return vals[-1] if vals else math.nan


def summarize_run(
    epochs: list[dict[str, float]], target_dice: float | None, wall_s: float
) -> dict[str, float | int | str]:
    """The results.csv numbers of one run.

    ``epochs_to_target`` counts epochs trained (1-based) until val Dice first reached
    ``target_dice``; empty when it never did or no target was set. ``train_val_gap`` is
    last train Dice minus last val Dice (positive = over-fitting).
    """
    val = [e["val_dice"] for e in epochs]
    seen = [v for v in val if not math.isnan(v)]
    reached = "" if target_dice is None else next((i + 1 for i, v in enumerate(val) if v >= target_dice), "")
    last_train, last_val = _last([e["train_dice"] for e in epochs]), _last(val)
    return {
        "best_val_dice": max(seen) if seen else math.nan,
        "last_val_dice": last_val,
        "epochs_to_target": reached,
        "final_train_loss": _last([e["train_loss"] for e in epochs]),
        "train_val_gap": last_train - last_val,
        "epochs": len(epochs),
        "wall_s": round(wall_s, 1),
    }


def eval_numbers(summary_json: Path) -> dict[str, float | int | str]:
    """:data:`EVAL_COLUMNS` (NaN when absent) and :data:`EVAL_COUNTS` (empty when absent) from a
    ``segapp validate`` report's ``summary.json``."""
    import json

    summary = json.loads(summary_json.read_text()).get("summary", {})
    metrics = summary.get("metrics", {})
    out: dict[str, float | int | str] = {}
    for col, key in EVAL_COLUMNS.items():
        mean = (metrics.get(key) or {}).get("mean")
        out[col] = math.nan if mean is None else float(mean)
    out["val_hd95_n"] = (metrics.get("hd95") or {}).get("n", "")
    out["val_images"] = summary.get("n_images", "")
    return out
