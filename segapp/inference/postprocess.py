"""From probabilities to a clean binary mask, its statistics and an overlay picture.

Connected components use SciPy when installed and a small run-length labeller otherwise (the
slim container has no SciPy); tests check both give the same labels' sizes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segapp.io.preprocess import resize_array


def upsample(probs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``h x w`` probabilities to the input's ``(height, width)``."""
    return resize_array(np.ascontiguousarray(probs, np.float32), size, "linear")


def _label_runs(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected labelling by runs per row and union-find (no SciPy)."""
    h, w = mask.shape
    parent: list[int] = [0]
    labels = np.zeros((h, w), np.int32)
    prev: list[tuple[int, int, int]] = []

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for y in range(h):
        row = np.concatenate(([0], mask[y].view(np.uint8), [0]))
        edges = np.flatnonzero(np.diff(row))
        cur = []
        for s, e in zip(edges[::2], edges[1::2], strict=True):
            lab = 0
            for ps, pe, pl in prev:
                if ps <= e and pe >= s:  # 8-connected: runs touch diagonally too
                    root = find(pl)
                    if lab == 0:
                        lab = root
                    elif root != lab:
                        parent[root] = lab
            if lab == 0:
                lab = len(parent)
                parent.append(lab)
            labels[y, s:e] = lab
            cur.append((int(s), int(e), lab))
        prev = cur
    roots = np.array([find(i) for i in range(len(parent))], np.int32)
    uniq, compact = np.unique(roots, return_inverse=True)
    return compact.astype(np.int32)[labels], len(uniq) - 1


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a bool mask: ``(labels int32, count)``; background is 0."""
    try:
        from scipy import ndimage
    except ImportError:
        return _label_runs(mask)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    return labels.astype(np.int32), int(n)


def clean_mask(mask: np.ndarray, keep_largest: bool = False, min_size: int = 0) -> tuple[np.ndarray, int]:
    """Drop components under ``min_size`` pixels and, optionally, all but the largest.

    Returns:
        ``(mask, number of components kept)``.
    """
    if not mask.any():
        return mask, 0
    labels, n = label_components(mask)
    if not keep_largest and min_size <= 0:
        return mask, n
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    keep = sizes >= max(min_size, 1)
    if keep_largest and keep.any():
        keep = np.zeros_like(keep)
        keep[int(np.argmax(sizes))] = True
    return keep[labels], int(keep.sum())


def mask_stats(
    mask: np.ndarray, probs: np.ndarray, components: int, size: tuple[int, int] | None = None
) -> dict[str, Any]:
    """The per-output CSV fields: size, lesion pixels/fraction, components, bbox, mean probability.

    ``mask`` and ``probs`` are one 2D output, or a whole 3D volume (NIfTI): then ``size`` gives the
    slice's ``(height, width)`` for the CSV and the bounding box is left empty.
    """
    h, w = size if size is not None else mask.shape
    pixels = int(mask.sum())
    row: dict[str, Any] = {
        "height": h,
        "width": w,
        "lesion_pixels": pixels,
        "lesion_fraction": round(pixels / mask.size, 6),
        "components": components,
        "bbox": "",
        "mean_prob": "",
    }
    if pixels and mask.ndim == 2:
        ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        row["bbox"] = f"{xs[0]} {ys[0]} {xs[-1] + 1} {ys[-1] + 1}"
    if pixels:
        row["mean_prob"] = round(float(probs[mask].mean()), 4)
    return row


def _display_rgb(image: np.ndarray) -> np.ndarray:
    """Any ``H x W x C`` image -> uint8 RGB for display (min-max for non-uint8)."""
    img = image[:, :, :3] if image.shape[2] >= 3 else np.repeat(image[:, :, :1], 3, axis=2)
    if img.dtype == np.uint8:
        return np.ascontiguousarray(img)
    f = img.astype(np.float32)
    lo, hi = float(f.min()), float(f.max())
    return np.zeros(f.shape, np.uint8) if hi <= lo else np.rint((f - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def overlay(
    image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 40, 40), alpha: float = 0.35
) -> np.ndarray:
    """uint8 RGB picture: the image, the mask tinted with ``color`` and its contour drawn solid."""
    rgb = _display_rgb(image).astype(np.float32)
    tint = np.asarray(color, np.float32)
    rgb[mask] = (1 - alpha) * rgb[mask] + alpha * tint
    pad = np.pad(mask, 1, mode="edge")
    inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    rgb[mask & ~inner] = tint
    return np.rint(rgb).astype(np.uint8)
