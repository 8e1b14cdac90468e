"""Compare two segapp-predict output folders: same CSV statuses and outputs, identical masks."""

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


def main(a: str, b: str) -> int:
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
