"""``suffix``: the mask carries the image's name plus a suffix, next to it or in its own folder.

BUSI: ``benign/benign (12).png`` <-> ``benign/benign (12)_mask.png``; several masks per image
(``_mask_1``, ``_mask_2``) are OR-ed together. With ``mask_dir``, masks live in that folder
(matched by name) and images everywhere else under the root. Two images (or two masks) with one
key are an error: keeping one would pair the wrong file or drop the other silently.
"""

from __future__ import annotations

import re
from pathlib import Path

from segapp.data.layouts.base import (
    IMAGE_EXTENSIONS,
    MASK_EXTENSIONS,
    SAME_STEM_FIX,
    Discovery,
    check_root,
    is_visible_file,
    mask_name_re,
    match_by_key,
    no_pairs_error,
    unique_by_key,
)

_BY_NAME_FIX = (
    "data.mask_dir matches masks by file name alone, so every image needs its own name: rename them, set "
    "data.root to one folder of images (with its masks), or list the pairs in a CSV manifest (data.layout csv)"
)


def _mask_re(suffix: str) -> re.Pattern:
    return mask_name_re((suffix,))


def _walk(root: Path, exts: tuple[str, ...]) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if is_visible_file(p, exts) and not any(s.startswith(".") for s in p.relative_to(root).parts)
    )


def detect(root: Path, mask_suffix: str = "_mask") -> bool:
    """True when some file under ``root`` ends in ``mask_suffix`` (optionally numbered)."""
    if not root.is_dir():
        return False
    rx = _mask_re(mask_suffix)
    return any(rx.match(p.stem) for p in _walk(root, MASK_EXTENSIONS))


def _key(path: Path, base: Path, stem: str, by_name: bool) -> str:
    if by_name:
        return stem
    rel = path.parent.relative_to(base).as_posix()
    return stem if rel == "." else f"{rel}/{stem}"


def _masks(mroot: Path, rx: re.Pattern, by_name: bool) -> dict[str, list[Path]]:
    """Mask files by the image key they belong to; two masks with one full key (``a_mask.jpg``
    beside ``a_mask.png``, or one name in two folders of ``mask_dir``) are an error, since
    OR-ing them would mix a stale or foreign mask into the ground truth."""
    found = [(p, m.group(1)) for p in _walk(mroot, MASK_EXTENSIONS) if (m := rx.match(p.stem))]
    unique_by_key(
        ((_key(p, mroot, p.stem, by_name), p) for p, _ in found),
        "masks with one name" + (" (data.mask_dir matches by file name)" if by_name else ""),
        mroot,
        _BY_NAME_FIX if by_name else SAME_STEM_FIX,
    )
    masks: dict[str, list[Path]] = {}
    for p, stem in found:
        masks.setdefault(_key(p, mroot, stem, by_name), []).append(p)
    return masks


def find_suffix(root: str | Path, mask_suffix: str = "_mask", mask_dir: str | None = None) -> Discovery:
    """Pair ``<name>.<ext>`` with ``<name><mask_suffix>[_N].<ext>``.

    Args:
        root: Dataset folder, searched recursively.
        mask_suffix: Suffix of the mask file stem.
        mask_dir: Folder (relative to ``root``) holding the masks; images are matched by name.

    Raises:
        DataError: when no pair is found.
        DuplicateFilesError: when two images (or two masks) have one key; with ``mask_dir`` the
            key is the file name, so ``siteA/case_1.png`` and ``siteB/case_1.png`` clash.
    """
    root = check_root(root, f"a folder of images with <name>{mask_suffix}.<ext> masks")
    rx = _mask_re(mask_suffix)
    mroot = root / mask_dir if mask_dir else root
    by_name = mask_dir is not None
    masks = _masks(mroot, rx, by_name)
    images = unique_by_key(
        (
            (_key(p, root, p.stem, by_name), p)
            for p in _walk(root, IMAGE_EXTENSIONS)
            if not (rx.match(p.stem) or (by_name and mroot in p.parents))
        ),
        "images with one pairing key" + (" (file name)" if by_name else ""),
        root,
        _BY_NAME_FIX if by_name else SAME_STEM_FIX,
    )
    found = match_by_key("suffix", root, images, masks)
    if not found.pairs:
        raise no_pairs_error(
            root,
            "suffix",
            len(images),
            sum(map(len, masks.values())),
            f"expected <name>.png next to <name>{mask_suffix}.png (set data.mask_suffix if yours differs)",
        )
    return found
