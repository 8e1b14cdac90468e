"""Evaluate paired cases and write ``metrics.csv``, ``summary.json``, figures and ``report.html``."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segapp.eval.calibration import ReliabilityBins, binary_entropy, check_probs, uncertainty_score
from segapp.eval.figures import (
    GALLERY_TITLE,
    contour_overlay,
    entropy_panel,
    gallery,
    histograms,
    mask_canvas,
    png_bytes,
    reliability_diagram,
    side_by_side,
    uncertainty_scatter,
)
from segapp.eval.html import render_html
from segapp.eval.metrics import COUNT_COLUMNS, METRIC_COLUMNS, MetricConfig, image_metrics
from segapp.eval.pairing import EvalCase
from segapp.eval.stats import FAILURE_DICE, summarize, uncertainty_summary
from segapp.io import MaskRule, ReadError, atomic_write, read_image, read_masks
from segapp.io.images import mask_values
from segapp.io.masks import MAX_LABEL, is_lossy, mask_pixels, misfit_reason, value_stats, values_text

CSV_COLUMNS: tuple[str, ...] = ("image",) + METRIC_COLUMNS + COUNT_COLUMNS
#: appended to ``metrics.csv`` when probability maps are given (``nan`` for an image without one)
UNCERTAINTY_COLUMN = "uncertainty"


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
        failure_dice: With probability maps: an image with Dice below this is a failure that the
            uncertainty should find (AUROC).
    """

    worst: int = 12
    n_boot: int = 2000
    seed: int = 0
    gt_threshold: float = 127
    pred_threshold: float = 127
    title: str = "segapp evaluation"
    foreground_labels: tuple[int, ...] | None = None
    gt_rule: MaskRule | None = None
    failure_dice: float = FAILURE_DICE


def load_gt(paths: Sequence[Path], rule: MaskRule | float = 127) -> np.ndarray:
    """OR together the ground-truth mask files of one image with the dataset's mask rule.

    Raises:
        ValueError: when a file is a colour photo rather than a mask (:func:`photo_reason`).
    """
    for p in paths:
        why = photo_reason(read_image(p))
        if why:
            raise ValueError(
                f"ground-truth mask {p}: expected a mask (a few values: 0/255, 0/1 or labels), got {why}, so it "
                "looks like a photo, not a mask; fix: point --gt at the masks (or a dataset with --layout and "
                "--mask-suffix/--mask-dir as segapp-data check suggests)"
            )
    return read_masks(paths, rule if isinstance(rule, MaskRule) else MaskRule("grey", float(rule)))


PHOTO_VALUES = 64
"""A multi-channel ground truth with at least this many distinct values (0-255 scale) ..."""
PHOTO_MID_SHARE = 0.25
"""... and this share of its pixels in the mid range 32..223 is a photo, not a mask. A JPEG mask
has many values too (compression noise), but only along its edges."""


def photo_reason(raw: np.ndarray) -> str | None:
    """Why a decoded ground-truth file looks like a photo (``None``: it may be a mask).

    Read as a mask (max over RGB, above 127), a photo becomes a plausible blob, so a folder of
    images taken for masks would be scored without a word.
    """
    if raw.ndim != 3 or raw.shape[2] < 3 or raw.size == 0:
        return None
    values = np.clip(np.rint(mask_values(raw)), 0, 255).astype(np.int64)
    distinct = int(np.count_nonzero(np.bincount(values.ravel(), minlength=256)))
    mid = float(((values >= 32) & (values <= 223)).mean())
    if distinct < PHOTO_VALUES or mid < PHOTO_MID_SHARE:
        return None
    return f"a {raw.shape[2]}-channel image with {distinct} distinct values, {mid:.0%} of its pixels mid-grey"


def gt_rule(cases: Sequence[EvalCase], opts: ReportOptions) -> MaskRule:
    """The ground truth's mask value rule: ``opts.gt_rule``, else decided from all its masks (as in training)."""
    if opts.gt_rule is not None:
        return opts.gt_rule
    from segapp.data.maskrule import dataset_mask_rule

    return dataset_mask_rule([c.gt for c in cases], opts.gt_threshold, opts.foreground_labels)[0]


