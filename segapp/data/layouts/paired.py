"""``paired``: ``ROOT/images/<name>.<ext>`` <-> ``ROOT/masks/<name>.<ext>``.

Kvasir-SEG, CVC-ClinicDB and segapp's synthetic data. Extensions may differ between image and
mask. Split folders ``ROOT/{train,val,test}/{images,masks}`` fix the split.
"""

from __future__ import annotations

from pathlib import Path

from segapp.data.errors import DataError
from segapp.data.layouts.base import (
    IMAGE_EXTENSIONS,
    MASK_EXTENSIONS,
    Discovery,
    Pair,
    check_root,
    files_by_stem,
    no_pairs_error,
    split_subfolders,
)

IMAGE_DIRS = ("images", "image", "imgs", "Original")
MASK_DIRS = ("masks", "mask", "labels", "Ground Truth", "GroundTruth")


def _dirs(root: Path) -> tuple[Path, Path] | None:
    img = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), None)
    mask = next((root / d for d in MASK_DIRS if (root / d).is_dir()), None)
    return (img, mask) if img is not None and mask is not None else None


def detect(root: Path) -> bool:
    """True when ``root`` (or its split subfolders) has an images and a masks folder."""
    return root.is_dir() and (_dirs(root) is not None or bool(split_subfolders(root, lambda d: _dirs(d) is not None)))


def _pair_one(root: Path, split: str | None, prefix: str) -> Discovery:
    dirs = _dirs(root)
    if dirs is None:
        raise DataError(
            f"{root}/images or {root}/masks is missing; the 'paired' layout expects {root}/images/<name>.<ext> "
            f"and {root}/masks/<name>.<ext> (or set data.layout to the layout of your folder)"
        )
    images = files_by_stem(dirs[0], IMAGE_EXTENSIONS)
    masks = files_by_stem(dirs[1], MASK_EXTENSIONS)
    pairs = [Pair(key=prefix + s, image=images[s], masks=(masks[s],), split=split) for s in sorted(images) if s in masks]
    return Discovery(
        layout="paired",
        pairs=pairs,
        images_without_mask=[images[s] for s in sorted(images) if s not in masks],
        masks_without_image=[masks[s] for s in sorted(masks) if s not in images],
        root=root,
    )


def find_paired(root: str | Path) -> Discovery:
    """Pair ``images/<stem>.*`` with ``masks/<stem>.*`` by file stem (also under split folders).

    Raises:
        DataError: when the folders are missing or hold no pair.
    """
    root = check_root(root, "a folder with images/ and masks/")
    subs = split_subfolders(root, lambda d: _dirs(d) is not None) if _dirs(root) is None else {}
    parts = [_pair_one(d, split, f"{d.name}/") for split, d in subs.items()] if subs else [_pair_one(root, None, "")]
    out = Discovery(layout="paired", pairs=[], root=root)
    for part in parts:
        out.pairs += part.pairs
        out.images_without_mask += part.images_without_mask
        out.masks_without_image += part.masks_without_image
    if not out.pairs:
        n_img = len(out.images_without_mask)
        raise no_pairs_error(root, "paired", n_img, len(out.masks_without_image), "expected the same file stem in images/ and masks/")
    return out
