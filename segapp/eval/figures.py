"""Figures for the report: contour overlays, metric histograms, the worst-case gallery, and with
probability maps the reliability diagram, the uncertainty scatter and entropy panels (PNG).

matplotlib runs on the Agg backend (no display needed); overlays are drawn with OpenCV.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullFormatter  # noqa: E402

from segapp.io import to_channels, to_float01  # noqa: E402

GT_COLOR = (0, 200, 0)  # green
PRED_COLOR = (255, 0, 255)  # magenta: tells apart from green for red-green colour blindness


def to_rgb8(image: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Any ``H x W [x C]`` image as uint8 RGB; a dark gray canvas of ``shape`` when ``None``."""
    if image is None:
        return np.full((*shape, 3), 48, np.uint8)
    rgb = to_channels(image if image.ndim == 3 else image[:, :, None], 3)
    return (to_float01(rgb) * 255).round().astype(np.uint8)


def mask_canvas(gt: np.ndarray) -> np.ndarray:
    """The ground-truth mask as a grey ``H x W x 1`` canvas (lesion lighter) when there is no image."""
    return np.where(gt, 110, 40).astype(np.uint8)[:, :, None]


def contour_overlay(image: np.ndarray | None, gt: np.ndarray, pred: np.ndarray, max_side: int = 320) -> np.ndarray:
    """Image with ground-truth (green) and prediction (magenta) contours, at most ``max_side`` px.

    Args:
        image: ``H x W [x C]`` image or ``None``.
        gt: bool ``H x W`` ground truth.
        pred: bool ``H x W`` prediction.
        max_side: Longest side of the result (downscaled before drawing so lines stay visible).

    Returns:
        uint8 RGB ``h x w x 3``.
    """
    h, w = gt.shape
    rgb = to_rgb8(image, (h, w))
    if rgb.shape[:2] != (h, w):
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    rgb = np.ascontiguousarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))
    for mask, color in ((gt, GT_COLOR), (pred, PRED_COLOR)):
        small = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(small, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, color, 1 if max(size) < 160 else 2)
    return rgb


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode a uint8 RGB array as PNG."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("OpenCV could not encode the overlay as PNG")
    return buf.tobytes()


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for embedding in HTML."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _save(fig, path: Path | None) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return data


def histograms(rows: Sequence[Mapping], metrics: Sequence[str], unit: str, path: Path | None = None) -> bytes:
    """One histogram per metric (NaNs left out, their count in the title); returns PNG bytes."""
    cols = 3
    nrows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 2.8 * nrows), squeeze=False)
    for ax, m in zip(axes.ravel(), metrics, strict=False):
        v = np.array([float(r[m]) for r in rows])
        ok = v[~np.isnan(v)]
        ax.hist(ok, bins=20, color="#4c72b0")
        label = f"{m} ({unit})" if m in ("hd95", "assd") else m
        ax.set_title(label + (f"  [{v.size - ok.size} undefined]" if ok.size < v.size else ""), fontsize=10)
        ax.set_ylabel("images")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes.ravel()[len(metrics) :]:
        ax.axis("off")
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.06, top=0.93, hspace=0.45, wspace=0.3)
    return _save(fig, path)


GALLERY_TITLE = "worst cases: ground truth green, prediction magenta"


def gallery(
    items: Sequence[tuple[str, np.ndarray]], path: Path | None = None, cols: int = 4, title: str = GALLERY_TITLE
) -> bytes:
    """Grid of ``(title, rgb overlay)`` panels, ``cols`` across a 12.8 in wide figure; returns PNG bytes."""
    nrows = max(1, math.ceil(len(items) / cols))
    aspect = max((rgb.shape[1] / rgb.shape[0] for _, rgb in items), default=1.0)
    cell_w = 12.8 / cols
    fig, axes = plt.subplots(nrows, cols, figsize=(12.8, nrows * (cell_w / aspect + 0.5) + 0.3), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, rgb) in zip(axes.ravel(), items, strict=False):
        ax.imshow(rgb)
        ax.set_title(name, fontsize=8)
    height = fig.get_figheight()
    fig.suptitle(title, fontsize=10, y=1 - 0.12 / height, va="top")
    top = 1 - 0.6 / height
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=top, hspace=0.25, wspace=0.05)
    return _save(fig, path)


