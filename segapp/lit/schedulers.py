"""Learning-rate schedules that torch lacks, usable from YAML as ``LRSchedulerCallable``."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine(LambdaLR):
    """Linear warm-up for ``warmup_epochs``, then cosine decay to ``min_lr_ratio`` at ``max_epochs``.

    Stepped once per epoch (Lightning's default interval).

    Args:
        optimizer: Wrapped optimiser (injected by LightningCLI).
        warmup_epochs: Epochs of linear warm-up from ``1/(warmup_epochs+1)`` of the base LR.
        max_epochs: Epoch at which the cosine reaches its floor.
        min_lr_ratio: Floor as a fraction of the base LR.
    """

    def __init__(self, optimizer: Optimizer, warmup_epochs: int = 1, max_epochs: int = 50, min_lr_ratio: float = 0.01):
        if max_epochs <= warmup_epochs:
            raise ValueError(f"max_epochs ({max_epochs}) must be greater than warmup_epochs ({warmup_epochs})")
        self.warmup_epochs = warmup_epochs
        self.max_epochs = max_epochs
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, self._factor)

    def _factor(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            return (epoch + 1) / (self.warmup_epochs + 1)
        t = min(1.0, (epoch - self.warmup_epochs) / (self.max_epochs - self.warmup_epochs))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
