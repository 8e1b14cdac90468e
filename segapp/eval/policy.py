"""How metrics treat empty masks: one explicit, documented, configurable policy.

Four cases per image (``case`` column of ``metrics.csv``):

==============  ===========  ===========  =====================================================
case            ground truth prediction   overlap / boundary scores
==============  ===========  ===========  =====================================================
``both_empty``  empty        empty        ``empty_empty`` (1.0 by default = a correct "no lesion",
                                          as in training; ``nan`` leaves the image out)
``false_pos``   empty        non-empty    0 (Dice, IoU, precision, recall, boundary F1, NSD)
``missed``      non-empty    empty        0
``both``        non-empty    non-empty    computed
==============  ===========  ===========  =====================================================

Distances (HD95, ASSD) are 0 for ``both_empty``. When exactly one side is empty they are
undefined; ``distance_empty`` says what to do: ``nan`` (default) leaves the image out of the
distance statistics (the summary counts such images), ``max`` scores it with the image diagonal
(the largest distance possible in that image, in the same unit).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

Case = Literal["both_empty", "false_pos", "missed", "both"]
CASES: tuple[str, ...] = ("both_empty", "false_pos", "missed", "both")
DistanceEmpty = Literal["nan", "max"]


@dataclass(frozen=True)
class EmptyPolicy:
    """Scores for images where the ground truth and/or the prediction is empty.

    Args:
        empty_empty: Overlap and boundary score when both masks are empty: ``1.0`` (default,
            the training definition of Dice) or ``float("nan")`` to leave such images out.
        distance_empty: HD95/ASSD when exactly one mask is empty: ``nan`` (left out, counted)
            or ``max`` (the image diagonal).
    """

    empty_empty: float = 1.0
    distance_empty: DistanceEmpty = "nan"

    def __post_init__(self) -> None:
        if not (math.isnan(self.empty_empty) or 0.0 <= self.empty_empty <= 1.0):
            raise ValueError(f"empty_empty must be in [0, 1] or nan, got {self.empty_empty}")
        if self.distance_empty not in ("nan", "max"):
            raise ValueError(f"distance_empty must be 'nan' or 'max', got {self.distance_empty!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["empty_empty"] = None if math.isnan(self.empty_empty) else self.empty_empty
        return d


def classify(gt_any: bool, pred_any: bool) -> Case:
    """The empty-mask case of an image (see the module table)."""
    if gt_any:
        return "both" if pred_any else "missed"
    return "false_pos" if pred_any else "both_empty"
