"""``suffix``: the mask carries the image's name plus a suffix, next to it or in its own folder.

BUSI: ``benign/benign (12).png`` <-> ``benign/benign (12)_mask.png``; several masks per image
(``_mask_1``, ``_mask_2``) are OR-ed together. With ``mask_dir``, masks live in that folder
(matched by name) and images everywhere else under the root.
"""

from __future__ import annotations

import re
from pathlib import Path

from segapp.data.layouts.base import (
    IMAGE_EXTENSIONS,
    MASK_EXTENSIONS,
    Discovery,
    check_root,
    is_visible_file,
    mask_name_re,
    match_by_key,
    no_pairs_error,
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


def find_suffix(root: str | Path, mask_suffix: str = "_mask", mask_dir: str | None = None) -> Discovery:
    """Pair ``<name>.<ext>`` with ``<name><mask_suffix>[_N].<ext>``.

    Args:
        root: Dataset folder, searched recursively.
        mask_suffix: Suffix of the mask file stem.
        mask_dir: Folder (relative to ``root``) holding the masks; images are matched by name.

    Raises:
        DataError: when no pair is found.
    """
    root = check_root(root, f"a folder of images with <name>{mask_suffix}.<ext> masks")
    rx = _mask_re(mask_suffix)
    mroot = root / mask_dir if mask_dir else root
    by_name = mask_dir is not None
    masks: dict[str, list[Path]] = {}
    for p in _walk(mroot, MASK_EXTENSIONS):
        m = rx.match(p.stem)
        if m:
            masks.setdefault(_key(p, mroot, m.group(1), by_name), []).append(p)
    images: dict[str, Path] = {}
    for p in _walk(root, IMAGE_EXTENSIONS):
        if rx.match(p.stem) or (by_name and mroot in p.parents):
            continue
        images.setdefault(_key(p, root, p.stem, by_name), p)
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