def gt_misfit(paths: Sequence[Path], rule: MaskRule) -> tuple[dict[str, str] | None, dict[str, str] | None]:
    """Ground-truth files that read as empty only because of the set's grey rule:
    ``(problem, note)``.

    A ``{0, 1}`` (or label) PNG among JPEG masks, whose rule is then grey at 127, used to be scored
    as an empty ground truth: an empty prediction of its lesion got Dice 1, a right one Dice 0. It
    is a ``problem`` (an ``unpaired`` entry: not scored). A mask whose values all lie at or below
    the grey threshold may be a soft label no annotator majority reached, so it is scored as empty
    and returned as a ``note`` (a warning).
    """
    if rule.kind != "grey":
        return None, None
    for p in paths:
        st = value_stats(mask_pixels(p), is_lossy(p))
        why = misfit_reason(st, rule)
        if why and not st.lossy and st.top <= MAX_LABEL:
            return {
                "side": "ground_truth",
                "file": str(p),
                "reason": f"{why}; not scored (fix: save every mask of the set the same way, or --gt-threshold)",
            }, None
        if why:
            return None, {"file": str(p), "reason": why}
    return None, None


def load_pred(path: Path, threshold: float = 127) -> tuple[np.ndarray, str | None]:
    """A prediction mask (0/255 or 0/1 files; other values binarised at ``threshold``) and a
    warning when its values are not 0/255 or 0/1 (a probability map or a label map, say)."""
    values = mask_pixels(path)
    st = value_stats(values, is_lossy(path))
    present = set(st.present())
    binary01 = present <= {0, 1} and not st.lossy
    warn = None if present <= {0, 255} or present <= {0, 1} else f"values {values_text(st)}"
    if st.lossy and 0 < st.top <= threshold:  # a 0/1 mask saved as JPEG: its noise is no lesion, so all of it is lost
        warn = f"{LOSSY_EMPTY} {threshold:g} (values {values_text(st)}): read as empty"
    return (values >= 0.5 if binary01 else values > threshold), warn


LOSSY_EMPTY = "JPEG whose values are all at or below"


_PROBS_FIX = "fix: pass the --probs folder of the same segapp-predict --save-probs run as --pred"


def _wh(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


def _decode_png(path: Path) -> np.ndarray:
    """A one-channel 16-bit (0-65535) or 8-bit (0-255) PNG as probabilities in [0, 1]."""
    raw = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ReadError(path, "not a readable PNG")
    if raw.ndim != 2 or raw.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"probability map {path} is a {raw.dtype} PNG with {1 if raw.ndim == 2 else raw.shape[2]} channels; "
            f"expected one channel, 16-bit (0-65535 = probability 0-1) as segapp-predict --save-probs writes; "
            f"{_PROBS_FIX}"
        )
    return raw.astype(np.float32) / (65535.0 if raw.dtype == np.uint16 else 255.0)


def load_probs(path: Path) -> np.ndarray:
    """A probability map as ``H x W`` float32 in [0, 1]: a float ``.npy`` as stored (singleton axes
    dropped), a 16-bit PNG divided by 65535 (an 8-bit one by 255).

    Raises:
        ReadError: for a file that cannot be read (the case is listed, not fatal).
        ValueError: for a map that is not ``H x W`` or not in [0, 1] (logits, say): one line with the fix.
    """
    if path.suffix.lower() != ".npy":
        probs = _decode_png(path)
    else:
        try:
            probs = np.squeeze(np.load(path, allow_pickle=False)).astype(np.float32)
        except (OSError, ValueError) as e:
            raise ReadError(path, f"not a readable .npy ({e})") from e
    if probs.ndim != 2:
        raise ValueError(f"probability map {path} has shape {probs.shape}; expected H x W; {_PROBS_FIX}")
    try:
        check_probs(probs)
    except ValueError as e:
        raise ValueError(
            f"probability map {path}: {e} (logits?); expected calibrated probabilities; {_PROBS_FIX}"
        ) from e
    return probs


