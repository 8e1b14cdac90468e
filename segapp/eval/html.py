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
    return _table(["score", "value", "95% CI"], rows)


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
        items.append(
            f'<div class="case" data-rank="{rank}" data-dice="{float(r["dice"]):.6f}">'
            f'<img src="{data_uri(png)}" alt="{escape(str(r["image"]))}">'
            f"<b>#{rank} {escape(str(r['image']))}</b><br>Dice {_num(float(r['dice']), 3)} · IoU "
            f"{_num(float(r['iou']), 3)} · HD95 {_num(float(hd), 1)} {unit} · {escape(str(r['case']))}<br>"
            f"lesions: {r['lesion_tp']} found, {r['lesion_fn']} missed, {r['lesion_fp']} false</div>"
        )
    return '<div class="gallery">' + "".join(items) + "</div>"


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


def render_html(title: str, doc: Mapping, hist_png: bytes, panels: Sequence[tuple[Mapping, bytes]]) -> str:
    """The report as one HTML string with no external resources.

    Args:
        title: Page title.
        doc: The ``summary.json`` content (``source``, ``config``, ``summary``, ``unpaired``).
        hist_png: Histogram figure (PNG bytes).
        panels: Worst cases in order: ``(metrics row, overlay PNG bytes)``.
    """
    s, cfg = doc["summary"], doc["config"]
    unit = cfg["unit"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="note">{s["n_images"]} images scored, {len(doc["unpaired"])} files left out.
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
<h2>Worst {len(panels)} cases (lowest Dice first)</h2>
<p class="note">Ground truth: green contour; prediction: magenta contour.</p>
{_gallery(panels, unit)}
<h2>Left out</h2>
{_unpaired(doc["unpaired"])}
<h2>Configuration</h2>
<pre>{escape(json.dumps(cfg, indent=2))}</pre>
</body></html>
"""
