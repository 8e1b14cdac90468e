"""Per-image metrics of a binary prediction against binary ground truth.

Overlap (Dice, IoU, precision, recall, ISIC thresholded Jaccard) follows
:mod:`segapp.lit.metrics`: Dice is ``2|P∩T| / (|P| + |T|)`` per image, and an image whose
ground truth and prediction are both empty scores ``policy.empty_empty`` (1 by default, as in
training). Boundary metrics come from MONAI's edge surface distances (edges = mask XOR its
binary erosion; exact Euclidean distances, scaled by ``spacing``):

- ``hd95``: max of the two directed 95th percentiles (MONAI ``compute_hausdorff_distance``
  with ``percentile=95``),
- ``assd``: mean of all distances in both directions (MONAI ``compute_average_surface_distance``,
  symmetric),
- ``bf1``: boundary F1 at ``tolerance``: precision = share of predicted edge pixels within
  ``tolerance`` of a ground-truth edge pixel, recall the other way round,
- ``nsd``: normalised surface Dice at ``tolerance`` (MONAI ``compute_surface_dice``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from segapp.eval.lesions import match_lesions
from segapp.eval.policy import EmptyPolicy, classify

ISIC_JACCARD_CUTOFF = 0.65
#: Columns of ``metrics.csv`` produced by :func:`image_metrics`, in order.
METRIC_COLUMNS: tuple[str, ...] = (
    "dice",
    "iou",
    "precision",
    "recall",
    "isic_jaccard",
    "hd95",
    "assd",
    "bf1",
    "nsd",
)
COUNT_COLUMNS: tuple[str, ...] = (
    "case",
    "height",
    "width",
    "gt_pixels",
    "pred_pixels",
    "intersection",
    "lesions_gt",
    "lesions_pred",
    "lesion_tp",
    "lesion_fp",
    "lesion_fn",
)


@dataclass(frozen=True)
class MetricConfig:
    """What the per-image metrics need besides the two masks.

    Args:
        policy: Empty-mask policy (see :mod:`segapp.eval.policy`).
        spacing: Pixel size ``(row, col)`` in mm; ``None`` gives distances in pixels.
        tolerance: Boundary tolerance for ``bf1`` and ``nsd``, in the distance unit.
        connectivity: 4 or 8: how pixels join into one lesion for lesion-wise detection.
        lesion_min_overlap: A ground-truth lesion counts as detected when predicted pixels
            cover more than this share of it (0 = any overlap); a predicted component is a
            false positive when it covers no more than this share of itself with lesion.
        min_lesion_area: Components smaller than this many pixels are not lesions (on either
            side) for lesion-wise detection; pixel metrics still count them.
    """

    policy: EmptyPolicy = field(default_factory=EmptyPolicy)
    spacing: tuple[float, float] | None = None
    tolerance: float = 2.0
    connectivity: int = 8
    lesion_min_overlap: float = 0.0
    min_lesion_area: int = 10

    def __post_init__(self) -> None:
        if self.spacing is not None and (len(self.spacing) != 2 or min(self.spacing) <= 0):
            raise ValueError(f"spacing must be two positive numbers (row, col) in mm, got {self.spacing}")
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")
        if self.connectivity not in (4, 8):
            raise ValueError(f"connectivity must be 4 or 8, got {self.connectivity}")
        if not 0.0 <= self.lesion_min_overlap < 1.0:
            raise ValueError(f"lesion_min_overlap must be in [0, 1), got {self.lesion_min_overlap}")
        if self.min_lesion_area < 1:
            raise ValueError(f"min_lesion_area must be >= 1 pixel, got {self.min_lesion_area}")

    @property
    def unit(self) -> str:
        return "px" if self.spacing is None else "mm"


def _ratio(num: float, den: float, both_empty: bool, empty_empty: float) -> float:
    if den > 0:
        return num / den
    return empty_empty if both_empty else 0.0


def overlap_scores(pred: np.ndarray, gt: np.ndarray, empty_empty: float = 1.0) -> dict[str, float]:
    """Dice, IoU, precision, recall and ISIC thresholded Jaccard of one image.

    Args:
        pred: bool ``H x W`` prediction.
        gt: bool ``H x W`` ground truth.
        empty_empty: Score of every metric when both masks are empty.

    Returns:
        Dict with ``dice``, ``iou``, ``precision``, ``recall``, ``isic_jaccard`` and the pixel
        counts ``gt_pixels``, ``pred_pixels``, ``intersection``.
    """
    inter, ps, ts = int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred)), int(np.count_nonzero(gt))
    both_empty = ps == 0 and ts == 0
    iou = _ratio(inter, ps + ts - inter, both_empty, empty_empty)
    return {
        "dice": _ratio(2 * inter, ps + ts, both_empty, empty_empty),
        "iou": iou,
        "precision": _ratio(inter, ps, both_empty, empty_empty),
        "recall": _ratio(inter, ts, both_empty, empty_empty),
        "isic_jaccard": iou if (math.isnan(iou) or iou >= ISIC_JACCARD_CUTOFF) else 0.0,
        "gt_pixels": ts,
        "pred_pixels": ps,
        "intersection": inter,
    }


def surface_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each predicted edge pixel to the ground-truth edge, and back (MONAI).

    Both masks must be non-empty. Returns two float64 arrays (``pred->gt``, ``gt->pred``).
    """
    if not pred.any() or not gt.any():
        raise ValueError("surface_distances needs two non-empty masks; handle empty masks with EmptyPolicy")
    import torch  # heavy imports (seconds): only when a distance is needed
    from monai.metrics.utils import get_edge_surface_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, dists, _ = get_edge_surface_distance(
            torch.from_numpy(np.ascontiguousarray(pred, dtype=bool)),
            torch.from_numpy(np.ascontiguousarray(gt, dtype=bool)),
            spacing=None if spacing is None else list(spacing),
            symmetric=True,
        )
    return tuple(np.asarray(d.cpu().numpy(), dtype=np.float64) for d in dists)  # type: ignore[return-value]


