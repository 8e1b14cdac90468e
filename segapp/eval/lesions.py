"""Lesion-wise detection: connected components of ground truth and prediction matched by overlap."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _structure(connectivity: int) -> np.ndarray:
    return ndimage.generate_binary_structure(2, 2 if connectivity == 8 else 1)


def _covered_share(labels: np.ndarray, n: int, other: np.ndarray) -> np.ndarray:
    """For components ``1..n`` of ``labels``: the share of each covered by ``other``."""
    if n == 0:
        return np.zeros(0)
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    hit = np.bincount(labels[other].ravel(), minlength=n + 1)[1:]
    return hit / np.maximum(area, 1)


def _label(mask: np.ndarray, structure: np.ndarray, min_area: int) -> tuple[np.ndarray, int]:
    """Connected components numbered ``1..n``, components under ``min_area`` pixels dropped."""
    labels, n = ndimage.label(mask, structure=structure)
    if min_area <= 1 or n == 0:
        return labels, int(n)
    keep = np.bincount(labels.ravel(), minlength=n + 1) >= min_area
    keep[0] = False
    new_ids = np.where(keep, np.cumsum(keep), 0)
    return new_ids[labels], int(keep.sum())


def match_lesions(
    pred: np.ndarray, gt: np.ndarray, connectivity: int = 8, min_overlap: float = 0.0, min_area: int = 1
) -> dict[str, int]:
    """Count detected, missed and spurious lesions in one image.

    A ground-truth component is a true positive when predicted pixels cover more than
    ``min_overlap`` of it (default: any overlap), else a false negative. A predicted component
    is a false positive when ground-truth pixels (any, a component under ``min_area`` too) cover
    no more than ``min_overlap`` of it. One large predicted blob over two lesions gives two true
    positives. Components smaller than ``min_area`` pixels (e.g. JPEG specks in Kvasir-SEG masks)
    are not counted as lesions on either side, nor as detected; a prediction over one is no
    false positive (it was: a 12-pixel detection of a 9-pixel lesion at ``min_area`` 10).

    Args:
        pred: bool ``H x W`` prediction.
        gt: bool ``H x W`` ground truth.
        connectivity: 4 or 8.
        min_overlap: Overlap share in ``[0, 1)``.
        min_area: Smallest component, in pixels, that counts as a lesion.

    Returns:
        ``lesions_gt``, ``lesions_pred``, ``lesion_tp``, ``lesion_fp``, ``lesion_fn``.
    """
    s = _structure(connectivity)
    gl, ng = _label(gt, s, min_area)
    pl, npred = _label(pred, s, min_area)
    tp = int(np.count_nonzero(_covered_share(gl, ng, pl > 0) > min_overlap))
    fp = int(np.count_nonzero(_covered_share(pl, npred, gt) <= min_overlap))
    return {
        "lesions_gt": int(ng),
        "lesions_pred": int(npred),
        "lesion_tp": tp,
        "lesion_fp": fp,
        "lesion_fn": int(ng) - tp,
    }
