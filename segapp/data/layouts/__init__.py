"""Find image/mask pairs on disk; one registry of layouts and one entry point, :func:`discover`.

``paired``    ``ROOT/images/<name>.<ext>`` <-> ``ROOT/masks/<name>[_mask|_segmentation].<ext>``
              (Kvasir-SEG, CVC-ClinicDB)
``isic2018``  ISIC 2018 Task 1 folders as published (Training/Validation/Test)
``suffix``    ``<name>.png`` <-> ``<name>_mask.png`` (+ ``_mask_1``, ``_mask_2``... OR-ed; BUSI)
``csv``       manifest with ``image,mask`` columns, optional ``split``, ``fold``, ``group``

``auto`` tries them in the order csv, isic2018, paired, suffix and takes the first that matches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from segapp.data.errors import DataError, DuplicateFilesError, LayoutError
from segapp.data.layouts import isic, manifest, paired, suffix
from segapp.data.layouts.base import Discovery, Pair, check_root
from segapp.data.layouts.suggest import closest, hint_text

LayoutName = Literal["auto", "isic2018", "paired", "suffix", "csv"]


@dataclass(frozen=True)
class Layout:
    """A registered layout: ``detect(root) -> bool`` and ``find(root, **opts) -> Discovery``."""

    detect: Callable[..., bool]
    find: Callable[..., Discovery]
    options: tuple[str, ...] = ()


LAYOUTS: dict[str, Layout] = {
    "csv": Layout(manifest.detect, manifest.find_csv, ("csv_name",)),
    "isic2018": Layout(isic.detect, isic.find_isic2018),
    "paired": Layout(paired.detect, paired.find_paired, ("mask_suffix",)),
    "suffix": Layout(suffix.detect, suffix.find_suffix, ("mask_suffix", "mask_dir")),
}
find_paired = paired.find_paired
find_isic2018 = isic.find_isic2018
find_suffix = suffix.find_suffix
find_csv = manifest.find_csv


def detect_layout(root: str | Path, **opts: Any) -> str:
    """Name of the first registered layout that matches ``root``.

    Raises:
        DataError: when none matches.
    """
    root = check_root(root)
    for name, lay in LAYOUTS.items():
        kw = {k: v for k, v in opts.items() if k in lay.options and v is not None and k != "csv_name"}
        if lay.detect(root, **kw):
            return name
    raise DataError(
        f"cannot tell the layout of {root}: expected images/ + masks/ folders, ISIC2018_Task1-2_Training_Input/, "
        f"<name>_mask.<ext> files or a CSV with image,mask columns; set data.layout to one of: {', '.join(LAYOUTS)}"
    )


def discover(root: str | Path, layout: LayoutName = "auto", **opts: Any) -> Discovery:
    """Find the image/mask pairs of a dataset.

    Args:
        root: Dataset folder (or CSV manifest).
        layout: A layout name, or ``auto`` to detect it.
        **opts: Layout options (``mask_suffix``, ``mask_dir`` for ``suffix``; ``csv_name`` for
            ``csv``); ``None`` values and options of other layouts are ignored.

    Returns:
        The pairs, sorted by key, and what could not be paired.

    Raises:
        DataError: on an unknown layout, a folder no layout matches, or no pairs; when some
            layout and settings would pair the files, a :class:`LayoutError` naming them.
        DuplicateFilesError: when two files claim one name (no other layout would fix that).
    """
    layout = _csv_name_layout(layout, opts.get("csv_name"))  # refused as it is, no layout hint after it
    try:
        disc = _find(root, layout, opts)
    except DuplicateFilesError:
        raise
    except DataError as e:
        best = closest(Path(root).expanduser(), LAYOUTS) if layout in ("auto", *LAYOUTS) else None
        if best is None:
            raise
        raise LayoutError(f"{e}; {hint_text(*best)}", best[1], best[2], best[0]) from None
    disc.pairs.sort(key=lambda p: p.key)
    return disc


def _find(root: str | Path, layout: str, opts: dict[str, Any]) -> Discovery:
    if layout == "auto":
        layout = detect_layout(root, **opts)
    if layout not in LAYOUTS:
        raise DataError(f"unknown data.layout {layout!r}; expected one of: auto, {', '.join(LAYOUTS)}")
    lay = LAYOUTS[layout]
    kw = {k: v for k, v in opts.items() if k in lay.options and v is not None}
    return lay.find(root, **kw)


def _csv_name_layout(layout: str, csv_name: str | None) -> str:
    """``csv`` when ``data.csv_name`` names a manifest and the layout is ``auto``.

    Detection looks for a folder holding exactly one manifest; in a folder with ``train.csv`` and
    ``test.csv`` it used to fall through to ``paired`` and pair every image, the test manifest's
    included, while the ``csv_name`` the user set was dropped without a word.

    Raises:
        DataError: ``csv_name`` with a layout other than ``csv`` (it would be ignored).
    """
    if not csv_name:
        return layout
    if layout == "auto":
        return "csv"
    if layout != "csv":
        raise DataError(
            f"data.csv_name={csv_name!r} is read by the csv layout only, but data.layout is {layout!r}, so it would "
            "be ignored and every file of the folder paired; fix: set data.layout csv (or auto), or drop "
            "data.csv_name"
        )
    return layout


__all__ = [
    "LAYOUTS",
    "Discovery",
    "LayoutName",
    "Pair",
    "detect_layout",
    "discover",
    "find_csv",
    "find_isic2018",
    "find_paired",
    "find_suffix",
]
