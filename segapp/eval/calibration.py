"""Pixel-level calibration and per-image uncertainty from probability maps (numpy only).

Used by ``segapp-eval --probs`` and meant to be importable by inference (no torch, no scipy):

- :class:`ReliabilityBins` accumulates a reliability table case by case (15 equal-width bins:
  pixel count, sum of probabilities, count of lesion pixels, Brier and NLL sums), so thousands of
  images are scored without holding their pixels in memory; :meth:`ReliabilityBins.result` gives
  the expected and maximum calibration error (ECE, MCE), the Brier score and the NLL.
- :func:`uncertainty_score` is the per-image uncertainty: the mean binary entropy (bits) of the
  probabilities over the predicted lesion and a border band around it.
- :func:`auroc` scores how well a value ranks positives first (rank formula, ties count half).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

N_BINS = 15
#: probabilities are clipped to [EPS, 1 - EPS] for the NLL only (a 16-bit map stores exact 0 and 1)
NLL_EPS = 1e-6
#: the border band around the predicted lesion is this share of the image's shorter side (at least 1 px)
BAND_FRACTION = 0.02


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each probability: ``floor(p * n_bins)``, with ``p == 1`` in the last bin."""
    return np.minimum((p * n_bins).astype(np.int64), n_bins - 1)


@dataclass
class ReliabilityBins:
    """Running reliability table over pixels: update with one case at a time, read with :meth:`result`.

    Bins are equal-width on [0, 1]; bin ``b`` holds ``b/n <= p < (b+1)/n`` (the last one includes 1).
    Sums are float64 / int64, so billions of pixels add up exactly enough.
    """

    n_bins: int = N_BINS
    count: np.ndarray = field(init=False)
    sum_prob: np.ndarray = field(init=False)
    sum_pos: np.ndarray = field(init=False)
    brier_sum: float = 0.0
    nll_sum: float = 0.0
    n_images: int = 0

    def __post_init__(self) -> None:
        if self.n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {self.n_bins}")
        self.count = np.zeros(self.n_bins, np.int64)
        self.sum_prob = np.zeros(self.n_bins, np.float64)
        self.sum_pos = np.zeros(self.n_bins, np.int64)

    def update(self, probs: np.ndarray, labels: np.ndarray) -> None:
        """Add one case: ``probs`` in [0, 1] and the ground truth ``labels`` (bool or 0/1) of the same shape.

        Raises:
            ValueError: for different shapes or probabilities outside [0, 1] (NaN included).
        """
        p = np.asarray(probs, np.float64).ravel()
        y = np.asarray(labels).astype(bool).ravel()
        if np.shape(probs) != np.shape(labels):
            raise ValueError(f"probabilities {np.shape(probs)} and labels {np.shape(labels)} differ in shape")
        check_probs(p)
        idx = _bin_index(p, self.n_bins)
        self.count += np.bincount(idx, minlength=self.n_bins)
        self.sum_prob += np.bincount(idx, weights=p, minlength=self.n_bins)
        self.sum_pos += np.bincount(idx[y], minlength=self.n_bins)
        self.brier_sum += float(np.sum((p - y) ** 2))
        pc = np.clip(p, NLL_EPS, 1 - NLL_EPS)
        self.nll_sum -= float(np.sum(np.where(y, np.log(pc), np.log1p(-pc))))
        self.n_images += 1

    @property
    def n_pixels(self) -> int:
        """Pixels added so far (the sum of the bin counts)."""
        return int(self.count.sum())

    def table(self) -> list[dict[str, float | int | None]]:
        """One dict per bin: ``lo``, ``hi``, ``count``, ``mean_prob``, ``frac_pos`` (``None`` when empty)."""
        rows = []
        for b in range(self.n_bins):
            n = int(self.count[b])
            rows.append(
                {
                    "lo": b / self.n_bins,
                    "hi": (b + 1) / self.n_bins,
                    "count": n,
                    "mean_prob": float(self.sum_prob[b] / n) if n else None,
                    "frac_pos": float(self.sum_pos[b] / n) if n else None,
                }
            )
        return rows

    def result(self) -> dict:
        """``ece``, ``mce``, ``brier``, ``nll`` (nats per pixel), ``n_pixels``, ``n_images``, ``n_bins``, ``bins``.

        ECE = sum over bins of ``(n_b / N) |mean_prob_b - frac_pos_b|``; MCE = the largest gap over
        non-empty bins; Brier = mean ``(p - y)^2``. All are NaN before any pixel was added.
        """
        n = self.n_pixels
        ok = self.count > 0
        gap = np.abs(self.sum_prob[ok] - self.sum_pos[ok]) / self.count[ok]
        return {
            "ece": float(np.sum(self.count[ok] * gap) / n) if n else math.nan,
            "mce": float(gap.max()) if n else math.nan,
            "brier": self.brier_sum / n if n else math.nan,
            "nll": self.nll_sum / n if n else math.nan,
            "n_pixels": n,
            "n_images": self.n_images,
            "n_bins": self.n_bins,
            "bins": self.table(),
        }


