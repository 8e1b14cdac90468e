"""``segapp validate`` / ``segapp test`` score at the checkpoint's tuned threshold, as segapp-predict predicts."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from segapp.lit.module import SegmentationModule


def _module(fn: str) -> SegmentationModule:
    m = SegmentationModule()
    m._trainer = SimpleNamespace(state=SimpleNamespace(fn=fn))
    m.tuned_threshold = 0.3
    return m


def test_test_and_validate_score_at_the_tuned_threshold_fit_at_the_base_one():
    """test/dice was at model.threshold (0.5): 0.066 against the report's 0.144 at a tuned 0.30."""
    probs, mask = torch.full((1, 1, 4, 4), 0.4), torch.ones(1, 1, 4, 4)
    test = _module("test")
    test.on_test_start()
    test.test_dice(probs, mask)
    assert test.test_dice.compute() == 1.0  # 0.4 > 0.3: the mask segapp-predict writes
    val = _module("validate")
    val.on_validation_start()
    assert val.val_dice.threshold == val.val_iou.threshold == 0.3
    fit = _module("fit")
    fit.on_validation_start()  # during fit, best.ckpt is chosen at the base threshold
    assert fit.val_dice.threshold == 0.5
