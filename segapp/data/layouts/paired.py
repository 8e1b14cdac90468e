"""``paired``: ``ROOT/images/<name>.<ext>`` <-> ``ROOT/masks/<name>.<ext>``.

Kvasir-SEG, CVC-ClinicDB and segapp's synthetic data. Extensions may differ between image and
mask. Split folders ``ROOT/{train,val,test}/{images,masks}`` fix the split. Mask names may carry
a suffix (``masks/<name>_mask.png``, ``_mask_1.png``, ``<name>_segmentation.png``, or
``data.mask_suffix``), as in common BUSI and ISIC re-packagings; several masks of one image are OR-ed.
"""

from __future__ import annotations

from pathlib import Path

from segapp.data.errors import DataError
from segapp.data.layouts.base import (
    IMAGE_EXTENSIONS,
    MASK_EXTENSIONS,
    MASK_NAME_SUFFIXES,
    Discovery,
    check_root,
    files_by_stem,
    mask_key,
    match_by_key,
    no_pairs_error,
    refuse_mixed_naming,
    split_subfolders,
)

IMAGE_DIRS = ("images", "image", "imgs", "Original")
MASK_DIRS = ("masks", "mask", "labels", "Ground Truth", "GroundTruth")


def _dirs(root: Path) -> tuple[Path, Path] | None:
    img = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), None)
    mask = next((root / d for d in MASK_DIRS if (root / d).is_dir()), None)
    return (img, mask) if img is not None and mask is not None else None


def detect(root: Path, mask_suffix: str = "_mask") -> bool:
    """True when ``root`` (or its split subfolders) has an images and a masks folder (``mask_suffix``
    is taken for a uniform signature: the folders alone decide)."""
    return root.is_dir() and (_dirs(root) is not None or bool(split_subfolders(root, lambda d: _dirs(d) is not None)))


def _masks_by_key(folder: Path, images: dict[str, Path], suffixes: tuple[str, ...]) -> dict[str, list[Path]]:
    """Mask files of ``folder`` by the image stem they belong to (same stem, else stem minus a suffix);
    masks of one image named two ways are refused (:func:`refuse_mixed_naming`)."""
    out: dict[str, list[Path]] = {}
    named = []
    for stem, path in files_by_stem(folder, MASK_EXTENSIONS).items():
        key = stem if stem in images else mask_key(stem, suffixes)
        key = key if key in images else stem
        out.setdefault(key, []).append(path)
        named.append((key, stem, path))
    refuse_mixed_naming(named, folder)
    return out


def _pair_one(root: Path, split: str | None, prefix: str, suffixes: tuple[str, ...]) -> Discovery:
    dirs = _dirs(root)
    if dirs is None:
        raise DataError(
            f"{root}/images or {root}/masks is missing; the 'paired' layout expects {root}/images/<name>.<ext> "
            f"and {root}/masks/<name>.<ext> (or set data.layout to the layout of your folder)"
        )
    images = files_by_stem(dirs[0], IMAGE_EXTENSIONS)
    masks = _masks_by_key(dirs[1], images, suffixes)
    return match_by_key("paired", root, images, masks, prefix, split)


def find_paired(root: str | Path, mask_suffix: str = "_mask") -> Discovery:
    """Pair ``images/<stem>.*`` with ``masks/<stem>[<suffix>[_N]].*`` (also under split folders).

    Args:
        root: Dataset folder.
        mask_suffix: A mask-name suffix tried besides ``_mask`` and ``_segmentation``.

    Raises:
        DataError: when the folders are missing or hold no pair.
    """
    root = check_root(root, "a folder with images/ and masks/")
    subs = split_subfolders(root, lambda d: _dirs(d) is not None) if _dirs(root) is None else {}
    suffixes = (mask_suffix, *MASK_NAME_SUFFIXES)
    parts = (
        [_pair_one(d, split, f"{d.name}/", suffixes) for split, d in subs.items()]
        if subs
        else [_pair_one(root, None, "", suffixes)]
    )
    out = Discovery(layout="paired", pairs=[], root=root)
    for part in parts:
        out.pairs += part.pairs
        out.images_without_mask += part.images_without_mask
        out.masks_without_image += part.masks_without_image
    if not out.pairs:
        n_img = len(out.images_without_mask)
        raise no_pairs_error(
            root,
            "paired",
            n_img,
            len(out.masks_without_image),
            "expected the same file stem in images/ and masks/, or masks/<name>_mask.png",
        )
    return out
