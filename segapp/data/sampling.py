"""Lesion-size-balanced sampling of training images (``data.sampling: lesion_size``).

Small lesions are the failure mode of the lesion sets measured here (docs/benchmarks.md: 10 of
the 12 worst Kvasir images hold a polyp under 2 % of the frame), and they are rare: a uniform
epoch shows the net few of them. ``lesion_size`` draws the lesion images half uniformly and
half spread evenly over lesion-size bins (the foreground share of the frame, log-spaced, with
:data:`~segapp.data.check.SMALL_LESION` as a bin edge), with replacement, so a rare size is seen
more often while every image keeps a chance; images with an empty mask keep their share. The epoch
length stays the number of training images, so epoch times and the schedule do not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from segapp.data.check import SMALL_LESION
from segapp.data.layouts import Pair
from segapp.io import MaskRule, read_masks

SamplingName = Literal["uniform", "lesion_size"]

SIZE_EDGES = (0.005, SMALL_LESION, 0.08, 0.32)
"""Bin edges of the lesion share of the frame: x4 apart, one of them the small-lesion line."""

BALANCED_SHARE = 0.5
"""The share of the lesion images' draws spread evenly over the size bins (the rest is uniform)."""


def lesion_fractions(pairs: Sequence[Pair], rule: MaskRule) -> np.ndarray:
    """Foreground share of the frame of each pair's masks (ORed), read at original resolution."""
    return np.array([float(read_masks(p.masks, rule).mean()) for p in pairs], dtype=np.float64)


def size_bins(fractions: np.ndarray) -> np.ndarray:
    """Bin index of each lesion share: ``-1`` for an empty mask, else ``0..len(SIZE_EDGES)``."""
    bins = np.digitize(fractions, SIZE_EDGES)
    return np.where(fractions > 0, bins, -1)


def size_balanced_weights(fractions: np.ndarray, balanced: float = BALANCED_SHARE) -> np.ndarray:
    """Per-image draw probabilities.

    Empty masks keep their uniform share (the empty-mask share the loss was chosen for does not
    change); of the lesion images' share, ``1 - balanced`` is drawn uniformly and ``balanced``
    evenly over the size bins present.
    """
    n = len(fractions)
    if n == 0:
        return np.zeros(0)
    bins = size_bins(fractions)
    lesion = bins >= 0
    w = np.full(n, 1.0 / n)
    if lesion.any():
        labels, counts = np.unique(bins[lesion], return_counts=True)
        per_bin = dict(zip(labels.tolist(), counts.tolist(), strict=True))
        share, m, k = lesion.mean(), int(lesion.sum()), len(labels)
        w[lesion] = [share * ((1 - balanced) / m + balanced / (k * per_bin[b])) for b in bins[lesion].tolist()]
    return w / w.sum()


def bin_shares(fractions: np.ndarray, weights: np.ndarray) -> dict[str, tuple[float, float]]:
    """For the log: each bin's share of the images and of the draws."""
    bins = size_bins(fractions)
    names = ["empty", *_bin_names()]
    out = {}
    for b in sorted(set(bins.tolist())):
        sel = bins == b
        out[names[b + 1]] = (float(sel.mean()), float(weights[sel].sum()))
    return out


def _bin_names() -> list[str]:
    edges = [0.0, *SIZE_EDGES]
    names = [f"{lo:.1%}-{hi:.1%}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return [*names, f">{SIZE_EDGES[-1]:.0%}"]


def lesion_size_sampler(fractions: np.ndarray, seed: int) -> WeightedRandomSampler:
    """A sampler drawing ``len(fractions)`` images per epoch with :func:`size_balanced_weights`."""
    weights = torch.as_tensor(size_balanced_weights(fractions), dtype=torch.double)
    gen = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(weights, num_samples=len(fractions), replacement=True, generator=gen)
