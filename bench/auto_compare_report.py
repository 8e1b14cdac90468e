"""Tables of bench/auto_compare.py: per model test Dice with bootstrap CIs, paired differences,
the small-lesion view, how well each training fit its budget, and the CPU on every row.

Reads ``OUT/eval/<arm>/metrics.csv`` (segapp-eval, original resolution) and
``OUT/steps/train_<arm>.json``; writes ``OUT/compare.json`` and ``OUT/compare.md``.
The statistics are segapp.eval.stats' (``describe``: percentile bootstrap CI of the mean;
``paired_compare``: paired bootstrap CI of the mean difference and Wilcoxon), seed 0, 2000 resamples.

    .venv/bin/python bench/auto_compare_report.py runs/auto_compare/kvasir_10m
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from segapp.eval.report import json_safe, read_metrics_csv
from segapp.eval.stats import describe, paired_compare
from segapp.machine import cpu_flags, cpu_model

#: A lesion under this share of the frame is "small" (10 of the 12 worst Kvasir images, issue 19).
SMALL = 0.02
#: Display order of the arms; the first two are the paired comparison of issue 19 (auto - reference).
ARMS = ("auto", "reference", "recipe")
PAIRS = (("auto", "reference"), ("recipe", "reference"), ("auto", "recipe"))


def cpu_label() -> dict:
    """The CPU as every row names it: model, usable cores, and the bf16 flags that decide precision."""
    flags = cpu_flags()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    have = {f: f in flags for f in ("avx512_bf16", "amx_bf16")}
    text = f"{cpu_model()}, {cores} cores, " + ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in have.items())
    return {"model": cpu_model(), "cores": cores, **have, "label": text}


def lesion_share(row: Mapping) -> float:
    """True lesion pixels as a share of the frame (0 for an empty mask)."""
    return float(row["gt_pixels"]) / max(1.0, float(row["height"]) * float(row["width"]))


def small_images(rows: Sequence[Mapping], limit: float = SMALL) -> set[str]:
    """Images whose true lesion is present and under ``limit`` of the frame."""
    return {str(r["image"]) for r in rows if 0 < lesion_share(r) < limit}


def scores(rows: Sequence[Mapping], only: set[str] | None = None) -> dict[str, float]:
    """``image -> Dice``, optionally restricted to ``only``."""
    return {str(r["image"]): float(r["dice"]) for r in rows if only is None or str(r["image"]) in only}


def fmt_ci(mean: float | None, ci: Sequence[float | None] | None, digits: int = 3) -> str:
    """``0.901 [0.880, 0.920]``; ``-`` when undefined."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    lo, hi = ci or (None, None)
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def read_json(path: Path) -> dict | None:
    """The JSON object at ``path``, or None when absent."""
    return json.loads(path.read_text()) if path.is_file() else None


def training_fit(step: Mapping | None, budget_s: float) -> dict:
    """Wall time of a training step against its budget (target: within 10 %)."""
    if not step:
        return {"budget_s": budget_s, "wall_s": None, "wall_over_budget": None, "rc": None}
    wall = float(step["wall_s"])
    return {"budget_s": budget_s, "wall_s": wall, "wall_over_budget": round(wall / budget_s, 3), "rc": step["rc"]}


def epochs_trained(run: Path) -> int | None:
    """Epochs the run trained (the largest ``epoch`` in its ``metrics.csv`` files, plus one)."""
    epochs = [
        int(float(r["epoch"]))
        for f in run.glob("logs/version_*/metrics.csv")
        for r in csv.DictReader(f.read_text().splitlines())
        if r.get("epoch")
    ]
    return max(epochs) + 1 if epochs else None


