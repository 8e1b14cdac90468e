"""Fit a model's ``trust`` block from its training and validation splits.

After ``segapp fit`` (the :class:`TrustCalibration` callback) and, for a fold ensemble, on the
pooled out-of-fold predictions (``segapp-cv``), this fits what inference needs to say how far to
trust a mask, all from data, none by hand:

- ``temperature``: one scalar T minimising the pixel-level NLL of ``sigmoid(logit / T)`` on
  validation logits. Masks never use it (they threshold the uncalibrated probability, which is
  the same as thresholding the logit), so calibration changes reported probabilities only;
- ``features``: the mean and Ledoit-Wolf-shrunk inverse covariance of the pooled features of the
  training split (no augmentation), and ``ood_scale``: the distance that
  ``1 - OOD_FALSE_ALARM`` of the validation scans stay under (ratio 1 = the threshold);
- ``uncertainty_threshold``: the ``UNCERTAIN_QUANTILE`` quantile of the validation scans'
  uncertainty; ``flag_empty``: whether the training masks are rarely empty;
  ``trained_on_colour``: whether the training scans are colour.
  ``trained_on_low_range``: whether most training scans are undeclared 12-bit-in-16 (no
  ``input: low-range`` flag then).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from segapp.eval.calibration import calibration_error as ece_of
from segapp.inference.checkpoint import add_block
from segapp.inference.trust import EST_DICE_FLOOR, dice, expected_dice, uncertainty_score
from segapp.nets.trust import forward_with_features

log = logging.getLogger(__name__)

OOD_FALSE_ALARM = 0.02  # share of validation scans allowed above the OOD threshold
UNCERTAIN_QUANTILE = 0.9  # the most uncertain tenth of validation is "uncertain"
EMPTY_SHARE_FOR_FLAG = 0.1  # flag empty predictions when under 10 % of training masks are empty
MAX_PIXELS = 2_000_000  # pixels sampled for the temperature fit
MAX_OVERSTATEMENT = 0.1  # mean est_dice above mean true Dice on validation by more: trust signals unreliable


def fit_temperature(logits: Tensor, targets: Tensor) -> float:
    """The T > 0 minimising mean BCE of ``sigmoid(logits / T)`` (1-D, bounded search on log T)."""
    from scipy.optimize import minimize_scalar

    z, y = logits.double().flatten(), targets.double().flatten()

    def nll(log_t: float) -> float:
        return float(torch.nn.functional.binary_cross_entropy_with_logits(z / np.exp(log_t), y))

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def calibration_error(probs: Tensor, targets: Tensor) -> float:
    """Pixel-level expected calibration error: the one definition ``segapp-eval --probs`` reports."""
    return float(ece_of(probs.flatten().float().numpy(), targets.flatten().numpy())["ece"])


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, shrunk covariance)`` of the rows of ``x`` (Ledoit & Wolf 2004, shrinkage to a scaled identity).

    With no more samples than dimensions the shrinkage is at least ``d / (n + d)``: the sample
    covariance then has rank below ``d`` and Ledoit-Wolf's estimate of the shrinkage can come out
    0 (two samples: a rank-1 covariance under which whole directions cost nothing).
    """
    x = np.asarray(x, np.float64)
    n, d = x.shape
    mean = x.mean(0)
    xc = x - mean
    cov = xc.T @ xc / n
    mu = np.trace(cov) / d
    delta = ((cov - mu * np.eye(d)) ** 2).sum() / d
    beta = sum((((r[:, None] * r[None, :]) - cov) ** 2).sum() for r in xc) / (n * n * d)
    shrink = 0.0 if delta <= 0 else min(beta / delta, 1.0)
    if n <= d:
        shrink = max(shrink, d / (n + d))
    return mean, shrink * mu * np.eye(d) + (1 - shrink) * cov


MIN_SCANS = 8  # fewer training or validation scans than this: no OOD statistics (an empty score, not a 0)


