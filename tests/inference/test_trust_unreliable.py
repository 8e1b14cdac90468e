"""A model whose own trust signals overstate its Dice on validation flags every prediction."""

from __future__ import annotations

import torch

from segapp.inference.ensemble import _mean_rules
from segapp.inference.trust import TrustRules, review
from segapp.lit.calibrate import MAX_OVERSTATEMENT, overstated


def _val(confident_wrong: bool) -> tuple[torch.Tensor, torch.Tensor]:
    targets = torch.zeros(6, 16, 16, dtype=torch.bool)
    targets[:, 4:8, 4:8] = True  # a 16-pixel lesion in each
    if confident_wrong:  # lesion almost everywhere, with confidence: est_dice high, true Dice low
        return torch.full((6, 16, 16), 6.0), targets
    return torch.where(targets, 6.0, -6.0), targets  # right and confident


def test_an_overconfident_wrong_model_is_marked_unreliable_and_every_prediction_flagged():
    """est_dice 0.96-0.99 on every scan against a true 0.30, review=no on 25 of 32: every signal said fine."""
    logits, targets = _val(confident_wrong=True)
    why = overstated(logits, targets, 0.5, 1.0)
    assert "overstates the true Dice" in why and f"more than {MAX_OVERSTATEMENT}" in why
    assert overstated(*_val(confident_wrong=False), 0.5, 1.0) == ""
    fine = {"uncertainty": 0.01, "est_dice": 0.99, "ood_score": 0.5}
    assert review(fine, [], False, TrustRules())["review"] == "no"
    flagged = review(fine, [], False, TrustRules.from_meta({"unreliable": why}))
    assert flagged["review"] == "yes" and flagged["review_reason"] == "model: trust not calibrated"
    assert "unreliable" in (_mean_rules([{"temperature": 1.0}, {"temperature": 1.0, "unreliable": why}]) or {})
    assert _mean_rules([{"temperature": 1.0, "unreliable": why}, {"temperature": 1.0}])["unreliable"] == why


def test_risk_above_one_is_exactly_flagged():
    """risk was rounded to 4 decimals: a ratio of 1.00003 was flagged with risk 1.0."""
    out = review(
        {"uncertainty": 0.3001, "est_dice": 0.9, "ood_score": 0.5}, [], False, TrustRules(uncertainty_threshold=0.30009)
    )
    assert out["review"] == "yes" and out["risk"] > 1
