"""The review page: ``review.html`` next to ``predictions.csv``, the scans to look at first.

One self-contained HTML file (inline CSS and JS, thumbnails embedded as ``data:`` URIs, no
request leaves the page), so it opens offline from ``file://`` and can be mailed or archived
with the run. Cards show the flagged scans sorted by ``risk`` (highest first), then, if room is
left, the riskiest unflagged ones; at most ``max_cards`` cards, so a 10,000-scan run still gives
a page of a few megabytes. Error rows are a compact table, not cards.

Thumbnails are written during prediction (:func:`make_thumb`, :func:`write_thumb`) under
``review/thumbs/<output_name(rel, "thumb", frame)>`` and embedded here as they are (JPEG).

Imports only numpy, Pillow, the standard library and segapp's own I/O helpers: it runs in the
slim ONNX container (no torch, Lightning or matplotlib).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image, ImageDraw

from segapp.inference.outputs import output_name
from segapp.inference.postprocess import _display_rgb, overlay
from segapp.io import atomic_write, resize_array

REVIEW_HTML = "review.html"
CSV_NAME = "predictions.csv"
THUMB_DIR = Path("review") / "thumbs"
#: the widest a thumbnail panel may be, in multiples of its height (very wide scans are shrunk)
MAX_ASPECT = 3.0
#: how many error rows the table lists before it only counts the rest
MAX_ERROR_ROWS = 200
SCORES = ("risk", "uncertainty", "est_dice", "agreement", "ood_score", "input_check", "lesion_fraction")
NOT_FLAGGED = "not flagged"
JPEG_QUALITY = 85


# --- thumbnails -----------------------------------------------------------------------------


def _panel_size(shape: tuple[int, ...], height: int) -> tuple[int, int]:
    """``(h, w)`` of a panel fitting ``height x MAX_ASPECT*height``, keeping the scan's aspect."""
    h, w = shape[:2]
    scale = min(height / h, MAX_ASPECT * height / w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _image_panel(image: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The image at ``size`` with the mask contour drawn (resized first, so the line stays 1 px)."""
    img = image[:, :, None] if image.ndim == 2 else image
    if img.dtype != np.uint8 and np.issubdtype(img.dtype, np.floating):
        img = np.nan_to_num(img, nan=0.0, posinf=0.0, neginf=0.0)
    small = resize_array(_display_rgb(img), size, "area")
    small_mask = resize_array(np.asarray(mask, bool).astype(np.uint8), size, "nearest") > 0
    return overlay(small, small_mask, alpha=0.2)


def _heat(u: np.ndarray) -> np.ndarray:
    """Uncertainty in [0, 1] -> uint8 RGB, black -> red -> yellow (no matplotlib)."""
    u = np.clip(np.nan_to_num(u.astype(np.float32), nan=0.0), 0.0, 1.0)
    rgb = np.stack([np.clip(2 * u, 0, 1), np.clip(2 * u - 1, 0, 1), np.zeros_like(u)], axis=2)
    return np.rint(rgb * 255).astype(np.uint8)


def _na_panel(size: tuple[int, int]) -> np.ndarray:
    """Grey panel saying ``n/a``: the scan has no uncertainty map."""
    pic = Image.new("RGB", (size[1], size[0]), (96, 96, 96))
    ImageDraw.Draw(pic).text((size[1] // 2, size[0] // 2), "n/a", fill=(230, 230, 230), anchor="mm")
    return np.asarray(pic)


def make_thumb(image: np.ndarray, mask: np.ndarray, uncertainty: np.ndarray | None, height: int = 160) -> np.ndarray:
    """uint8 RGB thumbnail: left the image with the mask contour, right the uncertainty map.

    Args:
        image: ``H x W x C`` (or ``H x W``) of any dtype; non-uint8 is min-max scaled for display.
        mask: bool ``h x w`` with the scan's aspect (any size; resized nearest).
        uncertainty: float ``h x w`` in [0, 1] (any size with the scan's aspect), or ``None``
            for a grey ``n/a`` panel.
        height: panel height in pixels; very wide scans get a lower panel (width <= 3 x height).

    Returns:
        ``h x (2w + gap) x 3`` uint8 with ``h <= height``.
    """
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"make_thumb: expected an H x W x C image, got shape {image.shape}")
    size = _panel_size(image.shape, height)
    left = _image_panel(image, mask, size)
    if uncertainty is None:
        right = _na_panel(size)
    else:
        right = _heat(resize_array(np.asarray(uncertainty, np.float32), size, "linear"))
    gap = np.full((size[0], 4, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def thumb_path(output_dir: Path, rel: str, frame: int | None) -> Path:
    """Where the thumbnail of input ``rel`` (frame ``frame``) lives: ``review/thumbs/<rel>[.fNNN].thumb.jpg``."""
    return Path(output_dir) / THUMB_DIR / output_name(Path(rel), "thumb", frame, ext="jpg")


def write_thumb(path: Path, rgb: np.ndarray) -> None:
    """Write a uint8 RGB thumbnail as JPEG atomically (a killed run never leaves half a picture).

    JPEG, not PNG: a fifth of the encoding time per scan, and the page embeds the bytes as they are.
    """
    with atomic_write(path, suffix=".jpg") as tmp:
        Image.fromarray(np.ascontiguousarray(rgb, np.uint8)).save(tmp, format="JPEG", quality=JPEG_QUALITY)


# --- rows -----------------------------------------------------------------------------------


def _text(v: Any) -> str:
    """A CSV cell as text (rows passed in memory may hold numbers or ``None``)."""
    return "" if v is None else str(v)


def _float(v: Any, default: float = -math.inf) -> float:
    """A numeric cell, or ``default`` when empty or not a number."""
    try:
        x = float(_text(v))
    except ValueError:
        return default
    return x if math.isfinite(x) else default


def _frame(v: Any) -> int | None:
    """The ``frame`` cell as an int, ``None`` for single-frame inputs."""
    s = _text(v).strip()
    return int(s) if s.isdigit() else None


def _reasons(row: dict[str, Any]) -> list[str]:
    """The ``review_reason`` cell split on ``"; "``."""
    return [r.strip() for r in _text(row.get("review_reason")).split(";") if r.strip()]


def read_rows(csv_path: Path) -> list[dict[str, str]]:
    """The data rows of ``predictions.csv``; a missing file raises naming the path and the fix."""
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"{csv_path}: no predictions.csv to build the review page from; "
            "fix: run segapp-predict into this folder first (or pass the rows)"
        )
    with csv_path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def pick_cards(rows: list[dict[str, Any]], max_cards: int) -> tuple[list[tuple[int, dict]], list[tuple[int, dict]]]:
    """``(flagged, unflagged)`` cards as ``(1-based row number, row)``, riskiest first, ``max_cards`` in all.

    Flagged rows (``review == "yes"``) come first; unflagged successful rows fill what is left.
    Ties keep CSV order.
    """
    numbered = [(i + 1, r) for i, r in enumerate(rows) if _text(r.get("status")) != "error"]

    def order(item: tuple[int, dict]) -> tuple[float, int]:
        return (-_float(item[1].get("risk")), item[0])

    flagged = sorted((x for x in numbered if _text(x[1].get("review")) == "yes"), key=order)
    rest = sorted((x for x in numbered if _text(x[1].get("review")) != "yes"), key=order)
    cap = max(0, max_cards)
    flagged = flagged[:cap]
    return flagged, rest[: cap - len(flagged)]


# --- HTML -----------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.2em 0 .4em}
.counts span{display:inline-block;margin:0 1.2em .3em 0}.note{color:#666}
#filters label{margin-right:1em;white-space:nowrap}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;max-width:500px}
.card.flagged{border-left:5px solid #d33}
.card .name{font-weight:600;word-break:break-all}
.thumb{display:block;max-width:100%;height:auto;margin:4px 0}
.nothumb{color:#888;font-style:italic;margin:4px 0}
.reason{display:inline-block;background:#fde2e2;color:#900;border-radius:3px;padding:0 5px;margin:2px 3px 2px 0}
table.scores{border-collapse:collapse;font-size:12px}table.scores td{padding:0 8px 0 0}
table.errors{border-collapse:collapse}
table.errors td,table.errors th{border:1px solid #ddd;padding:2px 6px;text-align:left}
.hidden{display:none}
"""

_JS = """
function applyFilters(){
  var on={};document.querySelectorAll('#filters input').forEach(function(b){on[b.value]=b.checked;});
  var shown=0,cards=document.querySelectorAll('.card');
  cards.forEach(function(c){
    var rs=c.dataset.reasons?c.dataset.reasons.split('; '):['NOT_FLAGGED'];
    var show=rs.some(function(r){return on[r]!==false;});
    c.classList.toggle('hidden',!show);if(show)shown++;
  });
  document.getElementById('shown').textContent=shown+' of '+cards.length+' cards shown';
}
function setAll(v){document.querySelectorAll('#filters input').forEach(function(b){b.checked=v;});applyFilters();}
document.addEventListener('DOMContentLoaded',function(){
  document.querySelectorAll('#filters input').forEach(function(b){b.addEventListener('change',applyFilters);});
  applyFilters();
});
window.addEventListener('load',function(){
  var imgs=document.querySelectorAll('img.thumb'),ok=0;
  imgs.forEach(function(i){if(i.complete&&i.naturalWidth>0)ok++;});
  document.body.dataset.cards=document.querySelectorAll('.card').length;
  document.body.dataset.thumbs=imgs.length;
  document.body.dataset.decoded=ok;
});
""".replace("NOT_FLAGGED", NOT_FLAGGED)


def _e(v: Any) -> str:
    """HTML-escape a cell for text and attribute values (file names may hold ``<``, ``&``, quotes)."""
    return html.escape(_text(v), quote=True)


def _href(rel: str) -> str:
    """A relative link to a file in the output folder, URL-quoted, then HTML-escaped."""
    return _e(quote(rel, safe="/"))


def _fmt(v: Any) -> str:
    """A score for display: numbers to 4 significant digits, empty cells as an en dash."""
    s = _text(v).strip()
    if not s:
        return "&ndash;"
    try:
        return f"{float(s):.4g}"
    except ValueError:
        return _e(s)


def _thumb_uri(path: Path) -> str | None:
    """The thumbnail as a JPEG ``data:`` URI (its bytes as written; another format re-encoded);
    ``None`` when absent or unreadable."""
    try:
        with Image.open(path) as pic:
            if pic.format == "JPEG":
                pic.verify()
                return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
            buf = io.BytesIO()
            pic.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    except (OSError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _card(output_dir: Path, number: int, row: dict[str, Any], flagged: bool) -> str:
    """One card: thumbnail, input (+ frame), scores, reasons and the CSV row it comes from."""
    rel, frame = _text(row.get("input")), _frame(row.get("frame"))
    if frame is not None and _text(row.get("output")) != output_name(Path(rel), "mask", frame).as_posix():
        frame = None  # a one-frame DICOM: its row says frame 0, its files carry no frame part
    reasons = _reasons(row)
    uri = _thumb_uri(thumb_path(output_dir, rel, frame)) if rel else None
    alt = f"thumbnail of {rel}"
    pic = f'<img class="thumb" src="{uri}" alt="{_e(alt)}">' if uri else '<div class="nothumb">no thumbnail</div>'
    name = _e(rel) + (f" <small>frame {frame}</small>" if frame is not None else "")
    scores = "".join(f"<tr><td>{k}</td><td>{_fmt(row.get(k))}</td></tr>" for k in SCORES)
    badges = "".join(f'<span class="reason">{_e(r)}</span>' for r in reasons) or '<span class="note">not flagged</span>'
    mask = _text(row.get("output"))
    mask_link = f' &middot; <a href="{_href(mask)}">mask</a>' if mask else ""
    cls = "card flagged" if flagged else "card"
    return (
        f'<div class="{cls}" data-reasons="{_e("; ".join(reasons))}" data-row="{number}">'
        f'<div class="name">{name}</div>{pic}<div>{badges}</div>'
        f'<table class="scores">{scores}</table>'
        f'<div><a href="{CSV_NAME}">{CSV_NAME} row {number}</a>{mask_link}</div></div>'
    )


def _header(title: str, rows: list[dict[str, Any]], reason_counts: Counter[str]) -> str:
    """Title and counts: scans, flagged, per reason, errors."""
    errors = sum(_text(r.get("status")) == "error" for r in rows)
    flagged = sum(_text(r.get("review")) == "yes" for r in rows)
    per_reason = "".join(f"<span>{_e(k)}: <b>{n}</b></span>" for k, n in reason_counts.most_common())
    per_reason = per_reason or '<span class="note">no reasons given</span>'
    return (
        f"<h1>{_e(title)}</h1><div class='counts'><span>scans: <b>{len(rows)}</b></span>"
        f"<span>flagged for review: <b>{flagged}</b></span><span>errors: <b>{errors}</b></span></div>"
        f"<div class='counts'>{per_reason}</div>"
    )


def _filters(reasons: Iterable[str], with_unflagged: bool) -> str:
    """One checkbox per reason on the cards (pure JS hides the cards with none checked)."""
    names = [*reasons, *([NOT_FLAGGED] if with_unflagged else [])]
    if not names:
        return ""
    boxes = "".join(f'<label><input type="checkbox" value="{_e(n)}" checked> {_e(n)}</label>' for n in names)
    buttons = (
        '<button type="button" onclick="setAll(true)">all</button> '
        '<button type="button" onclick="setAll(false)">none</button>'
    )
    return f'<div id="filters"><b>Show reasons:</b> {boxes} {buttons} <span id="shown" class="note"></span></div>'


def _error_table(rows: list[dict[str, Any]]) -> str:
    """Error rows as an ``input | reason`` table (the first :data:`MAX_ERROR_ROWS`, then a count)."""
    errors = [(i + 1, r) for i, r in enumerate(rows) if _text(r.get("status")) == "error"]
    if not errors:
        return ""
    body = "".join(
        f"<tr><td>{n}</td><td>{_e(r.get('input'))}</td><td>{_e(r.get('reason'))}</td></tr>"
        for n, r in errors[:MAX_ERROR_ROWS]
    )
    more = len(errors) - MAX_ERROR_ROWS
    tail = f"<p class='note'>{more} more errors not shown; see {CSV_NAME}</p>" if more > 0 else ""
    return (
        f"<h2>Errors ({len(errors)})</h2><table class='errors'><tr><th>row</th><th>input</th><th>reason</th></tr>"
        f"{body}</table>{tail}"
    )


def render_review(output_dir: Path, rows: list[dict[str, Any]], max_cards: int = 300, title: str = "") -> str:
    """The whole page as a string (see :func:`write_review`)."""
    flagged, unflagged = pick_cards(rows, max_cards)
    n_flagged = sum(_text(r.get("review")) == "yes" and _text(r.get("status")) != "error" for r in rows)
    reason_counts = Counter(x for r in rows if _text(r.get("review")) == "yes" for x in _reasons(r))
    card_reasons = dict.fromkeys(x for _, r in flagged for x in _reasons(r))
    parts = [_header(title, rows, reason_counts), _filters(card_reasons, bool(unflagged))]
    parts.append(f"<h2>Flagged for review ({n_flagged})</h2>")
    parts.append('<div class="grid">' + "".join(_card(output_dir, n, r, True) for n, r in flagged) + "</div>")
    if not flagged:
        parts.append("<p class='note'>No scan was flagged for review.</p>")
    if n_flagged > len(flagged):
        parts.append(
            f"<p class='note more'>{n_flagged - len(flagged)} more flagged scans not shown; see {CSV_NAME}</p>"
        )
    if unflagged:
        parts.append(f"<h2>Highest risk among the unflagged ({len(unflagged)} shown)</h2>")
        parts.append('<div class="grid">' + "".join(_card(output_dir, n, r, False) for n, r in unflagged) + "</div>")
    parts.append(_error_table(rows))
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<style>{_CSS}</style><script>{_JS}</script></head><body>{''.join(parts)}</body></html>\n"
    )


def write_review(
    output_dir: Path,
    rows: list[dict[str, Any]] | None = None,
    max_cards: int = 300,
    title: str = "segapp review: predictions to check first",
) -> Path:
    """Write ``review.html`` next to ``predictions.csv`` in ``output_dir``, atomically; return its path.

    Args:
        output_dir: the segapp-predict output folder (thumbnails under ``review/thumbs``).
        rows: the CSV rows in CSV order (numbers or strings); ``None`` reads ``predictions.csv``.
        max_cards: the most cards on the page (flagged first, riskiest first); the rest are counted.
        title: the page heading.

    Raises:
        FileNotFoundError: ``rows`` is ``None`` and the folder has no ``predictions.csv``.
    """
    output_dir = Path(output_dir)
    if rows is None:
        rows = read_rows(output_dir / CSV_NAME)
    page = render_review(output_dir, rows, max_cards, title)
    path = output_dir / REVIEW_HTML
    with atomic_write(path, suffix=".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
