"""Pair prediction masks with ground-truth masks, and list what could not be paired.

Predictions come from ``segapp-predict`` (``<pred>/predictions.csv`` with ``input``, ``output``
and ``status`` columns; masks named ``<input rel path>.mask.png``) or from any folder of mask
files named after the images. Ground truth is found with the same layouts the DataModule reads,
or is a folder of masks only (no images; what nnU-Net's evaluate-folder takes): each mask file is
one image, named by its path without extension and without a mask-name suffix (``_mask``,
``_mask_1``, ``_segmentation``: the same rules as training; several masks of one name are OR-ed).
Images for the gallery may then come from a separate folder (``images``).

Probability maps (``segapp-predict --save-probs``: ``<rel>.prob.png`` or ``<rel>.prob.npy`` beside
``<rel>.mask.png``) are attached to the paired cases by :func:`attach_probs`: the map beside each
prediction mask first, else by name with the same rules as the masks.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from segapp.io import IMAGE_EXTENSIONS, MASK_EXTENSIONS

PRED_SUFFIX = ".mask.png"
PROB_SUFFIXES = (".prob.npy", ".prob.png")  # the float32 map first when both exist


@dataclass(frozen=True)
class EvalCase:
    """One image to score: its prediction file, ground-truth file(s) (OR-ed), source image and
    probability map (``None``: no map; calibration and uncertainty leave the image out)."""

    key: str
    pred: Path | None  # None: no prediction, scored as an empty one (``--missing empty``)
    gt: tuple[Path, ...]
    image: Path | None = None
    probs: Path | None = None


@dataclass
class Pairing:
    """Paired cases, and every file left out with the reason (``side``, ``file``, ``reason``)."""

    cases: list[EvalCase]
    unpaired: list[dict[str, str]] = field(default_factory=list)


def discover_gt(root: str | Path, layout: str = "auto", images: str | Path | None = None, **opts):
    """Find ground-truth pairs with the DataModule's layouts (:func:`segapp.data.layouts.discover`).

    ``layout="masks"``, or ``auto`` when no dataset layout pairs anything, reads ``root`` as a
    folder of masks only (:func:`masks_only`). A folder that some layout *would* pair with other
    settings (``img/x.png`` + ``ann/x-label.png``) is refused with those settings: read as masks
    only, its photos would be scored as masks. ``opts`` (``mask_suffix``, ``mask_dir``,
    ``csv_name``) go to the layout. Imported when called, so that importing ``segapp.eval`` stays light.

    Raises:
        DataError: (a ``ValueError``) for an unknown layout, a folder without pairs or masks, or
            a dataset folder that needs other layout settings.
    """
    from segapp.data.errors import DataError, DuplicateFilesError, LayoutError
    from segapp.data.layouts import discover

    if layout == "masks":
        return masks_only(root, images)
    try:
        disc = discover(root, layout, **opts)  # type: ignore[arg-type]
    except DuplicateFilesError:
        raise  # a dataset whose files clash: read as masks only, its images would be scored as masks
    except LayoutError as e:
        raise DataError(_layout_fix(root, layout, e)) from None
    except DataError:
        if layout != "auto" or not Path(root).is_dir():
            raise
        disc = masks_only(root, images)
        if not disc.pairs:
            raise
    return disc


def _layout_fix(root: str | Path, layout: str, e) -> str:
    """The one-line refusal of a ground-truth folder that pairs only with other layout settings."""
    from segapp.data.layouts.suggest import cli_flags

    flags = cli_flags(e.layout, e.options)
    return (
        f"--gt {root}: expected a dataset that --layout {layout} pairs, or a folder of masks only; got a folder "
        f"that layout {e.layout!r} pairs ({e.n_pairs} image(s)) only with other settings, so it was not read as "
        f"masks only (its images would be scored as masks); fix: segapp-eval ... {flags} "
        f"(or --layout masks if every file there is a mask)"
    )


def _mask_files(folder: Path) -> list[tuple[str, Path]]:
    """``(relative path without extension, file)`` for the mask files under ``folder``."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MASK_EXTENSIONS)
    return [
        (p.relative_to(folder).with_suffix("").as_posix(), p)
        for p in files
        if not any(s.startswith(".") for s in p.relative_to(folder).parts)
    ]