def feature_stats(train_feats: np.ndarray, val_feats: np.ndarray) -> dict[str, Any] | None:
    """Mean, precision and the OOD scale (validation quantile of the Mahalanobis distance);
    None with fewer than :data:`MIN_SCANS` training or validation scans."""
    if len(train_feats) < MIN_SCANS or len(val_feats) < MIN_SCANS:
        return None
    mean, cov = ledoit_wolf(train_feats)
    precision = np.linalg.pinv(cov, hermitian=True)
    diff = val_feats - mean
    dist = np.sqrt(np.maximum(((diff @ precision) * diff).sum(1), 0))
    scale = float(np.quantile(dist, 1 - OOD_FALSE_ALARM)) if len(dist) else 1.0
    return {
        "mean": torch.tensor(mean, dtype=torch.float32),
        "precision": torch.tensor(precision, dtype=torch.float32),
        "ood_scale": max(scale, 1e-6),
        "dim": int(mean.shape[0]),
        "false_alarm": OOD_FALSE_ALARM,
    }


def _is_colour(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Per image: do the de-normalised channels differ (colour) or not (grey)?"""
    if x.shape[1] < 3:
        return torch.zeros(x.shape[0], dtype=torch.bool)
    raw = x * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
    return (raw[:, 1:3] - raw[:, :1]).abs().amax(dim=(1, 2, 3)) > 1e-3


@torch.no_grad()
def collect(net: nn.Module, loader: Iterable[dict[str, Tensor]], spec: Any, keep_logits: bool) -> dict[str, Any]:
    """Run ``net`` over a loader: pooled features, and (``keep_logits``) logits and targets."""
    mean, std = torch.tensor(spec.mean), torch.tensor(spec.std)
    feats, logits, targets, colour, empty = [], [], [], [], []
    device = next(net.parameters()).device
    for batch in loader:
        x = batch["image"].to(device)
        y, f = forward_with_features(net, x)
        feats.append(f.cpu().double().numpy())
        colour.append(_is_colour(batch["image"], mean, std))
        empty.append(batch["mask"].flatten(1).amax(1) <= 0.5)
        if keep_logits:
            logits.append(y[:, 0].float().cpu())
            targets.append(batch["mask"][:, 0] > 0.5)
    out: dict[str, Any] = {
        "features": np.concatenate(feats),
        "colour": torch.cat(colour),
        "empty": torch.cat(empty),
    }
    if keep_logits:
        out["logits"], out["targets"] = torch.cat(logits), torch.cat(targets)
    return out


def _sample(logits: Tensor, targets: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
    z, y = logits.flatten(), targets.flatten()
    if z.numel() > MAX_PIXELS:
        idx = torch.randperm(z.numel(), generator=torch.Generator().manual_seed(seed))[:MAX_PIXELS]
        z, y = z[idx], y[idx]
    return z, y


def review_stats(logits: Tensor, threshold: float, temperature: float) -> dict[str, Any]:
    """Uncertainty threshold from validation logits (calibrated), and the signals' summary."""
    probs, cal = torch.sigmoid(logits).numpy(), torch.sigmoid(logits / temperature).numpy()
    unc = np.array([uncertainty_score(q, p > threshold) for p, q in zip(probs, cal, strict=True)])
    est = np.array([expected_dice(q, p > threshold) for p, q in zip(probs, cal, strict=True)])
    return {
        "uncertainty_threshold": float(np.quantile(unc, UNCERTAIN_QUANTILE)) if len(unc) else None,
        "val_uncertainty_median": float(np.median(unc)) if len(unc) else None,
        "val_est_dice_median": float(np.median(est)) if len(est) else None,
    }


def checked_temperature(z: Tensor, y: Tensor) -> tuple[float, float, float, str]:
    """``(temperature, ECE before, ECE after, note)``: the NLL-fitted T, or 1 (with the reason) when
    the fit ended at its search bound, the pixels hold one class only, or the ECE got worse."""
    before = calibration_error(torch.sigmoid(z), y)
    if bool(y.all()) or not bool(y.any()):
        return 1.0, before, before, "kept T = 1: the validation pixels hold one class only"
    t = fit_temperature(z, y)
    after = calibration_error(torch.sigmoid(z / t), y)
    if not 0.051 < t < 19.9:
        return 1.0, before, before, f"kept T = 1: the fit ended at its bound ({t:.3g})"
    if after > before:
        worse = f"({before:.4f} -> {after:.4f})"
        return 1.0, before, before, f"kept T = 1: T = {t:.3g} made the validation ECE worse {worse}"
    return t, before, after, ""


def overstated(logits: Tensor, targets: Tensor, threshold: float, temperature: float) -> str:
    """Why the trust signals of this model cannot be trusted, or ``""``: on its validation split the
    mean estimated Dice overstates the mean true Dice by more than :data:`MAX_OVERSTATEMENT`.

    An overconfident weak model (its temperature fit at the bound, T kept at 1) gave est_dice
    0.96-0.99 on every scan against a true 0.30, and review=no on most: every signal said "fine"."""
    probs, cal = torch.sigmoid(logits).numpy(), torch.sigmoid(logits / temperature).numpy()
    masks = [p > threshold for p in probs]
    est = float(np.mean([expected_dice(q, m) for q, m in zip(cal, masks, strict=True)]))
    true = float(np.mean([dice(m, t) for m, t in zip(masks, targets.numpy(), strict=True)]))
    if est - true <= MAX_OVERSTATEMENT:
        return ""
    return (
        f"on its validation split the estimated Dice ({est:.2f}) overstates the true Dice ({true:.2f}) by more "
        f"than {MAX_OVERSTATEMENT}: its est_dice, uncertainty and review cannot be trusted; every prediction is "
        "flagged for review (train longer or on more data, then calibrate again with segapp fit)"
    )


def fit_block(val: dict[str, Any], train: dict[str, Any], threshold: float) -> dict[str, Any]:
    """The ``trust`` block from :func:`collect` outputs of the validation and training splits."""
    z, y = _sample(val["logits"], val["targets"])
    temperature, before, after, note = checked_temperature(z, y)
    unreliable = overstated(val["logits"], val["targets"], threshold, temperature)
    return {
        "unreliable": unreliable,
        "temperature": temperature,
        "temperature_note": note,
        "ece_val_before": before,
        "ece_val_after": after,
        "features": feature_stats(train["features"], val["features"]),
        **review_stats(val["logits"], threshold, temperature),
        "est_dice_threshold": EST_DICE_FLOOR,
        "flag_empty": float(train["empty"].float().mean()) < EMPTY_SHARE_FOR_FLAG,
        "trained_on_colour": bool(train["colour"].float().mean() > 0.5),
        "fitted_on": {"train": len(train["features"]), "val": len(val["features"])},
    }


def _eval_loader(dm: Any, split: str) -> DataLoader:
    ds = dm.dataset(split, train=False)
    return DataLoader(ds, batch_size=dm.hparams.batch_size, shuffle=False, num_workers=0)


def calibrate_net(net: nn.Module, dm: Any, threshold: float) -> dict[str, Any]:
    """Fit the trust block of ``net`` on ``dm``'s train and val splits (eval mode, no augmentation)."""
    net.eval()
    spec = dm.preprocess_spec()
    val = collect(net, _eval_loader(dm, "val"), spec, keep_logits=True)
    train = collect(net, _eval_loader(dm, "train"), spec, keep_logits=False)
    return {**fit_block(val, train, threshold), "trained_on_low_range": trained_on_low_range(dm)}


def trained_on_low_range(dm: Any) -> bool:
    """Whether most training scans are 16-bit with values below 4096 and no declared depth (the
    pre-flight check's ``low_range``): such a model learnt on scans read near-black, so
    ``input: low-range`` on its inputs is what it was trained on, not a warning (it flagged every
    scan of its own kind)."""
    report, train = getattr(dm, "report", None), getattr(dm, "splits", {}).get("train") or []
    if report is None or not report.low_range or not train:
        return False
    low = set(report.low_range)
    return sum(str(p.image) in low for p in train) > len(train) / 2


class TrustCalibration(L.Callback):
    """At the end of ``segapp fit``, fit the trust block of ``best.ckpt`` and store it there.

    Runs on rank 0 only, on the best checkpoint's weights (``last.ckpt`` when no best was kept);
    printed as one line. Skipped, with a note, when the run has no validation split.
    """

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        dm = getattr(trainer, "datamodule", None)
        cb = trainer.checkpoint_callback
        path = Path(getattr(cb, "best_model_path", "") or getattr(cb, "last_model_path", "") or "")
        if dm is None or not path.is_file() or not getattr(dm, "splits", {}).get("val"):
            print("trust: not fitted (no checkpoint or no validation split); predictions get no OOD score")
            return
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        net = copy.deepcopy(pl_module.net).cpu()
        net.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
        block = calibrate_net(net, dm, float(ckpt["segapp"]["threshold"]))
        if block["features"] is None:
            del block["features"]
            print(f"trust: fewer than {MIN_SCANS} training or validation scans: no OOD statistics (empty ood_score)")
        if block["temperature_note"]:
            print(f"trust: {block['temperature_note']}")
        if block["unreliable"]:
            print(f"trust: WARNING: {block['unreliable']}")
        add_block(path, "trust", block)
        print(
            f"trust: temperature {block['temperature']:.3f} (validation ECE {block['ece_val_before']:.4f} -> "
            f"{block['ece_val_after']:.4f}), statistics of {block['fitted_on']['train']} training scans, "
            f"written to {path.name}"
        )


@torch.no_grad()
def out_of_fold(checkpoint: Path, dm: Any) -> dict[str, Tensor]:
    """Logits and targets of a fold's best checkpoint on its own validation split (out of fold)."""
    from segapp.inference.checkpoint import load_net

    net, spec, _, _ = load_net(checkpoint)
    got = collect(net, _eval_loader(dm, "val"), spec, keep_logits=True)
    return {"logits": got["logits"].half(), "targets": got["targets"]}


def best_threshold(logits: Tensor, targets: Tensor) -> tuple[float, float]:
    """The grid threshold with the best mean per-image Dice (ties: closest to 0.5), and that Dice."""
    from segapp.lit.threshold import ThresholdSweep

    sweep = ThresholdSweep()
    for i in range(0, len(logits), 32):
        sweep.update(torch.sigmoid(logits[i : i + 32].float()), targets[i : i + 32].float())
    return sweep.compute()


def fit_ensemble(oof: list[dict[str, Tensor]], member_trust: list[dict[str, Any] | None]) -> dict[str, Any]:
    """The ensemble's threshold and trust rules from pooled out-of-fold predictions.

    Each image's out-of-fold prediction comes from the one member that did not train on it, so
    the pooled set is as large as the data and touches no member's training images.
    """
    logits = torch.cat([o["logits"] for o in oof]).float()
    targets = torch.cat([o["targets"] for o in oof])
    threshold, dice = best_threshold(logits, targets)
    z, y = _sample(logits, targets)
    temperature, before, after, note = checked_temperature(z, y)
    present = [t for t in member_trust if t]
    rules = {
        "temperature": temperature,
        **{k: v for k, v in review_stats(logits, threshold, temperature).items() if k == "uncertainty_threshold"},
        "est_dice_threshold": EST_DICE_FLOOR,
        "flag_empty": bool(present) and all(t.get("flag_empty", False) for t in present),
        "trained_on_colour": any(t.get("trained_on_colour") for t in present),
        "trained_on_low_range": all(t.get("trained_on_low_range") for t in present),
        # the members' own checks do not carry over: the pooled out-of-fold predictions are the ensemble's
        "unreliable": overstated(logits, targets, threshold, temperature),
    }
    return {
        "threshold": float(threshold),
        "trust": rules,
        "oof": {
            "images": len(logits),
            "dice_at_threshold": float(dice),
            "ece_before": before,
            "ece_after": after,
            "temperature_note": note,
        },
    }