def reliability_diagram(cal: Mapping, path: Path | None = None) -> bytes:
    """Reliability diagram of a :meth:`ReliabilityBins.result`: observed lesion frequency against the
    mean predicted probability per bin (with the diagonal of perfect calibration), and below it the
    pixel count per bin (log scale: most pixels sit near 0). Returns PNG bytes."""
    bins = [b for b in cal["bins"] if b["count"]]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, squeeze=True
    )
    top.plot([0, 1], [0, 1], color="#888", linestyle="--", linewidth=1, label="perfect calibration")
    mean = [b["mean_prob"] for b in bins]
    freq = [b["frac_pos"] for b in bins]
    width = 1.0 / cal["n_bins"]
    top.bar([b["lo"] for b in bins], freq, width=width, align="edge", color="#4c72b0", alpha=0.35, label="observed")
    top.plot(mean, freq, marker="o", color="#4c72b0", label="observed vs mean predicted")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("observed lesion frequency")
    top.set_title(f"ECE {cal['ece']:.4f}  MCE {cal['mce']:.4f}  Brier {cal['brier']:.4f}", fontsize=10)
    top.legend(loc="upper left", fontsize=8)
    bottom.bar([b["lo"] for b in bins], [b["count"] for b in bins], width=width, align="edge", color="#4c72b0")
    bottom.set_yscale("log")
    bottom.yaxis.set_minor_formatter(NullFormatter())
    bottom.set_xlabel("predicted probability")
    bottom.set_ylabel("pixels")
    fig.subplots_adjust(left=0.17, right=0.97, bottom=0.09, top=0.94, hspace=0.08)
    return _save(fig, path)


def uncertainty_scatter(rows: Sequence[Mapping], failure_dice: float, path: Path | None = None) -> bytes:
    """Per-image uncertainty against Dice (images without a map or a Dice left out); the failure
    line ``Dice = failure_dice`` drawn; returns PNG bytes."""
    pts = [(float(r["uncertainty"]), float(r["dice"])) for r in rows if "uncertainty" in r]
    pts = [(u, d) for u, d in pts if not (math.isnan(u) or math.isnan(d))]
    u = np.array([p[0] for p in pts])
    d = np.array([p[1] for p in pts])
    fig, ax = plt.subplots(figsize=(5, 4))
    fail = d < failure_dice
    ax.scatter(u[~fail], d[~fail], s=12, color="#4c72b0", label=f"Dice >= {failure_dice:g}")
    ax.scatter(u[fail], d[fail], s=12, color="#dd5555", label=f"failure (Dice < {failure_dice:g})")
    ax.axhline(failure_dice, color="#888", linestyle="--", linewidth=1)
    ax.set_xlabel("uncertainty (mean entropy over lesion + border, bits)")
    ax.set_ylabel("Dice")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="lower left", fontsize=8)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.13, top=0.96)
    return _save(fig, path)


def entropy_panel(entropy: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Per-pixel entropy (bits, 0..1) as a uint8 RGB picture of ``size`` (h, w), magma colours
    (black = certain, light yellow = 1 bit)."""
    h, w = size
    shrink = h <= entropy.shape[0] and w <= entropy.shape[1]
    small = cv2.resize(entropy.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    rgba = matplotlib.colormaps["magma"](np.clip(small, 0.0, 1.0))
    return (rgba[:, :, :3] * 255).round().astype(np.uint8)


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    """Two uint8 RGB pictures of one height next to each other with a white gap."""
    spacer = np.full((left.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([left, spacer, right], axis=1)
