"""Loss factory for binary segmentation on logits ``(N, 1, H, W)``."""

from __future__ import annotations

from typing import Literal

from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, TverskyLoss
from torch import Tensor, nn

from segapp.errors import check_choice

LossName = Literal["dice_bce", "dice", "bce", "dice_focal", "tversky"]


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
    # Dice + focal (gamma 2): the BCE half with easy (mostly background) pixels down-weighted.
    "dice_focal": lambda: DiceFocalLoss(sigmoid=True, gamma=2.0),
    # Tversky alpha 0.3 / beta 0.7 (Salehi et al. 2017): a missed lesion pixel costs more than a
    # false one, per image, so a small lesion that is missed weighs like a large one.
    "tversky": lambda: TverskyLoss(sigmoid=True, alpha=0.3, beta=0.7),
}


def create_loss(name: LossName) -> nn.Module:
    """Build a loss by name: ``dice_bce`` (default; Dice + BCE, equal weights), ``dice``, ``bce``,
    ``dice_focal`` (Dice + focal, gamma 2) or ``tversky`` (alpha 0.3 on false positives, beta 0.7
    on false negatives). All are MONAI's, on logits, Dice-type terms per image.

    Raises:
        SettingError: for an unknown name, listing the valid ones (a ValueError).
    """
    check_choice("model.loss", name, _LOSSES)
    return _LOSSES[name]()
