"""Pair prediction masks with ground-truth masks, and list what could not be paired.

Predictions come from ``segapp-predict`` (``<pred>/predictions.csv`` with ``input``, ``output``
and ``status`` columns; masks named ``<input rel path>.mask.png``) or from any folder of mask
files named after the images. Ground truth is found with the same layouts the DataModule reads.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from segapp.io import IMAGE_EXTENSIONS, MASK_EXTENSIONS

PRED_SUFFIX = ".mask.png"


@dataclass(frozen=True)
class EvalCase:
    """One image to score: its prediction file, ground-truth file(s) (OR-ed) and source image."""

    key: str
    pred: Path
    gt: tuple[Path, ...]
    image: Path | None = None


@dataclass
class Pairing:
    """Paired cases, and every file left out with the reason (``side``, ``file``, ``reason``)."""

    cases: list[EvalCase]
    unpaired: list[dict[str, str]] = field(default_factory=list)


def discover_gt(root: str | Path, layout: str = "auto"):
    """Find ground-truth pairs with the DataModule's layouts (:func:`segapp.data.layouts.discover`).

    Imported when called, so that importing ``segapp.eval`` stays light.

    Raises:
        DataError: (a ``ValueError``) for an unknown layout or a folder without pairs.
    """
    from segapp.data.layouts import discover

    return discover(root, layout)  # type: ignore[arg-type]


def _key_candidates(rel: str) -> list[str]:
    """``a/b.jpg`` -> ``["a/b", "b"]``: the relative path without extension, then the stem."""
    p = PurePosixPath(rel)
    if p.suffix.lower() in MASK_EXTENSIONS:
        p = p.with_suffix("")
    return list(dict.fromkeys([p.as_posix(), p.name]))


def _from_csv(pred_dir: Path) -> tuple[list[tuple[str, Path]], list[dict[str, str]]]:
    """``(input rel path, mask path)`` for ok rows of ``predictions.csv``; failed rows listed."""
    found, failed = [], []
    with open(pred_dir / "predictions.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("status", "ok") != "ok" or not row.get("output"):
                failed.append({"side": "prediction", "file": row.get("input", ""), "reason": f"prediction failed: {row.get('reason', '')}"})
            else:
                found.append((row["input"], pred_dir / row["output"]))
    return found, failed


def _from_folder(pred_dir: Path) -> list[tuple[str, Path]]:
    """``(name the mask stands for, mask path)`` for the masks under ``pred_dir``.

    When any ``*.mask.png`` exists (segapp-predict naming) only those are masks, so its
    ``.prob.png`` and ``.overlay.png`` files are ignored; otherwise every image file is a mask.
    """
    files = sorted(p for p in pred_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    rels = [(p.relative_to(pred_dir).as_posix(), p) for p in files]
    named = [(r[: -len(PRED_SUFFIX)], p) for r, p in rels if r.endswith(PRED_SUFFIX)]
    return named or [(r, p) for r, p in rels if p.suffix.lower() in IMAGE_EXTENSIONS]


def list_predictions(pred_dir: str | Path) -> tuple[list[tuple[str, Path]], list[dict[str, str]]]:
    """Prediction masks under ``pred_dir``: from ``predictions.csv`` if present, else by file name.

    Raises:
        ValueError: If ``pred_dir`` is not a folder.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise ValueError(f"prediction folder {pred_dir} does not exist; expected the --output folder of segapp-predict")
    if (pred_dir / "predictions.csv").is_file():
        return _from_csv(pred_dir)
    return _from_folder(pred_dir), []


def pair_cases(preds: list[tuple[str, Path]], discovery) -> Pairing:
    """Match predictions to ground-truth pairs by relative path without extension, then by stem."""
    by_key = {p.key: p for p in discovery.pairs}
    by_stem: dict[str, list] = {}
    for p in discovery.pairs:
        by_stem.setdefault(PurePosixPath(p.key).name, []).append(p)
    cases: dict[str, EvalCase] = {}
    unpaired: list[dict[str, str]] = []
    for name, path in preds:
        cands = _key_candidates(name)
        pair = next((by_key[k] for k in cands if k in by_key), None)
        if pair is None and len(by_stem.get(cands[-1], [])) == 1:
            pair = by_stem[cands[-1]][0]
        if pair is None:
            unpaired.append({"side": "prediction", "file": str(path), "reason": "no ground truth with this name"})
        elif pair.key in cases:
            unpaired.append({"side": "prediction", "file": str(path), "reason": f"second prediction for {pair.key}"})
        else:
            cases[pair.key] = EvalCase(key=pair.key, pred=path, gt=tuple(pair.masks), image=pair.image)
    for p in discovery.pairs:
        if p.key not in cases:
            unpaired.append({"side": "ground_truth", "file": str(p.masks[0]), "reason": "no prediction for this image"})
    for f in getattr(discovery, "images_without_mask", []):
        unpaired.append({"side": "ground_truth", "file": str(f), "reason": "image without a mask"})
    for f in getattr(discovery, "masks_without_image", []):
        unpaired.append({"side": "ground_truth", "file": str(f), "reason": "mask without an image"})
    for f in getattr(discovery, "missing", []):
        unpaired.append({"side": "ground_truth", "file": str(f), "reason": "listed by the dataset but missing"})
    return Pairing(cases=[cases[k] for k in sorted(cases)], unpaired=unpaired)


def pair_folders(pred_dir: str | Path, gt_root: str | Path, layout: str = "auto") -> Pairing:
    """Pair ``segapp-predict`` output (or a mask folder) with a ground-truth dataset folder."""
    preds, failed = list_predictions(pred_dir)
    pairing = pair_cases(preds, discover_gt(gt_root, layout))
    pairing.unpaired = failed + pairing.unpaired
    return pairing
