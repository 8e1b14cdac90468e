"""Compare two segapp-predict output folders: same CSV statuses, outputs and trust columns,
identical masks, and a review page in each."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np


def rows(folder: Path) -> dict[str, dict[str, str]]:
    with open(folder / "predictions.csv", newline="") as fh:
        return {f"{r['input']}#{r.get('frame', '')}": r for r in csv.DictReader(fh)}


def load(path: Path) -> np.ndarray:
    if path.name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        return np.asarray(nib.load(path).dataobj)
    from PIL import Image

    return np.asarray(Image.open(path))


TRUST_TEXT = ("input_check", "review", "review_reason")
TRUST_NUMBERS = ("uncertainty", "est_dice", "ood_score", "risk")


def trust_differences(key: str, row: dict[str, str], other: dict[str, str]) -> list[str]:
    """The trust columns of an ok row: present, equal text, numbers within 1e-3."""
    out = []
    for c in TRUST_TEXT:
        if row.get(c) != other.get(c):
            out.append(f"{key}: {c} {row.get(c)!r} vs {other.get(c)!r}")
    for c in TRUST_NUMBERS:
        x, y = row.get(c, ""), other.get(c, "")
        if x == "" or y == "" or abs(float(x) - float(y)) > 1e-3:
            out.append(f"{key}: {c} {x!r} vs {y!r}")
    return out


def seg_difference(a: Path, b: Path, rel: str) -> int:
    """1 when one folder has ``<rel>.seg.dcm`` and the other not, or their segment pixels differ."""
    sa, sb = a / f"{rel}.seg.dcm", b / f"{rel}.seg.dcm"
    if sa.is_file() != sb.is_file():
        print(f"{rel}: DICOM SEG in one folder only")
        return 1
    if not sa.is_file():
        return 0
    import pydicom

    pa, pb = pydicom.dcmread(sa), pydicom.dcmread(sb)
    if pa.Modality != "SEG" or not np.array_equal(pa.pixel_array, pb.pixel_array):
        print(f"{rel}: DICOM SEG pixels differ (or not a SEG)")
        return 1
    return 0


def main(a: str, b: str) -> int:
    for folder in (a, b):
        if not (Path(folder) / "review.html").is_file():
            print(f"{folder}: no review.html")
            return 1
    ra, rb = rows(Path(a)), rows(Path(b))
    if ra.keys() != rb.keys():
        print(f"different inputs: {sorted(ra.keys() ^ rb.keys())}")
        return 1
    bad = 0
    for key, row in ra.items():
        other = rb[key]
        if (row["status"], row["output"]) != (other["status"], other["output"]):
            print(f"{key}: {row['status']}/{row['output']} vs {other['status']}/{other['output']}")
            bad += 1
            continue
        if row["status"] == "ok":
            problems = trust_differences(key, row, other)
            for line in problems:
                print(line)
            bad += len(problems)
        bad += seg_difference(Path(a), Path(b), row["input"])
        for out in filter(None, row["output"].split(";")):
            if not np.array_equal(load(Path(a) / out), load(Path(b) / out)):
                print(f"{key}: mask {out} differs")
                bad += 1
    n_ok = sum(r["status"] == "ok" for r in ra.values())
    n_err = sum(r["status"] == "error" for r in ra.values())
    print(f"compared {len(ra)} rows ({n_ok} ok, {n_err} error): {'identical' if not bad else f'{bad} differences'}")
    return 1 if bad or n_ok == 0 or n_err == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
