"""Evaluate paired cases and write ``metrics.csv``, ``summary.json``, figures and ``report.html``."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segapp.eval.figures import contour_overlay, gallery, histograms, mask_canvas, png_bytes
from segapp.eval.html import render_html
from segapp.eval.metrics import COUNT_COLUMNS, METRIC_COLUMNS, MetricConfig, image_metrics
from segapp.eval.pairing import EvalCase
from segapp.eval.stats import summarize
from segapp.io import MaskRule, ReadError, atomic_write, read_image, read_masks
from segapp.io.masks import is_lossy, mask_pixels, value_stats, values_text

CSV_COLUMNS: tuple[str, ...] = ("image",) + METRIC_COLUMNS + COUNT_COLUMNS


@dataclass(frozen=True)
class ReportOptions:
    """Report settings besides the metric configuration.

    Args:
        worst: Number of worst cases (lowest Dice) in the gallery.
        n_boot: Bootstrap resamples for the confidence intervals.
        seed: Bootstrap seed.
        gt_threshold: Threshold for grey ground-truth masks (0-255 scale), as ``data.mask_threshold``.
        pred_threshold: Prediction mask binarisation threshold (0-255 scale).
        title: Report title.
        foreground_labels: Label-map ground truth: the labels that are lesion (``None``: any non-zero).
        gt_rule: The ground truth's mask value rule when known (e.g. the training run's); else it
            is decided from all ground-truth masks of the cases, as for training.
    """

    worst: int = 12
    n_boot: int = 2000
    seed: int = 0
    gt_threshold: float = 127
    pred_threshold: float = 127
    title: str = "segapp evaluation"
    foreground_labels: tuple[int, ...] | None = None
    gt_rule: MaskRule | None = None


def load_gt(paths: Sequence[Path], rule: MaskRule | float = 127) -> np.ndarray:
    """OR together the ground-truth mask files of one image with the dataset's mask rule."""
    return read_masks(paths, rule if isinstance(rule, MaskRule) else MaskRule("grey", float(rule)))


def gt_rule(cases: Sequence[EvalCase], opts: ReportOptions) -> MaskRule:
    """The ground truth's mask value rule: ``opts.gt_rule``, else decided from all its masks (as in training)."""
    if opts.gt_rule is not None:
        return opts.gt_rule
    from segapp.data.maskrule import dataset_mask_rule

    return dataset_mask_rule([c.gt for c in cases], opts.gt_threshold, opts.foreground_labels)[0]


def load_pred(path: Path, threshold: float = 127) -> tuple[np.ndarray, str | None]:
    """A prediction mask (0/255 or 0/1 files; other values binarised at ``threshold``) and a
    warning when its values are not 0/255 or 0/1 (a probability map or a label map, say)."""
    values = mask_pixels(path)
    st = value_stats(values, is_lossy(path))
    present = set(st.present())
    binary01 = present <= {0, 1} and not st.lossy
    warn = None if present <= {0, 255} or present <= {0, 1} else f"values {values_text(st)}"
    return (values >= 0.5 if binary01 else values > threshold), warn


def evaluate_cases(
    cases: Sequence[EvalCase], cfg: MetricConfig, opts: ReportOptions, rule: MaskRule | None = None
) -> tuple[list[dict], list[dict[str, str]], list[dict[str, str]]]:
    """Score every case; unreadable files and size mismatches become ``unpaired`` entries.

    Returns:
        ``(rows, problems, odd)``: one ``metrics.csv`` row per scored image, the skipped ones,
        and predictions whose values are not 0/255 or 0/1 (``file``, ``values``).
    """
    rule = rule or gt_rule(cases, opts)
    rows, problems, odd = [], [], []
    for c in cases:
        try:
            gt = load_gt(c.gt, rule)
            pred, warn = load_pred(c.pred, opts.pred_threshold)
        except ReadError as e:
            problems.append({"side": "read", "file": str(e.path), "reason": e.reason})
            continue
        if warn:
            odd.append({"file": str(c.pred), "values": warn})
        if gt.shape != pred.shape:
            problems.append(
                {
                    "side": "prediction",
                    "file": str(c.pred),
                    "reason": f"size {pred.shape[1]}x{pred.shape[0]} differs from ground truth "
                    f"{gt.shape[1]}x{gt.shape[0]}; predict at original resolution",
                }
            )
            continue
        rows.append({"image": c.key, **image_metrics(pred, gt, cfg)})
    return rows, problems, odd


def nothing_scored(n_cases: int, unpaired: Sequence[Mapping[str, str]]) -> str:
    """One line saying why no image could be scored: the reasons, counted, with an example each."""
    counts = Counter(u["reason"] for u in unpaired)
    first = {u["reason"]: u["file"] for u in reversed(list(unpaired))}
    reasons = "; ".join(f"{n} x {why} (e.g. {first[why]})" for why, n in counts.most_common(4))
    more = f"; and {len(counts) - 4} other reason(s)" if len(counts) > 4 else ""
    return (
        f"no image could be scored ({n_cases} paired, {len(unpaired)} left out): {reasons or 'no files found'}{more}; "
        "fix: predictions must be named after the ground-truth images (or their masks) and have their size"
    )