def masks_only(root: str | Path, images: str | Path | None = None):
    """A ground-truth folder of masks without images, as a ``Discovery`` (layout ``masks``).

    Args:
        root: Folder of mask files (searched recursively).
        images: Optional folder of the input images, matched by name (for the gallery).

    Raises:
        DataError: when ``root`` is not a folder or ``images`` is given but missing.
    """
    from segapp.data.errors import DataError
    from segapp.data.layouts import Discovery, Pair
    from segapp.data.layouts.base import mask_key, refuse_mixed_naming

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"ground-truth folder {root} does not exist; expected a dataset folder or a folder of masks")
    groups: dict[str, list[Path]] = {}
    named = []
    for rel, path in _mask_files(root):
        head, _, stem = rel.rpartition("/")
        key = mask_key(stem) or stem
        full = f"{head}/{key}" if head else key
        groups.setdefault(full, []).append(path)
        named.append((full, rel, path))
    refuse_mixed_naming(named, root)  # a.png + a.jpg, or a.png + a_mask.png: OR-ed, a stale mask would count
    found = _image_index(Path(images)) if images is not None else {}
    pairs = [
        Pair(key=k, image=found.get(k) or found.get(PurePosixPath(k).name), masks=tuple(sorted(v)))
        for k, v in sorted(groups.items())
    ]  # type: ignore[arg-type]
    return Discovery(layout="masks", pairs=pairs, root=root)


def _image_index(folder: Path) -> dict[str, Path]:
    """Images under ``folder`` by relative path without extension and by stem (first one wins)."""
    from segapp.data.errors import DataError

    if not folder.is_dir():
        raise DataError(f"--images {folder} is not a folder; expected the folder of the input images")
    out: dict[str, Path] = {}
    for rel, path in _mask_files(folder):
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            out.setdefault(rel, path)
            out.setdefault(PurePosixPath(rel).name, path)
    return out


def _key_candidates(rel: str) -> list[str]:
    """``a/b.jpg`` -> ``["a/b", "b"]``: the relative path without extension, then the stem
    (with a mask-name suffix removed too: ``a/b_mask.png`` -> ``a/b_mask``, ``a/b``, ``b``, ``b_mask``)."""
    from segapp.data.layouts.base import mask_key

    p = PurePosixPath(rel)
    if p.suffix.lower() in MASK_EXTENSIONS:
        p = p.with_suffix("")
    bare = mask_key(p.name)  # a prediction named like a mask: a_mask.png -> a
    extra = [p.with_name(bare).as_posix(), bare] if bare else []
    return list(dict.fromkeys([p.as_posix(), *extra, p.name]))


