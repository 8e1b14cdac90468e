"""Per-image Dice and IoU: the one meaning of "Dice" that segapp logs.

``val/dice`` is the mean over images of each image's Dice at training resolution; an image
whose ground truth and prediction are both empty scores 1 (a correct "no lesion"). IoU is
defined the same way. torchmetrics' ``DiceScore`` leaves such images out of the mean instead
of scoring them 1, so these metrics keep two sum states (score sum, image count) that
torchmetrics reduces exactly across DDP ranks.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


def per_image_overlap(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image intersection, prediction area and target area.

    Args:
        pred: bool/0-1 tensor ``(N, ...)``.
        target: bool/0-1 tensor of the same shape.

    Returns:
        Three float tensors of shape ``(N,)``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    p = pred.reshape(pred.shape[0], -1).bool()
    t = target.reshape(target.shape[0], -1).bool()
    return (p & t).sum(1).double(), p.sum(1).double(), t.sum(1).double()


def per_image_dice(pred: Tensor, target: Tensor) -> Tensor:
    """Dice per image, ``2|P∩T| / (|P| + |T|)``, 1 when both are empty. Shape ``(N,)``."""
    inter, ps, ts = per_image_overlap(pred, target)
    denom = ps + ts
    return torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.ones_like(denom))


def per_image_iou(pred: Tensor, target: Tensor) -> Tensor:
    """IoU per image, ``|P∩T| / |P∪T|``, 1 when both are empty. Shape ``(N,)``."""
    inter, ps, ts = per_image_overlap(pred, target)
    union = ps + ts - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


class _PerImageMean(Metric):
    """Mean of a per-image score over all images seen (on all ranks)."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, threshold: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _score(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, probs: Tensor, target: Tensor) -> None:
        """Args: probs ``(N, 1, H, W)`` in [0, 1]; target of the same shape, 0/1."""
        scores = self._score(probs > self.threshold, target > 0.5)
        self.total += scores.sum()
        self.count += scores.numel()

    def compute(self) -> Tensor:
        return (self.total / self.count.clamp_min(1)).float()


class PerImageDice(_PerImageMean):
    """Mean per-image Dice (empty prediction on empty ground truth scores 1)."""

    def _score(self, pred: Tensor, target: Tensor) -> Tensor:
        return per_image_dice(pred, target)


class PerImageIoU(_PerImageMean):
    """Mean per-image IoU (empty prediction on empty ground truth scores 1)."""

    def _score(self, pred: Tensor, target: Tensor) -> Tensor:
        return per_image_iou(pred, target)
