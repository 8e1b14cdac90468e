"""Study outputs beyond results.csv: the curves figure and ``report.md`` (mean +- std over seeds)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from segapp.ablation.metrics import fit_metrics_csv, read_epochs
from segapp.ablation.runner import DONE, run_dir
from segapp.ablation.study import Study
from segapp.io import atomic_write

_TABLE = [
    ("best_val_dice", "best val Dice", 4),
    ("last_val_dice", "last val Dice", 4),
    ("epochs_to_target", "epochs to target", 1),
    ("final_train_loss", "final train loss", 4),
    ("train_val_gap", "train-val gap", 4),
    ("wall_s", "wall s", 0),
]
_EVAL = [("val_hd95", "val HD95 px", 2), ("val_bf1", "val boundary F1", 4), ("val_nsd", "val NSD", 4)]


def mean_curves(study: Study, out: Path) -> dict[str, dict[str, np.ndarray]]:
    """Per variant: ``train_loss`` and ``val_dice`` per epoch, mean over the seeds that have them."""
    curves = {}
    for v in study.variants:
        per_seed = []
        for s in study.seeds:
            if not (run_dir(out, v.name, s) / DONE).is_file():
                continue  # a failed (or unfinished) arm's partial curve is not the variant's
            try:
                per_seed.append(read_epochs(fit_metrics_csv(run_dir(out, v.name, s))))
            except FileNotFoundError:
                continue
        if not per_seed:
            continue
        n = max(len(e) for e in per_seed)
        curves[v.name] = {}
        for key in ("train_loss", "val_dice"):
            arr = np.full((len(per_seed), n), np.nan)
            for i, eps in enumerate(per_seed):
                arr[i, : len(eps)] = [e[key] for e in eps]
            with np.errstate(all="ignore"):
                counts = np.sum(~np.isnan(arr), axis=0)
                curves[v.name][key] = np.where(counts > 0, np.nansum(arr, axis=0) / np.maximum(counts, 1), np.nan)
    return curves


def plot_curves(study: Study, out: Path, path: Path) -> Path:
    """One PNG: train loss (left) and val Dice (right) per epoch, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = mean_curves(study, out)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=80)
    for name, c in curves.items():
        x = np.arange(1, len(c["train_loss"]) + 1)
        axes[0].plot(x, c["train_loss"], marker=".", label=name)
        axes[1].plot(x, c["val_dice"], marker=".", label=name)
    for ax, title in zip(axes, ("train loss", "val Dice"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_title(f"{study.name}: {title} (mean of {len(study.seeds)} seed(s))")
        ax.grid(alpha=0.3)
    if study.target_dice is not None:
        axes[1].axhline(study.target_dice, color="gray", linestyle="--", linewidth=1)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


def _cell(values: list[Any], digits: int, n: int) -> str:
    nums = [float(v) for v in values if v not in ("", None) and not math.isnan(float(v))]
    if not nums:
        return "-"
    text = f"{statistics.fmean(nums):.{digits}f}"
    if len(nums) > 1:
        text += f" ± {statistics.stdev(nums):.{digits}f}"
    return text + (f" ({len(nums)}/{n})" if len(nums) < n else "")


def format_report(study: Study, rows: list[dict[str, Any]], figure: str, command: str) -> str:
    """Markdown: command, study settings, the mean ± std table and the figure."""
    lines = [f"# Ablation study: {study.name}", ""]
    if study.description:
        lines += [study.description, ""]
    lines += [f"Command: `{command}`", "", f"Seeds: {study.seeds}. Shared overrides: `{study.overrides}`.", ""]
    if study.target_dice is not None:
        lines += [f"Target val Dice: {study.target_dice} (epochs to reach it; (k/n) = seeds that reached it).", ""]
    table = _TABLE + (_EVAL if study.evaluate else [])
    lines += ["| variant | " + " | ".join(t for _, t, _ in table) + " |", "|---" + "|---:" * len(table) + "|"]
    for v in study.variants:
        mine = [r for r in rows if r["variant"] == v.name and not r.get("error")]
        if mine:
            cells = [_cell([r.get(k, "") for r in mine], d, len(mine)) for k, _, d in table]
            lines.append(f"| {v.name} | " + " | ".join(cells) + " |")
    lines += ["", "Mean ± sample std over seeds. Train-val gap = last train Dice - last val Dice."]
    if study.evaluate:
        lines += [
            "Boundary metrics: best checkpoint on the validation split at original resolution (segapp validate report)."
        ]
    lines += [""]
    lines += [f"![{study.name} curves]({figure})", "", "## Variants", ""]
    lines += [f"- `{v.name}`: `{v.overrides}`" for v in study.variants]
    failed = [r for r in rows if r.get("error")]
    if failed:
        lines += ["", "## Failed runs (left out of the table above; rerun the command to retry them)", ""]
        lines += [f"- `{r['variant']}` seed {r['seed']}: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def write_study_report(study: Study, rows: list[dict[str, Any]], out: Path, command: str) -> Path:
    """Write ``OUT/<study>_curves.png`` and ``OUT/report.md``; return the report path."""
    fig = plot_curves(study, out, out / f"{study.name}_curves.png")
    path = out / "report.md"
    with atomic_write(path) as tmp:
        tmp.write_text(format_report(study, rows, fig.name, command))
    return path
