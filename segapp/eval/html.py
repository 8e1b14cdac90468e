"""Render ``report.html``: one self-contained file (inline CSS, images as base64 data URIs)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from html import escape

from segapp.eval.figures import data_uri

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2} td:first-child,th:first-child{text-align:left}
.gallery{display:flex;flex-wrap:wrap;gap:12px}
.case{border:1px solid #ddd;padding:6px;font-size:12px;width:330px}
.case img{max-width:320px;display:block}
.case.wide{width:660px} .case.wide img{max-width:650px}
.note{color:#555;font-size:13px}
"""
_UNPAIRED_SHOWN = 200


def _num(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else escape(str(v))


def _table(header: Sequence[str], rows: Sequence[Sequence], cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def _summary_table(summary: Mapping, unit: str) -> str:
    rows = []
    for m, d in summary["metrics"].items():
        name = f"{m} ({unit})" if m in ("hd95", "assd") else m
        ci = f"[{_num(d['ci_low'])}, {_num(d['ci_high'])}]"
        rows.append([escape(name), d["n"], _num(d["mean"]), _num(d["median"]), _num(d["std"]), ci, d["n_nan"]])
    return _table(["metric", "n", "mean", "median", "std", "95% CI of mean", "undefined"], rows)


def _dice_table(s: Mapping) -> str:
    ci = lambda v: f"[{_num(v[0])}, {_num(v[1])}]"  # noqa: E731
    rows = [
        ["Dice, macro (mean of per-image Dice)", _num(s["dice_macro"]), ci(s["dice_macro_ci"])],
        ["Dice, micro (pooled pixels over all images)", _num(s["dice_micro"]), ci(s["dice_micro_ci"])],
        ["IoU, micro (pooled)", _num(s["iou_micro"]), ci(s["iou_micro_ci"])],
    ]
    note = s.get("ci_note")
    why = f"<p class='note'><b>{escape(note)}</b> (a bootstrap over so few images is no interval)</p>" if note else ""
    return _table(["score", "value", "95% CI"], rows) + why


def _cases_table(s: Mapping, policy: Mapping) -> str:
    meaning = {
        "both_empty": f"no lesion, none predicted (scored {policy['empty_empty']})",
        "false_pos": "no lesion, but something predicted (overlap scores 0)",
        "missed": "lesion present, nothing predicted (overlap scores 0)",
        "both": "lesion present and predicted",
    }
    rows = [[escape(k), escape(meaning[k]), n] for k, n in s["cases"].items()]
    rows.append(
        ["HD95/ASSD undefined", f"policy distance_empty = {escape(policy['distance_empty'])}", s["distance_undefined"]]
    )
    return _table(["case", "meaning", "images"], rows)


def _lesion_table(les: Mapping) -> str:
    return _table(
        ["TP", "FP", "FN", "precision", "recall", "F1"],
        [[les["tp"], les["fp"], les["fn"], _num(les["precision"]), _num(les["recall"]), _num(les["f1"])]],
    )


def _gallery(panels: Sequence[tuple[Mapping, bytes]], unit: str) -> str:
    items = []
    for rank, (r, png) in enumerate(panels, 1):
        hd = r["hd95"]
        wide = "uncertainty" in r
        unc = f" · uncertainty {_num(float(r['uncertainty']), 3)}" if wide else ""
        items.append(
            f'<div class="case{" wide" if wide else ""}" data-rank="{rank}" data-dice="{float(r["dice"]):.6f}">'
            f'<img src="{data_uri(png)}" alt="{escape(str(r["image"]))}">'
            f"<b>#{rank} {escape(str(r['image']))}</b><br>Dice {_num(float(r['dice']), 3)} · IoU "
            f"{_num(float(r['iou']), 3)} · HD95 {_num(float(hd), 1)} {unit} · {escape(str(r['case']))}{unc}<br>"
            f"lesions: {r['lesion_tp']} found, {r['lesion_fn']} missed, {r['lesion_fp']} false</div>"
        )
    return '<div class="gallery">' + "".join(items) + "</div>"


def _missing_maps(missing: Sequence[Mapping]) -> str:
    """The images scored without a probability map (left out of calibration and uncertainty)."""
    if not missing:
        return ""
    rows = [[escape(m["image"]), escape(m["reason"])] for m in missing[:_UNPAIRED_SHOWN]]
    more = f"<p class='note'>… and {len(missing) - _UNPAIRED_SHOWN} more</p>" if len(missing) > _UNPAIRED_SHOWN else ""
    return (
        f"<p class='note'>{len(missing)} scored image(s) have no usable probability map; they count in the "
        "metrics above but not here:</p>" + _table(["image", "reason"], rows) + more
    )


def _calibration(cal: Mapping, png: bytes) -> str:
    """The "Calibration" section: ECE, MCE, Brier, NLL and the reliability diagram."""
    nums = _table(
        ["ECE", "MCE", "Brier", "NLL (nats/pixel)", "images", "pixels"],
        [[_num(cal["ece"]), _num(cal["mce"]), _num(cal["brier"]), _num(cal["nll"]), cal["n_images"], cal["n_pixels"]]],
    )
    return f"""<h2>Calibration</h2>
<p class="note">Pixel level, over every pixel of the images with a probability map, against the ground truth.
{cal["n_bins"]} equal-width bins of predicted probability; ECE = sum over bins of (pixels in bin / all pixels)
× |mean predicted probability − observed lesion frequency|; MCE = the largest such gap; Brier = mean
(p − y)²; NLL = mean −log likelihood (p clipped to [1e-6, 1 − 1e-6]).</p>
{nums}
<img src="{data_uri(png)}" alt="reliability diagram">
{_missing_maps(cal.get("missing", []))}"""


def _uncertainty(unc: Mapping, png: bytes) -> str:
    """The "Uncertainty" section: how well per-image uncertainty finds failures, and the scatter."""
    fd = unc["failure_dice"]
    nums = _table(
        ["images", f"failures (Dice < {fd:g})", "AUROC (failure)", "Spearman rho vs Dice", "p", "mean (failures)"]
        + ["mean (others)"],
        [
            [
                unc["n"],
                unc["n_failures"],
                _num(unc["auroc"]),
                _num(unc["spearman_rho"]),
                _num(unc["spearman_p"]),
                _num(unc["mean_uncertainty_failures"]),
                _num(unc["mean_uncertainty_others"]),
            ]
        ],
    )
    return f"""<h2>Uncertainty</h2>
<p class="note">Per-image uncertainty (column <code>uncertainty</code> of metrics.csv): mean binary entropy,
in bits, of the probability over the predicted lesion and a border band (the mask dilated by 2 % of the
shorter side, at least 1 px; the whole image when nothing is predicted). AUROC: the chance that a failure
(Dice &lt; {fd:g}) is more uncertain than a success (0.5 = no better than chance; n/a when all or none fail).
A useful score has a negative Spearman rho against Dice.</p>
{nums}
<img src="{data_uri(png)}" alt="uncertainty vs Dice">"""


def _probs_sections(doc: Mapping, figs: Mapping[str, bytes]) -> str:
    """Calibration and Uncertainty sections, or nothing without probability maps."""
    if "calibration" not in doc:
        return ""
    return _calibration(doc["calibration"], figs["reliability"]) + _uncertainty(doc["uncertainty"], figs["uncertainty"])


def _coverage(s: Mapping, n_unpaired: int) -> str:
    """``9 of 12 ground-truth images scored (3 without a prediction), ...``; bold when some are not."""
    cov = s.get("coverage")
    if not cov:
        return f"{s['n_images']} images scored, {n_unpaired} files left out."
    text = (
        f"{cov['scored']} of {cov['ground_truth_images']} ground-truth images scored "
        f"({cov['without_prediction']} without a prediction, {len(cov['scored_as_empty'])} scored as empty "
        f"predictions); {cov['predictions_without_ground_truth']} predictions without ground truth; "
        f"{n_unpaired} files left out."
    )
    return f"<b>{escape(text)} The means are over the scored images only.</b>" if cov["not_scored"] else escape(text)


def _unpaired(unpaired: Sequence[Mapping]) -> str:
    if not unpaired:
        return "<p>All files were paired.</p>"
    rows = [[escape(u["side"]), escape(u["file"]), escape(u["reason"])] for u in unpaired[:_UNPAIRED_SHOWN]]
    more = (
        f"<p class='note'>… and {len(unpaired) - _UNPAIRED_SHOWN} more (see summary.json)</p>"
        if len(unpaired) > _UNPAIRED_SHOWN
        else ""
    )
    return _table(["side", "file", "reason"], rows) + more


def render_html(
    title: str,
    doc: Mapping,
    hist_png: bytes,
    panels: Sequence[tuple[Mapping, bytes]],
    figs: Mapping[str, bytes] | None = None,
) -> str:
    """The report as one HTML string with no external resources.

    Args:
        title: Page title.
        doc: The ``summary.json`` content (``source``, ``config``, ``summary``, ``unpaired``; with
            probability maps also ``calibration`` and ``uncertainty``).
        hist_png: Histogram figure (PNG bytes).
        panels: Worst cases in order: ``(metrics row, overlay PNG bytes)``.
        figs: With probability maps: ``reliability`` and ``uncertainty`` figures (PNG bytes).
    """
    s, cfg = doc["summary"], doc["config"]
    unit = cfg["unit"]
    right = (
        " Right: per-pixel uncertainty (binary entropy; black = certain, light yellow = 1 bit)."
        if "calibration" in doc
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="note">{_coverage(s, len(doc["unpaired"]))}
{escape("; ".join(f"{k}: {v}" for k, v in doc["source"].items()))}</p>
{"".join(f'<p class="note"><b>warning:</b> {escape(w)}</p>' for w in doc.get("warnings", []))}
<h2>Summary</h2>
{_dice_table(s)}
{_summary_table(s, unit)}
<p class="note">Per-image metrics; 95% CI: percentile bootstrap over images
({cfg["n_boot"]} resamples, seed {cfg["seed"]}).
Boundary F1 and NSD at tolerance {cfg["tolerance"]} {unit}. ISIC Jaccard = IoU, 0 below 0.65.</p>
<h2>Empty masks</h2>
{_cases_table(s, cfg)}
<h2>Lesion-wise detection</h2>
{_lesion_table(s["lesions"])}
<p class="note">Connected components ({cfg["connectivity"]}-connected), matched when overlap
&gt; {cfg["lesion_min_overlap"]};
components under {cfg["min_lesion_area"]} px are not counted as lesions.</p>
<h2>Distributions</h2>
<img src="{data_uri(hist_png)}" alt="metric histograms">
{_probs_sections(doc, figs or {})}
<h2>Worst {len(panels)} cases (lowest Dice first)</h2>
<p class="note">Ground truth: green contour; prediction: magenta contour.{right}</p>
{_gallery(panels, unit)}
<h2>Left out</h2>
{_unpaired(doc["unpaired"])}
<h2>Configuration</h2>
<pre>{escape(json.dumps(cfg, indent=2))}</pre>
</body></html>
"""
