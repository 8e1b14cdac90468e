"""Loss factory for binary segmentation on logits ``(N, 1, H, W)``."""

from __future__ import annotations

from typing import Literal

from monai.losses import DiceCELoss, DiceLoss
from torch import Tensor, nn

from segapp.errors import check_choice

LossName = Literal["dice_bce", "dice", "bce"]


class _BCE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.bce(logits, target)


_LOSSES = {
    # MONAI's DiceCELoss uses BCE-with-logits for a single channel; Dice is computed per image.
    "dice_bce": lambda: DiceCELoss(sigmoid=True),
    "dice": lambda: DiceLoss(sigmoid=True),
    "bce": _BCE,
}


def create_loss(name: LossName) -> nn.Module:
    """Build a loss by name: ``dice_bce`` (default; Dice + BCE, equal weights), ``dice``, ``bce``.

    Raises:
        SettingError: for an unknown name, listing the valid ones (a ValueError).
    """
    check_choice("model.loss", name, _LOSSES)
    return _LOSSES[name]()