@dataclass
class ProbsScore:
    """Calibration bins filled case by case, and the images whose map was missing or unreadable."""

    bins: ReliabilityBins
    missing: list[dict[str, str]]

    def score(self, case: EvalCase, gt: np.ndarray, pred: np.ndarray) -> float:
        """Add the case's map to the bins; its uncertainty score, or NaN without a (readable) map.

        Raises:
            ValueError: when the map's size differs from the ground truth's (one line with the fix).
        """
        if case.probs is None:
            self.missing.append({"image": case.key, "file": "", "reason": f"no probability map for {case.key}"})
            return math.nan
        try:
            probs = load_probs(case.probs)
        except ReadError as e:
            self.missing.append({"image": case.key, "file": str(e.path), "reason": e.reason})
            return math.nan
        if probs.shape != gt.shape:
            raise ValueError(
                f"probability map {case.probs} is {_wh(probs.shape)} but its ground truth {case.gt[0]} is "
                f"{_wh(gt.shape)}; expected a map at the original image size, as segapp-predict --save-probs "
                f"writes; {_PROBS_FIX}"
            )
        self.bins.update(probs, gt)
        return uncertainty_score(probs, pred)


def evaluate_cases(
    cases: Sequence[EvalCase],
    cfg: MetricConfig,
    opts: ReportOptions,
    rule: MaskRule | None = None,
    probs: ProbsScore | None = None,
) -> tuple[list[dict], list[dict[str, str]], list[dict[str, str]]]:
    """Score every case; unreadable files and size mismatches become ``unpaired`` entries.

    With ``probs``, each scored image's probability map also goes into the calibration bins and
    its row gets an ``uncertainty`` (NaN without a map), one image at a time.

    Returns:
        ``(rows, problems, odd, notes)``: one ``metrics.csv`` row per scored image, the skipped
        ones, predictions whose values are not 0/255 or 0/1 (``file``, ``values``), and
        ground-truth masks scored as empty although they have values (``file``, ``reason``).
    """
    rule = rule or gt_rule(cases, opts)
    rows, problems, odd, notes = [], [], [], []
    for c in cases:
        try:
            misfit, note = gt_misfit(c.gt, rule)
            if misfit:
                problems.append(misfit)
                continue
            notes += [note] if note else []
            gt = load_gt(c.gt, rule)
            pred, warn = load_pred(c.pred, opts.pred_threshold) if c.pred else (np.zeros(gt.shape, bool), None)
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
        row = {"image": c.key, **image_metrics(pred, gt, cfg)}
        if probs is not None:
            row[UNCERTAINTY_COLUMN] = probs.score(c, gt, pred)
        rows.append(row)
    return rows, problems, odd, notes


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


def coverage(cases: Sequence[EvalCase], rows: Sequence[Mapping], unpaired: Sequence[Mapping[str, str]]) -> dict:
    """How many ground-truth images the scores are over, and why the others are not.

    Kept apart from harmless extras (predictions without ground truth): a mean over 9 of 12
    ground-truth images, the 3 missing being the hardest, reads better than the model is.
    """
    from segapp.eval.pairing import MASK_WITHOUT_IMAGE, NO_GROUND_TRUTH, NO_PREDICTION

    no_pred = [u["file"] for u in unpaired if u["side"] == "ground_truth" and u["reason"] == NO_PREDICTION]
    no_image = [u["file"] for u in unpaired if u["side"] == "ground_truth" and u["reason"] == MASK_WITHOUT_IMAGE]
    n_no_image = len({_image_of(f) for f in no_image})  # x_mask.png and x_mask_1.png: one image
    n_gt = len(cases) + len(no_pred) + n_no_image  # a mask whose image file is gone is still ground truth
    extra = [u for u in unpaired if u["reason"] == NO_GROUND_TRUTH]
    return {
        "ground_truth_images": n_gt,
        "scored": len(rows),
        "not_scored": n_gt - len(rows),
        "without_prediction": len(no_pred),
        "without_prediction_files": no_pred,
        "mask_without_image": n_no_image,
        "mask_without_image_files": no_image,
        "scored_as_empty": [c.key for c in cases if c.pred is None],
        "predictions_without_ground_truth": len(extra),
    }