def plan_summary(out: Path) -> dict | None:
    """What the planner chose (net, size, epochs, predicted time), from ``OUT/auto/plan.json``."""
    plan = read_json(out / "auto" / "plan.json")
    if not plan:
        return None
    settings, sched = plan.get("settings", {}), plan.get("schedule", {})
    net = next((c.get("value") for c in plan.get("choices", []) if c.get("setting") == "model.net"), None)
    return {
        "net": net,
        "image_size": settings.get("data.image_size"),
        "train_size_schedule": settings.get("data.train_size_schedule"),
        "in_channels": settings.get("data.in_channels"),
        "precision": settings.get("trainer.precision"),
        "max_epochs": settings.get("trainer.max_epochs"),
        "epochs_planned": sched.get("epochs") if isinstance(sched, Mapping) else None,
        "epochs_trained": epochs_trained(out / "auto"),
        "predicted_total_s": plan.get("predicted_total_s"),
        "device": plan.get("device"),
    }


def model_row(out: Path, arm: str, budget_s: float, small: set[str]) -> dict | None:
    """One model's test scores, small-lesion scores and training fit; None when it was not scored."""
    metrics = out / "eval" / arm / "metrics.csv"
    if not metrics.is_file():
        return None
    rows = read_metrics_csv(metrics)
    extra = read_json(out / "reference" / "train.json") if arm == "reference" else None
    return {
        "model": arm,
        "n_images": len(rows),
        "dice": describe([float(r["dice"]) for r in rows]),
        "dice_small": describe(list(scores(rows, small).values())),
        "training": training_fit(read_json(out / "steps" / f"train_{arm}.json"), budget_s),
        "inner_train_s": extra.get("train_s") if extra else None,
        "steps": extra.get("steps") if extra else None,
    }


def diff(first: Mapping[str, float], second: Mapping[str, float]) -> dict:
    """``first - second`` per image (segapp.eval.stats.paired_compare, whose own order is 2nd - 1st), relabelled."""
    res = dict(paired_compare(second, first))
    names = {"mean_a": "mean_second", "mean_b": "mean_first", "b_better": "first_better", "b_worse": "first_worse"}
    names |= {"only_a": "only_second", "only_b": "only_first"}
    return {names.get(k, k): v for k, v in res.items()}


def paired(out: Path, a: str, b: str, small: set[str]) -> dict | None:
    """``a - b`` per image on all test images and on the small-lesion ones (paired bootstrap CIs)."""
    pa, pb = (out / "eval" / x / "metrics.csv" for x in (a, b))
    if not (pa.is_file() and pb.is_file()):
        return None
    ra, rb = read_metrics_csv(pa), read_metrics_csv(pb)
    sa, sb = scores(ra, small), scores(rb, small)
    return {"first": a, "second": b, "all": diff(scores(ra), scores(rb)), "small": diff(sa, sb) if sa and sb else None}


def build(out: Path, budget_min: float, dataset: str = "") -> dict:
    """The comparison of every scored arm under ``out``."""
    gt_rows = next((read_metrics_csv(p) for a in ARMS if (p := out / "eval" / a / "metrics.csv").is_file()), [])
    small = small_images(gt_rows)
    budget_s = budget_min * 60
    rows = [r for a in ARMS if (r := model_row(out, a, budget_s, small))]
    return {
        "dataset": dataset,
        "budget_min": budget_min,
        "cpu": cpu_label(),
        "test_images": len(gt_rows),
        "small_lesion_images": len(small),
        "small_limit": SMALL,
        "models": rows,
        "paired": [p for a, b in PAIRS if (p := paired(out, a, b, small))],
        "not_scored": not_scored(out, {r["model"] for r in rows}),
        "plan": plan_summary(out),
    }


def not_scored(out: Path, scored: set[str]) -> list[dict]:
    """Arms that were started but have no scores, with the exit codes of their steps."""
    missing = []
    for arm in ARMS:
        steps = {s: read_json(out / "steps" / f"{s}_{arm}.json") for s in ("train", "predict", "eval")}
        if arm not in scored and any(steps.values()):
            codes = {s: r["rc"] for s, r in steps.items() if r}
            missing.append({"model": arm, "exit_codes": codes, "logs": f"logs/*_{arm}.log"})
    return missing