def prediction_warning(odd: Sequence[Mapping[str, str]], threshold: float = 127) -> str | None:
    """Warning line for predictions whose values are not 0/255 or 0/1, or ``None``."""
    if not odd:
        return None
    return (
        f"{len(odd)} prediction(s) have values other than 0/255 or 0/1, e.g. {odd[0]['file']}: {odd[0]['values']}; "
        f"they were binarised above {threshold:g} (0-255 scale); fix: pass binary masks (segapp-predict writes 0/255)"
    )


def worst_cases(rows: Sequence[Mapping], n: int) -> list[Mapping]:
    """The ``n`` rows with the lowest Dice, ascending (undefined Dice last, ties by name)."""
    return sorted(rows, key=lambda r: (math.isnan(float(r["dice"])), float(r["dice"]), str(r["image"])))[:n]


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def write_metrics_csv(path: Path, rows: Sequence[Mapping]) -> None:
    """One row per image, columns :data:`CSV_COLUMNS`."""
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for r in rows:
            w.writerow([_fmt(r[c]) for c in CSV_COLUMNS])


def read_metrics_csv(path: str | Path) -> list[dict]:
    """Read a ``metrics.csv`` back (numbers as float/int, ``case`` and ``image`` as text)."""
    out = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            row: dict = {}
            for k, v in r.items():
                row[k] = v if k in ("image", "case") else (int(v) if v.lstrip("-").isdigit() else float(v))
            out.append(row)
    return out


def json_safe(obj):
    """NaN/inf -> None, tuples -> lists, recursively (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


CaseLoader = Callable[[str], tuple[np.ndarray | None, np.ndarray, np.ndarray]]


def case_loader(cases: Sequence[EvalCase], opts: ReportOptions, rule: MaskRule | None = None) -> CaseLoader:
    """``key -> (image, gt, pred)`` for the gallery; without an image (a folder of masks only,
    or an unreadable one) the canvas is the ground-truth mask itself, in grey."""
    rule = rule or gt_rule(cases, opts)
    by_key = {c.key: c for c in cases}

    def load(key: str):
        c = by_key[key]
        image = None
        if c.image is not None:
            try:
                image = read_image(c.image)
            except ReadError:
                image = None
        gt = load_gt(c.gt, rule)
        if image is None:
            image = mask_canvas(gt)
        return image, gt, load_pred(c.pred, opts.pred_threshold)[0]

    return load


def write_report(
    out_dir: str | Path,
    cases: Sequence[EvalCase],
    cfg: MetricConfig | None = None,
    opts: ReportOptions | None = None,
    unpaired: Sequence[Mapping[str, str]] = (),
    source: Mapping[str, str] | None = None,
) -> dict:
    """Evaluate ``cases`` and write the full report into ``out_dir``.

    Args:
        out_dir: Output folder (created).
        cases: Paired prediction/ground-truth files.
        cfg: Metric configuration (policy, spacing, tolerance, lesion matching).
        opts: Report options (gallery size, bootstrap, thresholds).
        unpaired: Files left out by pairing, listed in the report.
        source: Free-form provenance shown in the report (e.g. prediction and GT folders).

    Returns:
        The ``summary.json`` content.

    Raises:
        ValueError: If no case could be scored (the message counts the reasons).
    """
    cfg, opts = cfg or MetricConfig(), opts or ReportOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rule = gt_rule(cases, opts)
    rows, problems, odd = evaluate_cases(cases, cfg, opts, rule)
    unpaired = list(unpaired) + problems
    if not rows:
        raise ValueError(nothing_scored(len(cases), unpaired))
    warning = prediction_warning(odd, opts.pred_threshold)
    summary = summarize(rows, n_boot=opts.n_boot, seed=opts.seed)
    worst = worst_cases(rows, opts.worst)
    load = case_loader(cases, opts, rule)
    panels = [(r, contour_overlay(*load(str(r["image"])))) for r in worst]
    hist_png = histograms(rows, METRIC_COLUMNS, cfg.unit, out / "figures" / "histograms.png")
    gallery([(f"{r['image']}  Dice {float(r['dice']):.3f}", p) for r, p in panels], out / "figures" / "worst_cases.png")
    config = {
        **cfg.policy.to_dict(),
        "spacing": cfg.spacing,
        "unit": cfg.unit,
        "tolerance": cfg.tolerance,
        "connectivity": cfg.connectivity,
        "lesion_min_overlap": cfg.lesion_min_overlap,
        "min_lesion_area": cfg.min_lesion_area,
        "gt_threshold": opts.gt_threshold,
        "pred_threshold": opts.pred_threshold,
        "gt_mask_rule": {**rule.to_dict(), "text": rule.describe()},
        "n_boot": opts.n_boot,
        "seed": opts.seed,
    }
    doc = json_safe(
        {
            "source": dict(source or {}),
            "config": config,
            "summary": summary,
            "worst": [r["image"] for r in worst],
            "unpaired": unpaired,
            "warnings": [warning] if warning else [],
            "odd_predictions": odd,
        }
    )
    write_metrics_csv(out / "metrics.csv", rows)
    with atomic_write(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=2))
    html = render_html(opts.title, doc, hist_png, [(r, png_bytes(p)) for r, p in panels])
    with atomic_write(out / "report.html") as tmp:
        tmp.write_text(html, encoding="utf-8")
    return doc
