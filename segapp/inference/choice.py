"""The model's own inference options, chosen on its validation split after training.

nnU-Net mirrors at inference and decides its post-processing from cross-validation; segapp does
the same from the run's validation split, once, at the end of ``segapp fit``
(:class:`segapp.lit.choose_inference.InferenceChoice`), and stores the choice in the checkpoint
(``ckpt["segapp"]["inference"]``, carried into ONNX exports). ``segapp-predict`` and
:class:`~segapp.inference.predictor.Predictor` use it unless told otherwise.

The rule, the same for every dataset (nothing in it is a tuned number):

- test-time augmentation ``none`` -> ``flip`` -> ``flip4``: each step is taken only when its
  per-image Dice gain over the current choice has a paired 95 % bootstrap CI above zero. Each
  step doubles the forward time of every prediction, so it has to pay for itself on images the
  weights were not trained on (the same split chose the checkpoint and the threshold, so the
  gain on new images tends to be smaller: docs/benchmarks.md);
- ``keep_largest`` on top of the chosen TTA, by the same test: it deletes every other lesion, so
  it is kept only where the validation split shows that the extra components are false alarms.

Scores are per-image Dice at the ground truth's resolution (at most :data:`SCORE_MAX_PIXELS`:
larger masks are scored on a nearest-neighbour copy of that size) through the predictor's own
path (its threshold, bilinear upsampling, mean of flipped probabilities, its clean-up). The
choice holds for ``mode: resize``, the mode it was scored in; a tile-mode predictor ignores it.
Fewer than :data:`MIN_IMAGES` validation images: no choice (the defaults stay: no TTA, every
component).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np

CHOICE_KEY = "inference"
MIN_IMAGES = 20
MAX_IMAGES = 200  # validation images scored at most (evenly spaced): bounds the time on large splits
SCORE_MAX_PIXELS = 1_000_000  # larger ground truths are scored at this many pixels (Dice barely changes)
FLIPS = {"none": 1, "flip": 2, "flip4": 4}  # the first n passes of TTA_FLIPS["flip4"]
STEPS: tuple[tuple[str, Any], ...] = (("tta", "flip"), ("tta", "flip4"), ("keep_largest", True))
RULE = (
    "per-image Dice at original resolution on the validation split; none -> flip -> flip4, then "
    "keep_largest, each step taken only when its paired 95 % bootstrap CI of the gain is above zero"
)

Variant = tuple[str, bool]  # (tta, keep_largest)


def model_choice(engine: Any, mode: str = "resize") -> dict[str, Any]:
    """``{"tta": ..., "keep_largest": ...}`` stored with a single model, for the mode it was scored
    in; ``{}`` for none, an ensemble or another mode."""
    block = (getattr(engine, "meta", None) or {}).get(CHOICE_KEY)
    if not isinstance(block, dict) or int(getattr(engine, "members", 1)) != 1:
        return {}
    if block.get("mode", "resize") != mode:
        return {}
    chosen = {k: block[k] for k in ("tta", "keep_largest") if k in block}
    if chosen.get("tta", "none") not in FLIPS or not isinstance(chosen.get("keep_largest", False), bool):
        from segapp.inference.checkpoint import CheckpointError

        raise CheckpointError(
            f"the model's stored inference choice is not valid: expected tta one of {', '.join(FLIPS)} and "
            f"keep_largest true/false, got tta={chosen.get('tta')!r}, keep_largest={chosen.get('keep_largest')!r} "
            "(an edited or damaged checkpoint); fix: pass --tta and --keep-largest/--no-keep-largest, or train again"
        )
    return chosen


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


def score_size(shape: tuple[int, ...]) -> tuple[int, int]:
    """The size a ground truth is scored at: its own, scaled down to :data:`SCORE_MAX_PIXELS`."""
    h, w = int(shape[0]), int(shape[1])
    scale = min(1.0, (SCORE_MAX_PIXELS / (h * w)) ** 0.5)
    return (h, w) if scale >= 1 else (max(1, round(h * scale)), max(1, round(w * scale)))


def variant_scores(
    predictor: Any, cases: Iterable[tuple[str, np.ndarray, np.ndarray]], batch: int = 1
) -> dict[str, dict[str, float]]:
    """Per variant name (``none``, ``flip+largest``, ...): per-image Dice ``{key: dice}``.

    ``cases`` yields ``(key, raw image H x W x C, bool ground truth)``; the ground truth may have
    another size than the image (training resizes each on its own). Each image is run once
    through all four flips (``batch`` images per forward pass: 1 on a CPU, where batches of 8
    were slower, 11.4 vs 8.0 s for 48 Kvasir images at 256 px); the variants average the first
    1, 2 or 4 of them.
    """
    plain = replace(predictor, tta="flip4", mode="resize", keep_largest=False, min_size=0, batch_size=batch)
    largest = replace(plain, keep_largest=True)
    out: dict[str, dict[str, float]] = {_name((t, k)): {} for t in FLIPS for k in (False, True)}
    chunk: list[tuple[str, np.ndarray, np.ndarray]] = []
    for case in cases:
        chunk.append(case)
        if len(chunk) == batch:
            _score_chunk((plain, largest), chunk, out)
            chunk = []
    if chunk:
        _score_chunk((plain, largest), chunk, out)
    return out


def _score_chunk(
    predictors: tuple[Any, Any], chunk: list[tuple[str, np.ndarray, np.ndarray]], out: dict[str, dict[str, float]]
) -> None:
    from segapp.eval.metrics import overlap_scores
    from segapp.inference.postprocess import upsample
    from segapp.io.preprocess import resize_mask

    plain = predictors[0]
    variants = plain.forward_prepared([plain.prepare(image) for _, image, _ in chunk])
    for (key, _, gt), (v, _) in zip(chunk, variants, strict=True):
        size = score_size(gt.shape)
        truth = gt if size == gt.shape[:2] else resize_mask(gt, size).astype(bool)
        raw = v[:, : v.shape[1] // 2]
        for tta, n in FLIPS.items():
            probs = upsample(raw[:n].mean(axis=(0, 1)), size)
            for p in predictors:
                out[_name((tta, bool(p.keep_largest)))][key] = overlap_scores(p.to_mask(probs)[0], truth)["dice"]


def too_few(n: int) -> dict[str, Any]:
    """The block kept when the validation split is too small to choose anything."""
    return {
        "tta": "none",
        "keep_largest": False,
        "mode": "resize",
        "rule": RULE,
        "n_images": n,
        "steps": [],
        "note": f"{n} validation images (< {MIN_IMAGES}): no choice, the defaults stay (no TTA, every component)",
    }


def decide(scores: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The choice block from :func:`variant_scores` (see the module docstring for the rule)."""
    from segapp.eval.stats import paired_compare

    n = len(scores["none"])
    if n < MIN_IMAGES:
        return too_few(n)
    block: dict[str, Any] = {
        "tta": "none",
        "keep_largest": False,
        "mode": "resize",
        "rule": RULE,
        "n_images": n,
        "dice": {name: float(np.mean(list(s.values()))) for name, s in scores.items()},
        "steps": [],
    }
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
