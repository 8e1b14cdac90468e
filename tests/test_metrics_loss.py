import numpy as np
import pytest
import torch

from segapp.lit.losses import create_loss
from segapp.lit.metrics import PerImageDice, PerImageIoU, per_image_dice, per_image_iou
from segapp.lit.threshold import ThresholdSweep


def numpy_dice(p, t):
    p, t = p.astype(bool), t.astype(bool)
    if p.sum() + t.sum() == 0:
        return 1.0
    return 2 * (p & t).sum() / (p.sum() + t.sum())


def test_per_image_dice_and_iou_known_values():
    pred = torch.zeros(3, 1, 4, 4)
    tgt = torch.zeros(3, 1, 4, 4)
    pred[0, 0, :2] = 1  # 8 px
    tgt[0, 0, :1] = 1  # 4 px, inside pred -> dice 8/12, iou 4/8
    pred[1, 0, 0, 0] = 1  # false positive on empty target -> 0
    # image 2: both empty -> 1
    assert per_image_dice(pred, tgt).tolist() == pytest.approx([2 / 3, 0.0, 1.0])
    assert per_image_iou(pred, tgt).tolist() == pytest.approx([0.5, 0.0, 1.0])


def test_metric_is_mean_of_per_image_scores_across_batches():
    rng = np.random.default_rng(0)
    metric = PerImageDice()
    iou = PerImageIoU()
    expected = []
    for _ in range(3):
        probs = rng.random((5, 1, 8, 8)).astype(np.float32)
        tgt = (rng.random((5, 1, 8, 8)) > 0.7).astype(np.float32)
        tgt[0] = 0
        probs[0] = 0.1  # an empty-empty image scores 1
        metric.update(torch.from_numpy(probs), torch.from_numpy(tgt))
        iou.update(torch.from_numpy(probs), torch.from_numpy(tgt))
        expected += [numpy_dice(p > 0.5, t > 0.5) for p, t in zip(probs, tgt, strict=True)]
    assert metric.compute().item() == pytest.approx(np.mean(expected), abs=1e-6)
    assert 0 < iou.compute().item() < metric.compute().item()


def test_dice_bce_loss_known_values():
    loss = create_loss("dice_bce")
    tgt = torch.zeros(1, 1, 2, 2)
    tgt[0, 0, 0] = 1
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere
    bce = np.log(2)
    dice = 1 - (2 * 1.0 + 1e-5) / (2.0 + 2.0 + 1e-5)  # 2*sum(p*t)=1*... : sum(p*t)=1, sum(p)=2, sum(t)=2
    assert loss(logits, tgt).item() == pytest.approx(bce + dice, abs=1e-5)
    perfect = torch.where(tgt > 0, 20.0, -20.0)
    assert loss(perfect, tgt).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_focal_loss_known_value_and_perfect_prediction():
    loss = create_loss("dice_focal")
    tgt = torch.zeros(1, 1, 2, 2)
    tgt[0, 0, 0] = 1
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5: focal = mean((1 - 0.5)^2 * log 2)
    dice = 1 - (2 * 1.0 + 1e-5) / (2.0 + 2.0 + 1e-5)
    assert loss(logits, tgt).item() == pytest.approx(dice + 0.25 * np.log(2), abs=1e-5)
    perfect = torch.where(tgt > 0, 20.0, -20.0)
    assert loss(perfect, tgt).item() == pytest.approx(0.0, abs=1e-6)


def test_tversky_costs_a_missed_lesion_pixel_more_than_a_false_one():
    loss = create_loss("tversky")
    tgt = torch.zeros(1, 1, 4, 4)
    tgt[0, 0, :2, :2] = 1  # a 4-pixel lesion
    missed = torch.where(tgt > 0, 20.0, -20.0)
    missed[0, 0, 0, 0] = -20.0  # one lesion pixel missed
    extra = torch.where(tgt > 0, 20.0, -20.0)
    extra[0, 0, 3, 3] = 20.0  # one false pixel
    fn, fp = loss(missed, tgt).item(), loss(extra, tgt).item()
    assert fn == pytest.approx(1 - 3 / (3 + 0.7), abs=1e-4) and fp == pytest.approx(1 - 4 / (4 + 0.3), abs=1e-4)


def test_unknown_loss_lists_valid_names():
    with pytest.raises(ValueError, match="model.loss: expected one of dice_bce, dice, bce, dice_focal, tversky"):
        create_loss("focal")


def test_threshold_sweep_picks_the_best_threshold():
    probs = torch.full((1, 1, 4, 4), 0.1)
    probs[0, 0, :2] = 0.62  # true lesion has prob 0.62
    probs[0, 0, 2] = 0.42  # background rows at 0.42 -> thresholds <= 0.4 add false positives
    tgt = torch.zeros(1, 1, 4, 4)
    tgt[0, 0, :2] = 1
    sweep = ThresholdSweep()
    sweep.update(probs, tgt)
    best, dice = sweep.compute()
    assert dice == pytest.approx(1.0)
    assert best == 0.5  # 0.45..0.6 all give 1.0; tie goes to 0.5
