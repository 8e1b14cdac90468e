"""Gaussian-blended sliding-window inference in numpy (the ONNX Runtime engine's tiler).

It follows MONAI's ``sliding_window_inference(mode="gaussian")`` step for step (window
positions, symmetric zero padding of images smaller than the window, Gaussian importance map
with ``sigma = sigma_scale * window``, floor of ``max(min, 1e-3)``), so both engines blend tiles
the same way; both engines use this one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def gaussian_importance(size: tuple[int, int], sigma_scale: float = 0.125) -> np.ndarray:
    """``H x W`` float32 weights, 1 at the centre, as MONAI's ``compute_importance_map``."""
    axes = []
    for n in size:
        x = np.arange(-(n - 1) / 2.0, (n - 1) / 2.0 + 1, dtype=np.float32)[:n]
        axes.append(np.exp(x**2 / (-2 * (n * sigma_scale) ** 2)).astype(np.float32))
    weights = axes[0][:, None] * axes[1][None, :]
    return np.maximum(weights, max(float(weights.min()), 1e-3)).astype(np.float32)


def window_starts(image: int, window: int, overlap: float) -> list[int]:
    """Start offsets along one axis (MONAI's ``_get_scan_interval`` + ``dense_patch_slices``)."""
    if window == image:
        return [0]
    interval = max(int(window * (1 - overlap)), 1)
    num = int(math.ceil(image / interval))
    count = next((d + 1 for d in range(num) if d * interval + window >= image), 1)
    return [i * interval - max(i * interval + window - image, 0) for i in range(count)]


def sliding_window(
    image: np.ndarray,
    window: tuple[int, int],
    predict: Callable[[np.ndarray], np.ndarray],
    overlap: float = 0.25,
    batch_size: int = 4,
    sigma_scale: float = 0.125,
) -> np.ndarray:
    """Blend ``predict`` over Gaussian-weighted windows covering ``image``.

    Args:
        image: ``C x H x W`` float32 network input at native scale.
        window: Window ``(height, width)``: the size the net was trained on.
        predict: ``N x C x h x w`` -> ``N x h x w`` or ``N x K x h x w`` probabilities.
        overlap: Fraction of a window shared with its neighbour (0 <= overlap < 1).
        batch_size: Windows per ``predict`` call.
        sigma_scale: Gaussian sigma as a fraction of the window size.

    Returns:
        ``H x W`` (or ``K x H x W``) float32 probabilities.

    Raises:
        ValueError: for an overlap outside ``[0, 1)``.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    c, h, w = image.shape
    pads = [
        (max(win - n, 0) // 2, max(win - n, 0) - max(win - n, 0) // 2) for n, win in zip((h, w), window, strict=True)
    ]
    padded = np.pad(image, [(0, 0), *pads]) if any(sum(p) for p in pads) else image
    ph, pw = padded.shape[1:]
    weights = gaussian_importance(window, sigma_scale)
    acc: np.ndarray | None = None
    norm = np.zeros((ph, pw), np.float32)
    starts = [(y, x) for y in window_starts(ph, window[0], overlap) for x in window_starts(pw, window[1], overlap)]
    for i in range(0, len(starts), batch_size):
        chunk = starts[i : i + batch_size]
        batch = np.stack([padded[:, y : y + window[0], x : x + window[1]] for y, x in chunk])
        probs = predict(np.ascontiguousarray(batch))
        if acc is None:
            acc = np.zeros((*probs.shape[1:-2], ph, pw), np.float32)
        for (y, x), p in zip(chunk, probs, strict=True):
            acc[..., y : y + window[0], x : x + window[1]] += p * weights
            norm[y : y + window[0], x : x + window[1]] += weights
    out = acc / norm
    return out[..., pads[0][0] : pads[0][0] + h, pads[1][0] : pads[1][0] + w]
