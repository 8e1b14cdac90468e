"""What every layout returns (:class:`Pair`, :class:`Discovery`) and the helpers they share."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from segapp.data.errors import DataError, DuplicateFilesError
from segapp.io import IMAGE_EXTENSIONS, MASK_EXTENSIONS

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "trn": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
    "tst": "test",
}


MASK_NAME_SUFFIXES = ("_mask", "_segmentation")
"""Mask-name suffixes recognised everywhere (layouts, ``segapp-eval --gt``): ``<name>_mask.png``,
``<name>_mask_1.png`` (several masks, OR-ed), ``<name>_segmentation.png`` (ISIC)."""


def mask_name_re(suffixes: Sequence[str] = MASK_NAME_SUFFIXES) -> re.Pattern:
    """Regex whose group 1 is the image stem of a mask stem ``<name><suffix>[_N]``."""
    alts = "|".join(re.escape(s) for s in dict.fromkeys(suffixes) if s)
    return re.compile(rf"^(.*)(?:{alts})(?:[_ -]?\d+)?$")


def mask_key(stem: str, suffixes: Sequence[str] = MASK_NAME_SUFFIXES) -> str | None:
    """The image stem a mask stem stands for (``a_mask_1`` -> ``a``), or ``None`` without a suffix."""
    m = mask_name_re(suffixes).match(stem)
    return m.group(1) if m and m.group(1) else None


@dataclass(frozen=True)
class Pair:
    """One training example: an image and the mask file(s) OR-ed into its ground truth.

    Attributes:
        key: Unique name of the example (file stem, or relative path without extension).
        image: Image file.
        masks: One or more mask files; several are OR-ed together.
        split: ``train``/``val``/``test`` when the layout fixes it (split folders, CSV column).
        fold: Fold index when a CSV ``fold`` column fixes it.
        group: Group id (patient, lesion) from a CSV ``group`` column.
    """

    key: str
    image: Path
    masks: tuple[Path, ...]
    split: str | None = None
    fold: int | None = None
    group: str | None = None


@dataclass
class Discovery:
    """What a layout found: pairs, and the files it could not pair.

    Attributes:
        layout: Name of the layout that produced it.
        pairs: Image/mask pairs, sorted by key.
        images_without_mask: Image files with no mask.
        masks_without_image: Mask files with no image.
        missing: Files a manifest names that do not exist.
        root: The dataset folder (or the manifest's folder).
    """

    layout: str
    pairs: list[Pair]
    images_without_mask: list[Path] = field(default_factory=list)
    masks_without_image: list[Path] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)
    root: Path | None = None

    def files(self) -> list[Path]:
        """Every image and mask file of the pairs (sorted, unique)."""
        out = {p.image for p in self.pairs}
        for p in self.pairs:
            out.update(p.masks)
        return sorted(out)


def match_by_key(
    layout: str,
    root: Path,
    images: dict[str, Path],
    masks: dict[str, list[Path]],
    prefix: str = "",
    split: str | None = None,
) -> Discovery:
    """Pair images and masks that share a key; the rest are listed as unpaired, nothing is dropped."""
    pairs = [
        Pair(key=prefix + k, image=images[k], masks=tuple(sorted(masks[k])), split=split)
        for k in sorted(images)
        if k in masks
    ]
    return Discovery(
        layout=layout,
        pairs=pairs,
        images_without_mask=[images[k] for k in sorted(images) if k not in masks],
        masks_without_image=[p for k in sorted(masks) if k not in images for p in masks[k]],
        root=root,
    )


def check_root(root: str | Path, expected: str = "a dataset folder") -> Path:
    """Return ``root`` as a Path, or raise :class:`DataError` if it does not exist."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data folder {root} does not exist; expected {expected} (set data.root)")
    return root


def is_visible_file(p: Path, exts: tuple[str, ...]) -> bool:
    """A regular, non-hidden file with one of ``exts`` (case-insensitive)."""
    return p.is_file() and p.suffix.lower() in exts and not p.name.startswith(".")


NAMED_IN_ERROR = 3
"""How many clashing file pairs an error names before it counts the rest."""
SAME_STEM_FIX = "remove or rename one file of each pair (e.g. delete the stale copy)"


def clash_error(clashes: Sequence[tuple[Path, Path]], what: str, base: Path, fix: str) -> DuplicateFilesError:
    """The one-line error for files that claim one name: a count, the first few pairs (relative to
    ``base``), what was expected and ``fix``."""
    rel = [tuple(p.relative_to(base).as_posix() if base in p.parents else str(p) for p in c) for c in clashes]
    shown = "; ".join(f"{a} and {b}" for a, b in rel[:NAMED_IN_ERROR])
    more = f"; and {len(rel) - NAMED_IN_ERROR} more" if len(rel) > NAMED_IN_ERROR else ""
    return DuplicateFilesError(
        f"{base}: {len(rel)} pair(s) of {what}: {shown}{more}; expected one file per name (pairing would use "
        f"one and silently drop the other); fix: {fix}"
    )