def _model_line(r: Mapping, cpu: str) -> str:
    d, s, t = r["dice"], r["dice_small"], r["training"]
    fit = "-" if t["wall_s"] is None else f"{t['wall_s'] / 60:.1f} min ({t['wall_over_budget']:.2f}x)"
    if t["rc"]:
        fit += f", exit code {t['rc']}"
    return (
        f"| {r['model']} | {fmt_ci(d['mean'], [d['ci_low'], d['ci_high']])} | {r['n_images']} "
        f"| {fmt_ci(s['mean'], [s['ci_low'], s['ci_high']])} | {s['n']} "
        f"| {t['budget_s'] / 60:.1f} min | {fit} | {cpu} |"
    )


def _paired_line(p: Mapping) -> str:
    a, s = p["all"], p["small"]
    small = fmt_ci(s["mean_diff"], s["mean_diff_ci"]) if s else "-"
    return (
        f"| {p['first']} - {p['second']} | {fmt_ci(a['mean_diff'], a['mean_diff_ci'])} | {a['n_paired']} "
        f"| {a['first_better']}/{a['first_worse']}/{a['ties']} | {a['wilcoxon_p']:.3g} | {small} |"
    )


def _plan_line(p: Mapping) -> str:
    predicted = "-" if p.get("predicted_total_s") is None else f"{p['predicted_total_s'] / 60:.1f} min"
    return (
        f"Auto plan: {p['net']}, {p['image_size']} px (train size schedule {p['train_size_schedule']}), "
        f"{p['in_channels']} input channel(s), {p['precision']}, {p.get('epochs_trained')} epochs trained "
        f"({p.get('epochs_planned')} planned, at most {p['max_epochs']}); predicted {predicted} "
        "(auto/plan.md has every reason)."
    )


def markdown(rep: Mapping) -> str:
    """The tables of ``compare.md``."""
    cpu = rep["cpu"]["label"]
    lines = [
        f"# {rep['dataset']}: {' vs '.join(r['model'] for r in rep['models']) or 'no arm scored'} "
        f"at {rep['budget_min']:g} min",
        "",
        f"Test split: {rep['test_images']} images, {rep['small_lesion_images']} with a true lesion under "
        f"{rep['small_limit'] * 100:g} % of the frame. Dice per image at original resolution (segapp-eval), "
        "mean [95 % bootstrap CI]. Training wall = the whole training command (planning, start-up and "
        "the trust calibration included for segapp runs; loading the images for the reference), against the budget.",
        "",
        "| model | test Dice | n | Dice, lesion < 2 % | n | budget | training wall (x budget) | CPU |",
        "|---|---|---|---|---|---|---|---|",
        *(_model_line(r, cpu) for r in rep["models"]),
        "",
        "Paired differences (first minus second; better/worse/ties counts the first):",
        "",
        "| difference | mean [95 % paired bootstrap CI] | n | better/worse/ties | Wilcoxon p | lesion < 2 % |",
        "|---|---|---|---|---|---|",
        *(_paired_line(p) for p in rep["paired"]),
    ]
    ref = next((r for r in rep["models"] if r["model"] == "reference" and r.get("inner_train_s")), None)
    if ref:
        lines += ["", f"The reference's timed training loop: {ref['inner_train_s'] / 60:.2f} min, {ref['steps']} steps "
                  "(the rest of its wall is start-up and loading the images)."]  # fmt: skip
    for m in rep.get("not_scored", []):
        codes = ", ".join(f"{s} exit code {c}" for s, c in m["exit_codes"].items())
        lines += ["", f"Not scored: {m['model']} ({codes}; see {m['logs']})."]
    if rep.get("plan"):
        lines += ["", _plan_line(rep["plan"])]
    return "\n".join(lines) + "\n"


def write(out: Path, budget_min: float, dataset: str = "") -> dict:
    """Build the comparison and write ``compare.json`` and ``compare.md``."""
    rep = build(out, budget_min, dataset)
    (out / "compare.json").write_text(json.dumps(json_safe(rep), indent=1))
    (out / "compare.md").write_text(markdown(rep))
    return rep


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="the OUT folder of bench/auto_compare.py")
    args = p.parse_args()
    info = read_json(args.out / "run.json") or {}
    write(args.out, float(info.get("budget_min", math.nan)), info.get("dataset", ""))
    print((args.out / "compare.md").read_text())


if __name__ == "__main__":
    main()
