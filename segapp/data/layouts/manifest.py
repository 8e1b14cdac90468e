"""``csv``: a manifest with ``image,mask`` columns (paths relative to the CSV file).

Optional columns: ``split`` (train/val/test), ``fold`` (integer), ``group`` (patient or lesion
id). Several masks for one image are OR-ed: repeat the row, or separate paths with ``;``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from segapp.data.errors import DataError
from segapp.data.layouts.base import Discovery, Pair, check_root, normalize_split

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


def find_csv(root: str | Path, csv_name: str | None = None) -> Discovery:
    """Read pairs from a CSV manifest.

    Args:
        root: The CSV file, or a folder holding it.
        csv_name: File name of the manifest inside ``root`` when there are several CSVs.

    Raises:
        DataError: on a missing manifest, missing columns, bad split/fold values or no pairs.
    """
    root = check_root(root, "a CSV manifest with image,mask columns, or its folder")
    path = find_manifest(root, csv_name)
    if path is None or not path.is_file():
        raise DataError(
            f"no CSV manifest in {root}; expected one file with an image,mask header (or set data.csv_name)"
        )
    base = path.parent
    entries: dict[str, dict] = {}
    missing: list[Path] = []
    for line, row in enumerate(_read_rows(path), start=2):
        where = f"{path}:{line}"
        if not row.get("image") or not row.get("mask"):
            raise DataError(f"{where}: empty image or mask cell; expected a path in both columns")
        image = base / row["image"]
        e = entries.setdefault(row["image"], {"image": image, "masks": [], "split": None, "fold": None, "group": None})
        e["masks"] += [base / m.strip() for m in row["mask"].split(";") if m.strip()]
        if row.get("split"):
            e["split"] = normalize_split(row["split"], where)
        e["fold"] = _fold(row.get("fold", ""), where) if row.get("fold") else e["fold"]
        e["group"] = row.get("group") or e["group"]
    pairs = []
    for key in sorted(entries):
        e = entries[key]
        absent = [p for p in (e["image"], *e["masks"]) if not p.is_file()]
        if absent:
            missing += absent
            continue
        pairs.append(
            Pair(
                key=Path(key).with_suffix("").as_posix(),
                image=e["image"],
                masks=tuple(dict.fromkeys(e["masks"])),
                split=e["split"],
                fold=e["fold"],
                group=e["group"],
            )
        )
    if not pairs:
        raise DataError(
            f"{path}: none of its {len(entries)} rows names an existing image and mask (first missing: "
            f"{missing[0] if missing else '-'}); paths are relative to the CSV's folder"
        )
    return Discovery(layout="csv", pairs=pairs, missing=missing, root=base)
