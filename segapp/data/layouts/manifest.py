"""``csv``: a manifest with ``image,mask`` columns (paths relative to the CSV file).

Optional columns: ``split`` (train/val/test), ``fold`` (integer), ``group`` (patient or lesion
id). Several masks for one image are OR-ed: repeat the row, or separate paths with ``;``. Rows
are merged per image by resolved path, so ``images/a.png`` and ``./images/a.png`` are one image.
"""

from __future__ import annotations

import csv
from pathlib import Path

from segapp.data.errors import DataError
from segapp.data.layouts.base import Discovery, Pair, check_root, normalize_split, unique_by_key

REQUIRED = ("image", "mask")


def find_manifest(root: Path, csv_name: str | None = None) -> Path | None:
    """The manifest: ``root`` itself if it is a CSV, ``root/csv_name``, or the only ``*.csv`` in ``root``."""
    if root.is_file():
        return root if root.suffix.lower() == ".csv" else None
    if csv_name:
        return root / csv_name
    found = sorted(p for p in root.glob("*.csv") if _has_columns(p)) if root.is_dir() else []
    return found[0] if len(found) == 1 else None


def _has_columns(path: Path) -> bool:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return False
    return all(c in [h.strip().lower() for h in header] for c in REQUIRED)


def detect(root: Path) -> bool:
    """True when ``root`` is, or holds exactly one, CSV with ``image`` and ``mask`` columns."""
    return find_manifest(root) is not None


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [h.strip().lower() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in fields]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {', '.join(missing)}; expected a header with image,mask (optional "
                f"split,fold,group)"
            )
        return [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]


def _fold(value: str, where: str) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{where}: fold {value!r} is not an integer; expected 0, 1, 2, ... or an empty cell") from None


def _entry(entries: dict[Path, dict], base: Path, cell: str) -> dict:
    """The entry of the image a cell names, keyed by its resolved path: ``images/a.png`` and
    ``./images/a.png`` are one image whose rows' masks are combined, not two pairs with one key."""
    image = base / cell
    key = Path(cell).with_suffix("").as_posix()
    first = {"key": key, "image": image, "masks": {}, "from": {}, "split": None, "fold": None, "group": None}
    return entries.setdefault(image.resolve(), first)


def _set_once(e: dict, field: str, value, where: str) -> None:
    """Record a row's ``split``/``fold``/``group``; two rows of one image that disagree are an error
    (the last one used to win silently)."""
    if value is None or value == "":
        return
    if e[field] is not None and e[field] != value:
        raise DataError(
            f"{where}: {field} {value!r} for {e['image']}, but {e['from'][field]} gave {e[field]!r}; expected one "
            f"{field} per image; fix: give every row of that image the same {field}"
        )
    e[field], e["from"][field] = value, where


def _read_entries(path: Path) -> dict[Path, dict]:
    """The manifest's rows merged per image (resolved path); several masks per image are kept once each."""
    base = path.parent
    entries: dict[Path, dict] = {}
    for line, row in enumerate(_read_rows(path), start=2):
        where = f"{path}:{line}"
        if not row.get("image") or not row.get("mask"):
            raise DataError(f"{where}: empty image or mask cell; expected a path in both columns")
        e = _entry(entries, base, row["image"])
        for m in (m.strip() for m in row["mask"].split(";")):
            if m:
                e["masks"].setdefault((base / m).resolve(), base / m)
        _set_once(e, "split", normalize_split(row["split"], where) if row.get("split") else None, where)
        _set_once(e, "fold", _fold(row.get("fold", ""), where), where)
        _set_once(e, "group", row.get("group"), where)
    return entries


def _pairs(path: Path, entries: dict[Path, dict]) -> tuple[list[Pair], list[Path]]:
    """Pairs of the entries whose files all exist (sorted by key), and the files that do not.

    Raises:
        DuplicateFilesError: when two different images get one key (``a.png`` and ``a.jpg``).
    """
    ordered = sorted(entries.values(), key=lambda e: (e["key"], str(e["image"])))
    unique_by_key(
        ((e["key"], e["image"]) for e in ordered), "images with one key (path without extension)", path.parent
    )
    pairs, missing = [], []
    for e in ordered:
        absent = [p for p in (e["image"], *e["masks"].values()) if not p.is_file()]
        missing += absent
        if not absent:
            masks = tuple(e["masks"].values())
            pairs.append(Pair(e["key"], e["image"], masks, split=e["split"], fold=e["fold"], group=e["group"]))
    return pairs, missing


def find_csv(root: str | Path, csv_name: str | None = None) -> Discovery:
    """Read pairs from a CSV manifest.

    Rows are merged per image by resolved path, so different spellings of one file (``a.png``,
    ``./a.png``) are one image with the masks of all its rows OR-ed.

    Args:
        root: The CSV file, or a folder holding it.
        csv_name: File name of the manifest inside ``root`` when there are several CSVs.

    Raises:
        DataError: on a missing manifest, missing columns, bad or conflicting split/fold/group
            values, or no pairs.
        DuplicateFilesError: when two different images get one key.
    """
    root = check_root(root, "a CSV manifest with image,mask columns, or its folder")
    path = find_manifest(root, csv_name)
    if path is None or not path.is_file():
        raise DataError(
            f"no CSV manifest in {root}; expected one file with an image,mask header (or set data.csv_name)"
        )
    entries = _read_entries(path)
    pairs, missing = _pairs(path, entries)
    if not pairs:
        raise DataError(
            f"{path}: none of its {len(entries)} rows names an existing image and mask (first missing: "
            f"{missing[0] if missing else '-'}); paths are relative to the CSV's folder"
        )
    return Discovery(layout="csv", pairs=pairs, missing=missing, root=path.parent)
