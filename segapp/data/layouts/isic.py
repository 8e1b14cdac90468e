"""``isic2018``: the ISIC 2018 Task 1 release, folders as published.

``ISIC2018_Task1-2_Training_Input/ISIC_0000000.jpg`` <->
``ISIC2018_Task1_Training_GroundTruth/ISIC_0000000_segmentation.png``; the ``Validation`` and
``Test`` folders of the same release become the ``val`` and ``test`` splits.
"""

from __future__ import annotations

import re
from pathlib import Path

from segapp.data.layouts.base import (
    IMAGE_EXTENSIONS,
    MASK_EXTENSIONS,
    Discovery,
    Pair,
    check_root,
    files_by_stem,
    no_pairs_error,
)

_INPUT = re.compile(r"^ISIC2018_Task1(?:-2)?_(Training|Validation|Test)_Input$", re.IGNORECASE)
_SPLIT = {"training": "train", "validation": "val", "test": "test"}
MASK_SUFFIX = "_segmentation"


def _inputs(root: Path) -> dict[str, Path]:
    out = {}
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        m = _INPUT.match(d.name)
        if m and d.is_dir():
            out[m.group(1).capitalize()] = d
    return out


def detect(root: Path) -> bool:
    """True when ``root`` holds at least one ``ISIC2018_Task1*_<Split>_Input`` folder."""
    return bool(_inputs(root))


def _truth_dir(root: Path, part: str) -> Path | None:
    for name in (f"ISIC2018_Task1_{part}_GroundTruth", f"ISIC2018_Task1-2_{part}_GroundTruth"):
        if (root / name).is_dir():
            return root / name
    return None


def find_isic2018(root: str | Path) -> Discovery:
    """Pair the ISIC 2018 Task 1 input and ground-truth folders found in ``root``.

    Raises:
        DataError: when no input folder or no pair is found.
    """
    root = check_root(root, "the ISIC 2018 folder with ISIC2018_Task1-2_Training_Input/")
    out = Discovery(layout="isic2018", pairs=[], root=root)
    n_img = n_mask = 0
    for part, img_dir in _inputs(root).items():
        images = files_by_stem(img_dir, IMAGE_EXTENSIONS)
        truth = _truth_dir(root, part)
        masks = {}
        if truth is not None:
            masks = {
                s[: -len(MASK_SUFFIX)]: p
                for s, p in files_by_stem(truth, MASK_EXTENSIONS).items()
                if s.endswith(MASK_SUFFIX)
            }
        n_img, n_mask = n_img + len(images), n_mask + len(masks)
        split = _SPLIT[part.lower()]
        out.pairs += [
            Pair(key=s, image=images[s], masks=(masks[s],), split=split) for s in sorted(images) if s in masks
        ]
        out.images_without_mask += [images[s] for s in sorted(images) if s not in masks]
        out.masks_without_image += [masks[s] for s in sorted(masks) if s not in images]
    if not out.pairs:
        raise no_pairs_error(
            root,
            "isic2018",
            n_img,
            n_mask,
            "expected ISIC2018_Task1-2_<Split>_Input/ISIC_<id>.jpg and "
            "ISIC2018_Task1_<Split>_GroundTruth/ISIC_<id>_segmentation.png",
        )
    return out
