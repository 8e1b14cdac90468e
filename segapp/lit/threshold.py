"""Threshold tuning: mean per-image Dice at each threshold of a small grid, DDP-exact."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from segapp.lit.metrics import per_image_dice

GRID = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)


class ThresholdSweep(Metric):
    """Accumulates per-image Dice sums for every threshold in ``grid``.

    ``compute()`` returns ``(best_threshold, mean_dice_at_it)``; ties go to the threshold
    closest to 0.5.
    """

    full_state_update = False

    def __init__(self, grid: tuple[float, ...] = GRID, **kwargs) -> None:
        super().__init__(**kwargs)
        self.grid = tuple(grid)
        self.add_state("total", default=torch.zeros(len(self.grid), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, probs: Tensor, target: Tensor) -> None:
        t = target > 0.5
        for i, thr in enumerate(self.grid):
            self.total[i] += per_image_dice(probs > thr, t).sum()
        self.count += probs.shape[0]

    def compute(self) -> tuple[float, float]:
        means = self.total / self.count.clamp_min(1)
        order = sorted(range(len(self.grid)), key=lambda i: (-float(means[i]), abs(self.grid[i] - 0.5)))
        return self.grid[order[0]], float(means[order[0]])
