"""Figures for the report: contour overlays, metric histograms and the worst-case gallery (PNG).

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
from matplotlib.ticker import MaxNLocator  # noqa: E402

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


def gallery(items: Sequence[tuple[str, np.ndarray]], path: Path | None = None, cols: int = 4) -> bytes:
    """Grid of ``(title, rgb overlay)`` panels; returns PNG bytes."""
    nrows = max(1, math.ceil(len(items) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 3.4 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, rgb) in zip(axes.ravel(), items, strict=False):
        ax.imshow(rgb)
        ax.set_title(title, fontsize=8)
    fig.suptitle("worst cases: ground truth green, prediction magenta", fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9, hspace=0.25, wspace=0.05)
    return _save(fig, path)
