"""At the end of ``segapp fit``: choose the model's TTA and clean-up on its validation split.

The rule and what is stored: :mod:`segapp.inference.choice`. This callback reads the validation
split at original resolution, runs the best checkpoint through the predictor that
``segapp-predict`` uses, and writes the block into that checkpoint (atomically), after
:class:`~segapp.lit.calibrate.TrustCalibration`. The planner counts its time in the budget.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from segapp.data.layouts import Pair
from segapp.errors import check_range
from segapp.inference.checkpoint import add_block
from segapp.inference.choice import CHOICE_KEY, MAX_IMAGES, MIN_IMAGES, decide, describe_choice, too_few, variant_scores
from segapp.io import MaskRule, read_image, read_masks
from segapp.lit.preview import spread


def _cases(pairs: Sequence[Pair], rule: MaskRule) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    for p in pairs:
        yield p.key, read_image(p.image), read_masks(p.masks, rule)


def choose_for_checkpoint(path: Path, pairs: Sequence[Pair], rule: MaskRule, device: str = "cpu") -> dict[str, Any]:
    """The choice block of the checkpoint at ``path`` on ``pairs`` (its validation split)."""
    from segapp.inference.predictor import Predictor

    if len(pairs) < MIN_IMAGES:
        return too_few(len(pairs))
    predictor = Predictor.from_checkpoint(path, device=device, tta="none", keep_largest=False)
    return decide(variant_scores(predictor, _cases(pairs, rule), batch=8 if device == "cuda" else 1))


class InferenceChoice(L.Callback):
    """Choose and store the best checkpoint's inference options (rank 0, after training).

    A failure here (an unreadable validation file, say) does not fail the finished run: it is
    printed, and the checkpoint keeps no choice (predictions then use no TTA unless asked).

    Args:
        max_images: Validation images scored at most (evenly spaced); 0 switches the choice off.
    """

    def __init__(self, max_images: int = MAX_IMAGES) -> None:
        check_range("InferenceChoice.max_images", max_images, 0)
        self.max_images = max_images

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        if self.max_images <= 0:
            print("inference choice: off (max_images 0); predictions use no TTA unless asked")
            return
        dm = getattr(trainer, "datamodule", None)
        cb = trainer.checkpoint_callback
        path = Path(getattr(cb, "best_model_path", "") or getattr(cb, "last_model_path", "") or "")
        val = getattr(dm, "splits", {}).get("val") if dm is not None else None
        if not path.is_file() or not val:
            print("inference choice: none (no checkpoint or no validation split); predictions use no TTA")
            return
        device = "cuda" if pl_module.device.type == "cuda" else "cpu"
        try:
            block = choose_for_checkpoint(path, spread(val, self.max_images), dm.mask_rule, device)
        except Exception as e:  # an optional step: say why and keep the finished run
            print(f"inference choice: skipped ({type(e).__name__}: {e}); predictions use no TTA unless asked")
            return
        add_block(path, CHOICE_KEY, block)
        if "note" in block:
            print(f"inference choice: {block['note']}")
            return
        print(f"inference choice: {describe_choice(block)}, written to {path.name}")