def boundary_scores(d_pg: np.ndarray, d_gp: np.ndarray, tolerance: float) -> dict[str, float]:
    """HD95, ASSD, boundary F1 and NSD from the two directed distance arrays."""
    hd95 = max(float(np.percentile(d_pg, 95)), float(np.percentile(d_gp, 95)))
    assd = float(np.concatenate([d_pg, d_gp]).mean())
    ok_p, ok_g = int(np.count_nonzero(d_pg <= tolerance)), int(np.count_nonzero(d_gp <= tolerance))
    bp, br = ok_p / d_pg.size, ok_g / d_gp.size
    bf1 = 2 * bp * br / (bp + br) if bp + br > 0 else 0.0
    return {"hd95": hd95, "assd": assd, "bf1": bf1, "nsd": (ok_p + ok_g) / (d_pg.size + d_gp.size)}


def _empty_boundary(case: str, shape: tuple[int, int], cfg: MetricConfig) -> dict[str, float]:
    if case == "both_empty":
        return {"hd95": 0.0, "assd": 0.0, "bf1": cfg.policy.empty_empty, "nsd": cfg.policy.empty_empty}
    dist = math.nan
    if cfg.policy.distance_empty == "max":
        sy, sx = cfg.spacing or (1.0, 1.0)
        dist = math.hypot(shape[0] * sy, shape[1] * sx)
    return {"hd95": dist, "assd": dist, "bf1": 0.0, "nsd": 0.0}


def image_metrics(pred: np.ndarray, gt: np.ndarray, cfg: MetricConfig | None = None) -> dict[str, float | int | str]:
    """Every per-image metric of ``pred`` against ``gt`` (see the module docstring).

    Args:
        pred: bool ``H x W`` prediction (any non-zero value is lesion).
        gt: bool ``H x W`` ground truth, same shape.
        cfg: Policy, spacing, tolerance and lesion matching settings.

    Returns:
        One ``metrics.csv`` row without the image name: :data:`METRIC_COLUMNS` and
        :data:`COUNT_COLUMNS`.

    Raises:
        ValueError: If the shapes differ or the masks are not 2D.
    """
    cfg = cfg or MetricConfig()
    pred, gt = np.asarray(pred).astype(bool, copy=False), np.asarray(gt).astype(bool, copy=False)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(
            f"expected two 2D masks of the same shape, got prediction {pred.shape} and ground truth {gt.shape}"
        )
    row: dict[str, float | int | str] = {"case": classify(bool(gt.any()), bool(pred.any()))}
    row.update(height=pred.shape[0], width=pred.shape[1])
    row.update(overlap_scores(pred, gt, cfg.policy.empty_empty))
    if row["case"] == "both":
        row.update(boundary_scores(*surface_distances(pred, gt, cfg.spacing), cfg.tolerance))
    else:
        row.update(_empty_boundary(str(row["case"]), pred.shape, cfg))
    row.update(match_lesions(pred, gt, cfg.connectivity, cfg.lesion_min_overlap, cfg.min_lesion_area))
    return row