def _from_csv(pred_dir: Path) -> tuple[list[tuple[str, Path]], list[dict[str, str]]]:
    """``(input rel path, mask path)`` for ok rows of ``predictions.csv``; failed rows, and ok rows
    whose mask is no longer on disk, listed (their ground truth then has no prediction)."""
    found, failed = [], []
    with open(pred_dir / "predictions.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("status", "ok") != "ok" or not row.get("output"):
                failed.append(
                    {
                        "side": "prediction",
                        "file": row.get("input", ""),
                        "reason": f"prediction failed: {row.get('reason', '')}",
                    }
                )
            elif not (pred_dir / row["output"]).is_file():  # deleted since: the image has no prediction
                failed.append(
                    {"side": "prediction", "file": str(pred_dir / row["output"]), "reason": "listed but not on disk"}
                )
            else:
                found.append((_frame_name(row), pred_dir / row["output"]))
    return found, failed


def _frame_name(row: dict[str, str]) -> str:
    """The name a row's mask stands for: its input, or ``<input>.f003`` for frame 3 of a multi-frame
    input (every frame's row has the same input; as one name the frames would all claim it)."""
    frame = (row.get("frame") or "").strip()
    if frame.isdigit() and row["output"].endswith(f".f{int(frame):03d}{PRED_SUFFIX}"):
        return f"{row['input']}.f{int(frame):03d}"
    return row["input"]


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


class _KeyIndex:
    """Find the item whose key a file name stands for: by relative path without extension, then by
    a stem that only one key has (the pairing rule of :func:`pair_cases`)."""

    def __init__(self, items: dict[str, object]) -> None:
        self.by_key = items
        self.by_stem: dict[str, list] = {}
        for k, v in items.items():
            self.by_stem.setdefault(PurePosixPath(k).name, []).append(v)

    def find(self, name: str):
        cands = _key_candidates(name)
        hit = next((self.by_key[k] for k in cands if k in self.by_key), None)
        if hit is None:
            hit = next((self.by_stem[c][0] for c in cands if "/" not in c and len(self.by_stem.get(c, [])) == 1), None)
        return hit


NO_PREDICTION = "no prediction for this image"
NO_GROUND_TRUTH = "no ground truth with this name"
MASK_WITHOUT_IMAGE = "mask without an image"


def pair_cases(preds: list[tuple[str, Path]], discovery, missing: str = "fail") -> Pairing:
    """Match predictions to ground-truth pairs by relative path without extension, then by stem.

    A ground-truth image without a prediction is listed (``missing="fail"``), or becomes a case
    with ``pred=None``, scored as an empty prediction (``missing="empty"``): a model that fails on
    its hardest images must not score higher for it.

    Raises:
        DuplicateFilesError: two predictions stand for one ground-truth image (the first one used to
            be scored and the other listed as a harmless extra).
    """
    index = _KeyIndex({p.key: p for p in discovery.pairs})
    cases: dict[str, EvalCase] = {}
    unpaired: list[dict[str, str]] = []
    clashes: list[tuple[Path, Path]] = []
    for name, path in preds:
        pair = index.find(name)
        if pair is None:
            unpaired.append({"side": "prediction", "file": str(path), "reason": NO_GROUND_TRUTH})
        elif pair.key in cases:
            clashes.append((cases[pair.key].pred, path))
        else:
            cases[pair.key] = EvalCase(key=pair.key, pred=path, gt=tuple(pair.masks), image=pair.image)
    if clashes:
        raise _prediction_clash(clashes)
    for p in discovery.pairs:
        if p.key in cases:
            continue
        if missing == "empty":
            cases[p.key] = EvalCase(key=p.key, pred=None, gt=tuple(p.masks), image=p.image)
        else:
            unpaired.append({"side": "ground_truth", "file": str(p.masks[0]), "reason": NO_PREDICTION})
    for f in getattr(discovery, "images_without_mask", []):
        unpaired.append({"side": "ground_truth", "file": str(f), "reason": "image without a mask"})
    for f in getattr(discovery, "masks_without_image", []):
        unpaired.append({"side": "ground_truth", "file": str(f), "reason": MASK_WITHOUT_IMAGE})
    for f in getattr(discovery, "missing", []):
        unpaired.append({"side": "ground_truth", "file": str(f), "reason": "listed by the dataset but missing"})
    return Pairing(cases=[cases[k] for k in sorted(cases)], unpaired=unpaired)


def _prediction_clash(clashes: list[tuple[Path, Path]]):
    """Two predictions for one ground-truth image (``x.jpg`` and ``x.png`` in the folder or the CSV):
    scoring the one that sorts first may score a stale file, so neither is chosen."""
    from segapp.data.layouts.base import clash_error

    base = Path(os.path.commonpath([str(p) for c in clashes for p in c]))
    return clash_error(
        clashes,
        "predictions for one ground-truth image",
        base if base.is_dir() else base.parent,
        "keep one prediction per image (delete the stale one), or evaluate the folders apart",
    )


def pair_folders(
    pred_dir: str | Path,
    gt_root: str | Path,
    layout: str = "auto",
    images: str | Path | None = None,
    missing: str = "fail",
    **opts,
) -> Pairing:
    """Pair ``segapp-predict`` output (or a mask folder) with a ground-truth dataset or mask folder.

    Args:
        pred_dir: Predictions: a ``segapp-predict`` output folder or a folder of masks.
        gt_root: Ground truth: a dataset folder (any layout) or a folder of masks only.
        layout: Ground-truth layout (``auto``, a ``data.layout`` name, or ``masks``).
        images: Folder of the input images when ``gt_root`` holds masks only (for the gallery).
        missing: ``fail`` (list ground truth without a prediction) or ``empty`` (score it as an
            empty prediction), see :func:`pair_cases`.
        **opts: Layout settings (``mask_suffix``, ``mask_dir``), as ``segapp-data check`` takes them.
    """
    preds, failed = list_predictions(pred_dir)
    pairing = pair_cases(preds, discover_gt(gt_root, layout, images, **opts), missing)
    pairing.unpaired = failed + pairing.unpaired
    return pairing


def prob_maps(probs_dir: str | Path) -> dict[str, Path]:
    """Probability maps under ``probs_dir`` by the name they stand for (``a/b.jpg.prob.png`` -> ``a/b.jpg``).

    Raises:
        ValueError: when ``probs_dir`` is not a folder.
    """
    root = Path(probs_dir)
    if not root.is_dir():
        raise ValueError(f"--probs {root} is not a folder; expected the --output folder of segapp-predict --save-probs")
    found: dict[str, Path] = {}
    for suffix in PROB_SUFFIXES:
        for p in sorted(root.rglob(f"*{suffix}")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and not any(s.startswith(".") for s in rel.split("/")):
                found.setdefault(rel[: -len(suffix)], p)
    return found


def _beside(pred: Path | None, pred_dir: Path | None) -> str | None:
    """The name a ``segapp-predict`` mask stands for (``a/b.jpg.mask.png`` -> ``a/b.jpg``), or ``None``."""
    if pred is None or pred_dir is None or not pred.name.endswith(PRED_SUFFIX):
        return None
    try:
        rel = pred.relative_to(pred_dir).as_posix()
    except ValueError:
        return None
    return rel[: -len(PRED_SUFFIX)]


def attach_probs(
    cases: list[EvalCase], probs_dir: str | Path, pred_dir: str | Path | None = None
) -> tuple[list[EvalCase], list[dict[str, str]]]:
    """Give each case its probability map from ``probs_dir``, paired the way the masks are.

    A case takes the map named like its prediction mask (``<rel>.mask.png`` under ``pred_dir`` ->
    ``<rel>.prob.npy`` or ``<rel>.prob.png`` under ``probs_dir``, so multi-frame DICOM frames keep
    their own map), else the map whose name matches the case's key by the mask pairing rules.

    Returns:
        ``(cases with probs set where found, missing)``: ``missing`` lists the cases without a map
        (``image``, ``reason``); they are still scored, but left out of calibration and uncertainty.

    Raises:
        ValueError: when ``probs_dir`` is not a folder, holds no map, or no case has a map.
    """
    maps = prob_maps(probs_dir)
    fix = "fix: run segapp-predict with --save-probs and pass its --output folder as --probs"
    if not maps:
        raise ValueError(
            f"no probability maps under --probs {probs_dir}: expected <name>.prob.png (16-bit) or "
            f"<name>.prob.npy (float32) files; {fix}"
        )
    index = _KeyIndex({c.key: c.key for c in cases})
    by_case: dict[str, Path] = {}
    for name, path in maps.items():
        key = index.find(name)
        if key is not None:
            by_case.setdefault(key, path)
    out, missing = [], []
    root = Path(pred_dir) if pred_dir is not None else None
    for c in cases:
        name = _beside(c.pred, root)
        probs = maps.get(name) if name is not None else None
        probs = probs or by_case.get(c.key)
        out.append(replace(c, probs=probs))
        if probs is None:
            missing.append({"image": c.key, "reason": f"no probability map for {c.key} under {probs_dir}"})
    if len(missing) == len(cases):
        example = next(iter(maps.values()))
        raise ValueError(
            f"none of the {len(cases)} paired images has a probability map under --probs {probs_dir} "
            f"({len(maps)} maps there, e.g. {example}); expected <rel>.prob.png or <rel>.prob.npy named like "
            f"the masks <rel>.mask.png; {fix}"
        )
    return out, missing