def check_probs(p: np.ndarray) -> None:
    """Raise ``ValueError`` unless every value is a probability in [0, 1] (NaN is not)."""
    if p.size == 0:
        return
    if np.isnan(p).any():
        raise ValueError("probabilities must lie in [0, 1], got NaN")
    lo, hi = float(p.min()), float(p.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"probabilities must lie in [0, 1], got {lo:.4g}..{hi:.4g}")


def calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> dict:
    """One-shot :meth:`ReliabilityBins.result` for one array of probabilities and labels."""
    bins = ReliabilityBins(n_bins)
    bins.update(probs, labels)
    return bins.result()


def binary_entropy(probs: np.ndarray) -> np.ndarray:
    """Binary entropy in bits, ``-p log2 p - (1-p) log2 (1-p)``: 0 at p = 0 or 1, 1 at p = 0.5.

    float32 in, float32 out (half the time of float64 on a full-resolution map); other dtypes
    are computed in float64.
    """
    dtype = np.float32 if np.asarray(probs).dtype == np.float32 else np.float64
    p = np.clip(np.asarray(probs, dtype), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.nan_to_num(h, nan=0.0, copy=False)


def _dilate_axis(mask: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Max filter of width ``2r + 1`` along ``axis`` (window clipped at the image edge), via a cumsum."""
    n = mask.shape[axis]
    c = np.cumsum(mask, axis=axis, dtype=np.int64)
    c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
    hi = np.minimum(np.arange(n) + r + 1, n)
    lo = np.maximum(np.arange(n) - r, 0)
    return (np.take(c, hi, axis=axis) - np.take(c, lo, axis=axis)) > 0


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Dilate a 2-D bool mask by ``r`` pixels with a square ``(2r+1) x (2r+1)`` window.

    The same as ``r`` iterations of ``scipy.ndimage.binary_dilation`` with the 8-connected 3 x 3
    structure, in plain numpy (two separable running maxima).
    """
    m = np.asarray(mask, bool)
    if r <= 0 or not m.any():
        return m.copy()
    return _dilate_axis(_dilate_axis(m, r, 0), r, 1)


def band_radius(shape: tuple[int, ...]) -> int:
    """Border band width: ``max(1, round(0.02 * min(H, W)))`` pixels."""
    return max(1, round(BAND_FRACTION * min(shape[:2])))


def uncertainty_region(mask: np.ndarray) -> np.ndarray:
    """Pixels the uncertainty is averaged over: the mask dilated by :func:`band_radius`; all pixels when empty."""
    m = np.asarray(mask).astype(bool)
    if not m.any():
        return np.ones_like(m)
    return dilate(m, band_radius(m.shape))


def uncertainty_score(probs: np.ndarray, mask: np.ndarray, entropy: np.ndarray | None = None) -> float:
    """Per-image uncertainty: mean binary entropy (bits, 0..1) of ``probs`` over the predicted lesion and its border.

    The region is the predicted ``mask`` dilated by ``max(1, round(0.02 * min(H, W)))`` pixels with
    a square window (8-connected), or the whole image when the mask is empty. Averaging over the
    lesion and its border, not the whole image, keeps a large, confidently empty background from
    hiding an unsure lesion edge, and makes scores of small and large images comparable; an empty
    prediction is judged on the whole image, so a faint missed lesion still raises the score.

    Args:
        probs: ``H x W`` probabilities in [0, 1] (calibrated ones, as ``segapp-predict`` reports).
        mask: ``H x W`` predicted mask (bool, 0/1 or 0/255; non-zero is lesion).

        entropy: ``binary_entropy(probs)`` when the caller has it already (inference reuses it for
            the uncertainty map).

    Returns:
        0 for a crisp map (every value 0 or 1), 1 when every value in the region is 0.5.

    Raises:
        ValueError: when the shapes differ or ``probs`` is not 2-D.
    """
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape != np.shape(mask):
        raise ValueError(
            f"uncertainty_score needs an H x W probability map and a mask of the same shape, "
            f"got {p.shape} and {np.shape(mask)}"
        )
    h = binary_entropy(p) if entropy is None else entropy
    return float(h[uncertainty_region(mask)].mean())


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for finding ``positive`` (Mann-Whitney rank formula).

    The chance that a random positive scores above a random negative; ties count half. NaN when
    either class is empty.
    """
    s = np.asarray(scores, np.float64)
    y = np.asarray(positive, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    _, first, counts = np.unique(s[order], return_index=True, return_counts=True)
    ranks = np.empty(s.size, np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based ranks, ties averaged
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