def ground_truth_warning(notes: Sequence[Mapping[str, str]], rule: MaskRule) -> str | None:
    """Warning line for ground-truth masks scored as empty although they have values, or ``None``."""
    if not notes:
        return None
    return (
        f"{len(notes)} ground-truth mask(s) have values but none above the grey threshold {rule.threshold:g}, so "
        f"they were scored as empty, e.g. {notes[0]['file']}: {notes[0]['reason']}; fix: --gt-threshold below "
        "their lesion value if they are lesions"
    )


def _image_of(mask_file: str) -> str:
    """The image a mask file stands for: its folder and stem without a mask-name suffix."""
    from segapp.data.layouts.base import mask_key

    p = Path(mask_file)
    return str(p.parent / (mask_key(p.stem) or p.stem))


def prediction_warning(odd: Sequence[Mapping[str, str]], threshold: float = 127) -> str | None:
    """Warning line for predictions whose values are not 0/255 or 0/1, or ``None``."""
    if not odd:
        return None
    low = [o for o in odd if o["values"].startswith(LOSSY_EMPTY)]
    other = [o for o in odd if not o["values"].startswith(LOSSY_EMPTY)]
    lines = []
    if low:
        lines.append(
            f"{len(low)} JPEG prediction(s) are not empty but have no value above {threshold:g}, so they were read "
            f"as empty, e.g. {low[0]['file']}: {low[0]['values']}; fix: save 0/1 masks as PNG, or as 0/255"
        )
    if other:
        lines.append(
            f"{len(other)} prediction(s) have values other than 0/255 or 0/1, e.g. {other[0]['file']}: "
            f"{other[0]['values']}; they were binarised above {threshold:g} (0-255 scale); fix: pass binary masks "
            "(segapp-predict writes 0/255)"
        )
    return "; ".join(lines)


