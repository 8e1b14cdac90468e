"""The model's own inference options, chosen on its validation split after training.

nnU-Net mirrors at inference and decides its post-processing from cross-validation; segapp does
the same from the run's validation split, once, at the end of ``segapp fit``
(:class:`segapp.lit.choose_inference.InferenceChoice`), and stores the choice in the checkpoint
(``ckpt["segapp"]["inference"]``, carried into ONNX exports). ``segapp-predict`` and
:class:`~segapp.inference.predictor.Predictor` use it unless told otherwise.

The rule, the same for every dataset (nothing in it is a tuned number):

- test-time augmentation ``none`` -> ``flip`` -> ``flip4``: each step is taken only when its
  per-image Dice gain over the current choice has a paired 95 % bootstrap CI above zero. Each
  step doubles the forward time of every prediction, so it has to pay for itself on data the
  weights were not fitted to;
- ``keep_largest`` on top of the chosen TTA, by the same test: it deletes every other lesion, so
  it is kept only where the validation split shows that the extra components are false alarms.

Scores are per-image Dice at original resolution through the predictor's own path (its
threshold, resize, mean of flipped probabilities). Fewer than :data:`MIN_IMAGES` validation
images: no choice (the defaults stay: no TTA, every component).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np

CHOICE_KEY = "inference"
MIN_IMAGES = 20
MAX_IMAGES = 200  # validation images scored at most (evenly spaced): bounds the time on large splits
FLIPS = {"none": 1, "flip": 2, "flip4": 4}  # the first n passes of TTA_FLIPS["flip4"]
STEPS: tuple[tuple[str, Any], ...] = (("tta", "flip"), ("tta", "flip4"), ("keep_largest", True))
RULE = (
    "per-image Dice at original resolution on the validation split; none -> flip -> flip4, then "
    "keep_largest, each step taken only when its paired 95 % bootstrap CI of the gain is above zero"
)

Variant = tuple[str, bool]  # (tta, keep_largest)


def model_choice(engine: Any) -> dict[str, Any]:
    """``{"tta": ..., "keep_largest": ...}`` stored with a single model; ``{}`` for none or an ensemble."""
    block = (getattr(engine, "meta", None) or {}).get(CHOICE_KEY)
    if not isinstance(block, dict) or int(getattr(engine, "members", 1)) != 1:
        return {}
    return {k: block[k] for k in ("tta", "keep_largest") if k in block}


def describe_choice(block: dict[str, Any]) -> str:
    """One line for the console: what was chosen and the validation Dice behind it."""
    dice = block.get("dice", {})
    chosen = _name((block["tta"], bool(block["keep_largest"])))
    steps = "; ".join(
        f"{s['option']}: {s['gain']:+.4f} [{s['ci'][0]:+.4f}, {s['ci'][1]:+.4f}] "
        + ("taken" if s["taken"] else "not taken")
        for s in block.get("steps", [])
    )
    return (
        f"tta {block['tta']}, keep_largest {str(block['keep_largest']).lower()} (validation Dice "
        f"{dice.get(chosen, float('nan')):.4f} vs {dice.get('none', float('nan')):.4f} without; {steps})"
    )


def _name(v: Variant) -> str:
    return v[0] + ("+largest" if v[1] else "")


def variant_scores(
    predictor: Any, cases: Iterable[tuple[str, np.ndarray, np.ndarray]], batch: int = 1
) -> dict[str, dict[str, float]]:
    """Per variant name (``none``, ``flip+largest``, ...): per-image Dice ``{key: dice}``.

    ``cases`` yields ``(key, raw image H x W x C, bool ground truth H x W)``. Each image is run
    once through all four flips (``batch`` images per forward pass: 1 on a CPU, where batches of
    8 were slower, 11.4 vs 8.0 s for 48 Kvasir images at 256 px); the variants average the first
    1, 2 or 4 of them.
    """
    p = replace(predictor, tta="flip4", keep_largest=False, min_size=0, batch_size=batch)
    out: dict[str, dict[str, float]] = {_name((t, k)): {} for t in FLIPS for k in (False, True)}
    chunk: list[tuple[str, np.ndarray, np.ndarray]] = []
    for case in cases:
        chunk.append(case)
        if len(chunk) == batch:
            _score_chunk(p, chunk, out)
            chunk = []
    if chunk:
        _score_chunk(p, chunk, out)
    return out


def _score_chunk(p: Any, chunk: list[tuple[str, np.ndarray, np.ndarray]], out: dict[str, dict[str, float]]) -> None:
    from segapp.eval.metrics import overlap_scores
    from segapp.inference.postprocess import clean_mask, upsample

    variants = p.forward_prepared([p.prepare(image) for _, image, _ in chunk])
    for (key, image, gt), (v, _) in zip(chunk, variants, strict=True):
        raw = v[:, : v.shape[1] // 2]
        for tta, n in FLIPS.items():
            mask = upsample(raw[:n].mean(axis=(0, 1)), tuple(image.shape[:2])) > p.threshold
            for largest in (False, True):
                m = clean_mask(mask, keep_largest=True)[0] if largest else mask
                out[_name((tta, largest))][key] = overlap_scores(m, gt)["dice"]


def decide(scores: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The choice block from :func:`variant_scores` (see the module docstring for the rule)."""
    from segapp.eval.stats import paired_compare

    n = len(scores["none"])
    block: dict[str, Any] = {
        "tta": "none",
        "keep_largest": False,
        "rule": RULE,
        "n_images": n,
        "dice": {name: float(np.mean(list(s.values()))) if s else float("nan") for name, s in scores.items()},
        "steps": [],
    }
    if n < MIN_IMAGES:
        block["note"] = f"{n} validation images (< {MIN_IMAGES}): no choice, the defaults stay"
        return block
    current: Variant = ("none", False)
    for option, value in STEPS:
        cand: Variant = (value, current[1]) if option == "tta" else (current[0], bool(value))
        cmp = paired_compare(scores[_name(current)], scores[_name(cand)])
        lo, hi = cmp["mean_diff_ci"]
        taken = lo > 0
        block["steps"].append(
            {
                "option": f"{option} {str(value).lower()}",
                "against": _name(current),
                "gain": cmp["mean_diff"],
                "ci": [lo, hi],
                "better": cmp["b_better"],
                "worse": cmp["b_worse"],
                "taken": taken,
            }
        )
        if taken:
            current = cand
    block["tta"], block["keep_largest"] = current
    return block