def mask_family(stem: str, key: str) -> str:
    """The naming a mask file uses for its image: the part of its stem after the image's ``key``,
    without a trailing number (``a_mask_2`` -> ``_mask``, ``a`` -> ``""``)."""
    return re.sub(r"[_ -]?\d+$", "", stem[len(key) :]) if stem.startswith(key) else stem


def refuse_mixed_naming(entries: Iterable[tuple[str, str, Path]], base: Path) -> None:
    """Refuse an image whose masks are named two ways (``a.png`` and ``a_mask.png``, ``a_mask.png`` and
    ``a_segmentation.png``) or twice (``a.png`` and ``a.jpg``): OR-ing them would add a stale mask
    to the current one without a word. Numbered masks of one naming (``a_mask``, ``a_mask_1``) are
    the several masks of one image and are OR-ed.

    Args:
        entries: ``(image key, mask stem or relative path without extension, mask file)``.

    Raises:
        DuplicateFilesError: naming the clashing files and the fix.
    """
    seen: dict[str, tuple[str, str, Path]] = {}
    clashes: list[tuple[Path, Path]] = []
    for key, stem, path in entries:
        first = seen.setdefault(key, (stem, mask_family(stem, key), path))
        if first[2] != path and (first[0] == stem or first[1] != mask_family(stem, key)):
            clashes.append((first[2], path))
    if clashes:
        raise clash_error(
            clashes,
            "mask files named two ways for one image",
            base,
            "keep one mask file per image (delete the stale one), or number extra masks of one image "
            "<name>_mask_1, <name>_mask_2 to OR them",
        )


def unique_by_key(
    items: Iterable[tuple[str, Path]], what: str, base: Path, fix: str = SAME_STEM_FIX
) -> dict[str, Path]:
    """Map key -> path, refusing two paths with one key (see :func:`clash_error`).

    Keeping the first would pair the wrong file or lose one without a word (a stale ``.jpg``
    mask sorts before the ``.png`` that replaced it).

    Raises:
        DuplicateFilesError: naming the clashing files and ``fix``.
    """
    out: dict[str, Path] = {}
    clashes: list[tuple[Path, Path]] = []
    for key, path in items:
        if key in out:
            clashes.append((out[key], path))
        else:
            out[key] = path
    if clashes:
        raise clash_error(clashes, what, base, fix)
    return out


def files_by_stem(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    """Map file stem -> path for the files of ``folder``.

    Raises:
        DuplicateFilesError: when two files share a stem (``a.jpg`` beside ``a.png``): the
            layouts pair by stem, so one of them would be dropped silently.
    """
    files = [p for p in sorted(folder.iterdir()) if is_visible_file(p, exts)]
    return unique_by_key(
        ((p.stem, p) for p in files),
        "files with the same name but another extension",
        folder,
    )


def split_subfolders(root: Path, probe) -> dict[str, Path]:
    """Subfolders of ``root`` named like a split (train/val/test...) for which ``probe(dir)`` holds."""
    out: dict[str, Path] = {}
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        split = SPLIT_ALIASES.get(d.name.lower())
        if split and d.is_dir() and probe(d) and split not in out:
            out[split] = d
    return out


def normalize_split(value: str, where: str) -> str:
    """Map a split name (``Training``, ``valid``...) to ``train``/``val``/``test``."""
    split = SPLIT_ALIASES.get(value.strip().lower())
    if split is None:
        raise DataError(f"{where}: unknown split {value!r}; expected one of train, val, test (or training/validation)")
    return split


def no_pairs_error(root: Path, layout: str, n_images: int, n_masks: int, hint: str) -> DataError:
    """The one-line error for a layout that found no pairs."""
    return DataError(
        f"no image/mask pairs in {root} (layout {layout!r}): found {n_images} images and {n_masks} masks; "
        f"{hint} (image extensions: {', '.join(IMAGE_EXTENSIONS)}; or set data.layout)"
    )


__all__ = [
    "IMAGE_EXTENSIONS",
    "MASK_EXTENSIONS",
    "MASK_NAME_SUFFIXES",
    "SAME_STEM_FIX",
    "mask_key",
    "mask_name_re",
    "Discovery",
    "Pair",
    "check_root",
    "clash_error",
    "refuse_mixed_naming",
    "files_by_stem",
    "is_visible_file",
    "no_pairs_error",
    "normalize_split",
    "split_subfolders",
    "unique_by_key",
]