def worst_cases(rows: Sequence[Mapping], n: int) -> list[Mapping]:
    """The ``n`` rows with the lowest Dice, ascending (undefined Dice last, ties by name)."""
    return sorted(rows, key=lambda r: (math.isnan(float(r["dice"])), float(r["dice"]), str(r["image"])))[:n]


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def write_metrics_csv(path: Path, rows: Sequence[Mapping], columns: Sequence[str] = CSV_COLUMNS) -> None:
    """One row per image, ``columns`` (default :data:`CSV_COLUMNS`)."""
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            w.writerow([_fmt(r[c]) for c in columns])


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
        return image, gt, load_pred(c.pred, opts.pred_threshold)[0] if c.pred else np.zeros(gt.shape, bool)

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
        The ``summary.json`` content; with probability maps on the cases (``EvalCase.probs``) also
        ``calibration`` (ECE, MCE, Brier, NLL, the reliability bins, images ``missing`` a map) and
        ``uncertainty`` (AUROC for failures, Spearman's rho against Dice), and ``metrics.csv`` gets
        an ``uncertainty`` column.

    Raises:
        ValueError: If no case could be scored (the message counts the reasons), or a probability
            map is unusable (size differs from its ground truth, values outside [0, 1]) or no
            scored image has one.
    """
    cfg, opts = cfg or MetricConfig(), opts or ReportOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rule = gt_rule(cases, opts)
    probs = ProbsScore(ReliabilityBins(), []) if any(c.probs is not None for c in cases) else None
    rows, problems, odd, notes = evaluate_cases(cases, cfg, opts, rule, probs)
    unpaired = list(unpaired) + problems
    if not rows:
        raise ValueError(nothing_scored(len(cases), unpaired))
    warning = prediction_warning(odd, opts.pred_threshold)
    summary = summarize(rows, n_boot=opts.n_boot, seed=opts.seed)
    summary["coverage"] = coverage(cases, rows, unpaired)
    worst = worst_cases(rows, opts.worst)
    panels = _gallery_panels(worst, cases, opts, rule, with_probs=probs is not None)
    hist_png = histograms(rows, METRIC_COLUMNS, cfg.unit, out / "figures" / "histograms.png")
    gallery(
        [(f"{r['image']}  Dice {float(r['dice']):.3f}", p) for r, p in panels],
        out / "figures" / "worst_cases.png",
        cols=2 if probs else 4,
        title=GALLERY_TITLE + ("; right: uncertainty (entropy)" if probs else ""),
    )
    doc = {
        "source": dict(source or {}),
        "config": _config(cfg, opts, rule),
        "summary": summary,
        "worst": [r["image"] for r in worst],
        "unpaired": unpaired,
        "warnings": [w for w in (warning, ground_truth_warning(notes, rule)) if w],
        "odd_predictions": odd,
    }
    figs: dict[str, bytes] = {}
    if probs is not None:
        doc["calibration"], doc["uncertainty"], figs = _probs_view(out, rows, probs, opts)
    doc = json_safe(doc)
    write_metrics_csv(out / "metrics.csv", rows, CSV_COLUMNS + ((UNCERTAINTY_COLUMN,) if probs else ()))
    with atomic_write(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=2))
    html = render_html(opts.title, doc, hist_png, [(r, png_bytes(p)) for r, p in panels], figs)
    with atomic_write(out / "report.html") as tmp:
        tmp.write_text(html, encoding="utf-8")
    return doc


def _config(cfg: MetricConfig, opts: ReportOptions, rule: MaskRule) -> dict:
    """The ``config`` block of ``summary.json``: every setting the numbers depend on."""
    return {
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


def _gallery_panels(
    worst: Sequence[Mapping], cases: Sequence[EvalCase], opts: ReportOptions, rule: MaskRule, with_probs: bool
) -> list[tuple[Mapping, np.ndarray]]:
    """``(row, picture)`` per worst case: the contour overlay, and with probability maps the
    per-pixel entropy beside it (dark grey where the image has no readable map)."""
    load = case_loader(cases, opts, rule)
    by_key = {c.key: c for c in cases}
    panels = []
    for r in worst:
        overlay = contour_overlay(*load(str(r["image"])))
        if with_probs:
            overlay = side_by_side(overlay, _entropy_picture(by_key[str(r["image"])], overlay.shape[:2]))
        panels.append((r, overlay))
    return panels


def _entropy_picture(case: EvalCase, size: tuple[int, int]) -> np.ndarray:
    """The case's per-pixel entropy as a picture of ``size``, or a dark grey one without a readable map."""
    try:
        if case.probs is not None:
            return entropy_panel(binary_entropy(load_probs(case.probs)), size)
    except ReadError:
        pass
    return np.full((*size, 3), 48, np.uint8)


def _probs_view(out: Path, rows: Sequence[Mapping], probs: ProbsScore, opts: ReportOptions):
    """``(calibration, uncertainty, figures)``: the reliability table and errors, the uncertainty
    summary, and the reliability diagram and uncertainty scatter (also written under ``figures/``).

    Raises:
        ValueError: when no scored image had a readable probability map.
    """
    if probs.bins.n_pixels == 0:
        first = probs.missing[0] if probs.missing else {"image": "?", "reason": "?"}
        raise ValueError(
            f"no scored image has a readable probability map ({len(probs.missing)} without, e.g. {first['image']}: "
            f"{first['reason']}); expected <rel>.prob.png or <rel>.prob.npy beside each <rel>.mask.png; {_PROBS_FIX}"
        )
    cal = {**probs.bins.result(), "missing": probs.missing}
    unc = uncertainty_summary(rows, opts.failure_dice, opts.n_boot, opts.seed)
    figs = {
        "reliability": reliability_diagram(cal, out / "figures" / "reliability.png"),
        "uncertainty": uncertainty_scatter(rows, opts.failure_dice, out / "figures" / "uncertainty.png"),
    }
    return cal, unc, figs
