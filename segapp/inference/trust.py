"""Per-image trust signals from one prediction: uncertainty, estimated Dice, agreement, review.

Numpy only (the slim ONNX container runs it). Every definition here is documented in
docs/inference.md ("Which predictions to trust"); the thresholds come from the model's
``trust`` block, fitted on its validation split at the end of ``segapp fit``
(:mod:`segapp.lit.calibrate`), never set by hand:

- **uncertainty**: mean binary entropy (bits, 0-1) of the calibrated probability over the
  predicted lesion and a border band around it (the whole image when the mask is empty): the
  same :func:`segapp.eval.calibration.uncertainty_score` that ``segapp-eval --probs`` uses;
- **est_dice**: the Dice the mask is expected to have if the calibrated probabilities are
  right: ``2 sum(q m) / (sum(q) + sum(m))`` (an ensemble's mean probability carries its members'
  disagreement into it); for an empty mask ``1 - max(q)``, the chance there is no lesion;
- **agreement**: mean pairwise Dice between the masks of the variants (ensemble members x
  test-time flips), empty with one variant;
- **review**: yes when any rule fires; ``risk`` (for sorting) is the largest ratio of a signal
  to its threshold, so ``risk > 1`` is exactly "flagged by a score".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from segapp.eval.calibration import binary_entropy, uncertainty_score
from segapp.io.scans import low_range_max

__all__ = ["binary_entropy", "uncertainty_score"]  # one definition, shared with segapp-eval --probs

EST_DICE_FLOOR = 0.8  # "failure" below this Dice: the definition the benchmarks use too
INPUT_RISK, EMPTY_RISK = 3.0, 1.5  # sort keys of the rules that are not ratios
REASONS = (
    "model: trust not calibrated",
    "out of distribution",
    "input: blank",
    "input: saturated",
    "input: low-range",
    "input: channels",
    "uncertain",
    "low estimated Dice",
    "empty prediction",
)


def expected_dice(probs: np.ndarray, mask: np.ndarray) -> float:
    """The Dice ``mask`` is expected to score if ``probs`` are right.

    A non-empty mask: ``2 sum(q m) / (sum(q) + sum(m))``, the soft Dice of the probabilities
    against the mask. An empty mask scores 1 when the truth is empty too (segapp's convention)
    and 0 otherwise, so its estimate is the chance that there is no lesion: ``1 - max(q)``, the
    most probable pixel standing for the lesion (a lesion is a blob, its pixels are not
    independent; with independent pixels an empty call on any large image would score 0).
    """
    p, m = np.asarray(probs, np.float64), np.asarray(mask, bool)
    if not m.any():
        return 1.0 if p.size == 0 else float(1.0 - p.max())
    return float(2 * p[m].sum() / (p.sum() + m.sum()))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two bool masks; 1 when both are empty."""
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


def agreement(masks: list[np.ndarray]) -> float | None:
    """Mean pairwise Dice of the variants' masks (None for fewer than two)."""
    if len(masks) < 2:
        return None
    return float(np.mean([dice(a, b) for a, b in combinations(masks, 2)]))


def input_checks(
    frame: np.ndarray,
    in_channels: int,
    trained_on_colour: bool | None,
    depth_known: bool = True,
    trained_on_low_range: bool = False,
) -> list[str]:
    """Cheap checks of a raw ``H x W x C`` frame: ``blank``, ``saturated``, ``low-range``, ``channels``.

    ``blank``: (almost) one value everywhere, or non-finite values. For 8-bit frames: standard
    deviation under 1 % of 255. For other dtypes a robust spread, so one dead or hot pixel
    neither hides a blank frame nor makes a real one blank: the 1st-99th percentile range of the
    (sampled) frame is zero or at most 1 % of ``max(|p1|, |p99|)``. ``saturated``: over
    half the pixels of an integer image at the dtype's maximum (over-exposed; a black border is
    not saturation). ``low-range``: a 16-bit frame whose values stop below 4096 and whose scale
    the reader does not know (``depth_known`` False: an image file that declares no bit depth;
    see :func:`segapp.io.scans.depth_known`), read near-black, 12-bit data or not; not checked
    for a model ``trained_on_low_range`` (it learnt on such scans, read the same way).
    ``channels``: a grey scan (one channel, or equal channels) for a model trained on colour scans.
    """
    f = np.asarray(frame)
    if f.ndim == 3 and f.shape[2] in (2, 4):  # grey+alpha or RGBA: the alpha is no image content
        f = f[:, :, :-1]
    sample = f[:: max(1, f.shape[0] // 128), :: max(1, f.shape[1] // 128)].astype(np.float32)
    out = []
    if not np.isfinite(sample).all():
        return ["blank"]
    if f.dtype == np.uint8:
        blank = float(sample.std()) < 2.55
    else:
        p1, p99 = (float(v) for v in np.percentile(sample, [1, 99]))
        spread = p99 - p1
        blank = spread <= 0 or spread <= 0.01 * max(abs(p1), abs(p99))
    if blank:
        return ["blank"]  # nothing else is worth saying about a frame of one value
    if np.issubdtype(f.dtype, np.integer) and float((sample >= np.iinfo(f.dtype).max).mean()) > 0.5:
        out.append("saturated")
    if not depth_known and not trained_on_low_range and low_range_max(f) is not None:
        out.append("low-range")
    grey = f.shape[2] == 1 or bool(np.all(sample[..., :1] == sample[..., 1:3]))
    if trained_on_colour and in_channels >= 3 and grey:
        out.append("channels")
    return out


def input_note(frame: np.ndarray, checks: list[str]) -> str:
    """For the ``reason`` column: what a fired check expected, what it got and the fix ("" for none).

    Only ``low-range`` needs more than its name: the value the scan stops at, and how to store it
    so it is read at its brightness.
    """
    top = low_range_max(np.asarray(frame)) if "low-range" in checks else None
    if top is None:
        return ""
    return (
        f"input: low-range: expected a 16-bit scan to use more than 12 of its bits or to declare its depth, got "
        f"values that stop at {top} of 65535, so it is read as 16-bit and looks near-black to the model; fix: if it "
        "is 12-bit data, store it as 8-bit or full-range 16-bit, or set its TIFF MaxSampleValue (4095) / PNG sBIT (12)"
    )


def volume_signals(slices: list[dict[str, Any]], probs: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """One NIfTI volume's signals: estimated Dice over the whole volume, the other signals' slice means."""

    def mean_of(key: str) -> Any:
        vals = [s[key] for s in slices if s.get(key) not in (None, "")]
        return round(float(np.mean(vals)), 4) if vals else ""

    return {
        "uncertainty": mean_of("uncertainty"),
        "est_dice": round(expected_dice(probs, mask), 4),
        "agreement": mean_of("agreement"),
        "ood_score": mean_of("ood_score"),
    }


@dataclass(frozen=True)
class TrustRules:
    """The thresholds of the review rules (the model's ``trust`` block; neutral without one).

    Args:
        temperature: Divides the logits before the sigmoid for every reported probability.
        uncertainty_threshold: ``uncertain`` above it (validation's 90th percentile).
        est_dice_threshold: ``low estimated Dice`` below it.
        flag_empty: Flag an empty prediction on an in-distribution scan (training masks are
            rarely empty).
        trained_on_colour: For the ``channels`` input check.
        trained_on_low_range: The model learnt on undeclared 12-bit-in-16 scans: no ``low-range`` check.
        unreliable: Why the model's own signals overstate its Dice on validation (empty: they
            held); every prediction is then flagged ``model: trust not calibrated``.
    """

    temperature: float = 1.0
    uncertainty_threshold: float | None = None
    est_dice_threshold: float = EST_DICE_FLOOR
    flag_empty: bool = False
    trained_on_colour: bool | None = None
    trained_on_low_range: bool = False
    unreliable: str = ""

    @classmethod
    def from_meta(cls, trust: dict[str, Any] | None) -> TrustRules:
        """From a checkpoint's (or ensemble's) ``trust`` block; neutral rules when it is None."""
        if not trust:
            return cls()
        return cls(
            temperature=float(trust.get("temperature", 1.0)),
            uncertainty_threshold=trust.get("uncertainty_threshold"),
            est_dice_threshold=float(trust.get("est_dice_threshold", EST_DICE_FLOOR)),
            flag_empty=bool(trust.get("flag_empty", False)),
            trained_on_colour=trust.get("trained_on_colour"),
            trained_on_low_range=bool(trust.get("trained_on_low_range", False)),
            unreliable=str(trust.get("unreliable") or ""),
        )


def review(signals: dict[str, Any], checks: list[str], empty: bool, rules: TrustRules) -> dict[str, Any]:
    """The ``review``, ``review_reason`` and ``risk`` columns for one output."""
    scores: dict[str, float] = {}
    ood = signals.get("ood_score")
    if ood is not None and ood != "":
        scores["out of distribution"] = float(ood)
    for c in checks:
        scores[f"input: {c}"] = INPUT_RISK
    if rules.unreliable:  # its calibration showed its signals overstate its Dice: none of them is a pass
        scores["model: trust not calibrated"] = INPUT_RISK
    if rules.uncertainty_threshold:
        scores["uncertain"] = signals["uncertainty"] / rules.uncertainty_threshold
    scores["low estimated Dice"] = (1 - signals["est_dice"]) / max(1 - rules.est_dice_threshold, 1e-6)
    in_dist = scores.get("out of distribution", 0.0) <= 1 and not checks
    if empty and rules.flag_empty and in_dist:
        scores["empty prediction"] = EMPTY_RISK
    reasons = [r for r in REASONS if scores.get(r, 0.0) > 1]
    return {
        "review": "yes" if reasons else "no",
        "review_reason": "; ".join(reasons),
        "risk": math.ceil(max(scores.values()) * 1e4) / 1e4,  # rounded up: "risk > 1" is exactly "flagged"
    }
