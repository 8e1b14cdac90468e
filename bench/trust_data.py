"""Data for the trust benchmark (bench/kvasir_trust.sh): the fixed Kvasir split and foreign scans.

Writes, under ``--out``:

- ``pool.csv``: the Kvasir pairs outside ``bench/splits/kvasir_test.txt`` (a ``csv`` layout
  manifest with absolute paths): what the folds train, validate and calibrate on;
- ``test/images``, ``test/masks``: links to the 100 test pairs no model or rule touches;
- ``foreign/<kind>/``: scans of other kinds for the out-of-distribution test, ``--n`` each:
  ``synthetic`` (segapp's own lesion generator), ``photo`` (procedural outdoor-like pictures:
  sky, ground, shapes, texture), ``ultrasound`` (grey speckle in a fan-shaped sector with dark
  lesions, 1 channel), ``blank`` (one grey level), ``noise`` (uniform colour noise).

    python bench/trust_data.py --kvasir ../shared/data/kvasir-seg --out runs/trust/data
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SPLIT = Path(__file__).resolve().parent / "splits" / "kvasir_test.txt"


def read_split(path: Path = SPLIT) -> list[str]:
    """The test stems (comment lines skipped)."""
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def write_pool_and_test(kvasir: Path, out: Path) -> tuple[int, int]:
    test = set(read_split())
    stems = sorted(p.stem for p in (kvasir / "images").glob("*.jpg"))
    missing = test - set(stems)
    if missing:
        sys.exit(f"{len(missing)} test stems not in {kvasir}/images, e.g. {sorted(missing)[0]}")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "pool.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "mask"])
        for s in stems:
            if s not in test:
                w.writerow([(kvasir / "images" / f"{s}.jpg").resolve(), (kvasir / "masks" / f"{s}.jpg").resolve()])
    for sub in ("images", "masks"):
        d = out / "test" / sub
        d.mkdir(parents=True, exist_ok=True)
        for s in sorted(test):
            link = d / f"{s}.jpg"
            if not link.exists():
                link.symlink_to((kvasir / sub / f"{s}.jpg").resolve())
    return len(stems) - len(test), len(test)


def photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An outdoor-like picture: a sky gradient, a textured ground, a few coloured shapes."""
    sky = np.array(rng.uniform([90, 140, 200], [150, 200, 255]))
    ground = np.array(rng.uniform([40, 80, 20], [140, 160, 90]))
    horizon = int(h * rng.uniform(0.35, 0.65))
    t = np.linspace(0, 1, h)[:, None, None]
    img = np.where(np.arange(h)[:, None, None] < horizon, sky * (1 - 0.4 * t), ground * (0.7 + 0.6 * t))
    img = np.broadcast_to(img, (h, w, 3)).copy()
    img += rng.normal(0, 12, (h, w, 3)) * (np.arange(h)[:, None, None] >= horizon)
    pic = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pic)
    for _ in range(rng.integers(3, 8)):
        x0, y0 = rng.integers(0, w - 20), rng.integers(0, h - 20)
        x1, y1 = x0 + rng.integers(15, w // 3), y0 + rng.integers(15, h // 3)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)([x0, y0, x1, y1], fill=colour)
    return np.asarray(pic.filter(ImageFilter.GaussianBlur(1.0)))


def ultrasound(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Grey speckle (Rayleigh) inside a fan-shaped sector, with one or two dark round lesions."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    apex_x, r = w / 2, np.hypot(xx - w / 2, yy + 0.1 * h)
    angle = np.degrees(np.arctan2(xx - apex_x, yy + 0.1 * h))
    sector = (np.abs(angle) < rng.uniform(30, 45)) & (r < 1.05 * h)
    tissue = rng.rayleigh(rng.uniform(40, 70), (h, w)) * (1.0 - 0.5 * yy / h)
    for _ in range(rng.integers(1, 3)):
        cy, cx, rad = rng.uniform(0.3, 0.8) * h, rng.uniform(0.35, 0.65) * w, rng.uniform(0.05, 0.15) * h
        tissue *= np.where(np.hypot(yy - cy, xx - cx) < rad, rng.uniform(0.15, 0.4), 1.0)
    img = np.where(sector, tissue, 0)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_foreign(out: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    makers = {
        "photo": lambda h, w: photo(rng, h, w),
        "ultrasound": lambda h, w: ultrasound(rng, h, w),
        "blank": lambda h, w: np.full((h, w, 3), int(rng.integers(0, 256)), np.uint8),
        "noise": lambda h, w: rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
    }
    for kind, make in makers.items():
        d = out / "foreign" / kind
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = int(rng.integers(400, 700)), int(rng.integers(450, 800))
            Image.fromarray(make(h, w)).save(d / f"{kind}_{i:03d}.png")
    synth = out / "foreign" / "_synth"
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [str(bin_dir / "segapp-data"), "synth", "--out", str(synth), "--n", str(n), "--size", "256", "--seed", "7"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    target = out / "foreign" / "synthetic"
    if not target.exists():
        (synth / "images").rename(target)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kvasir", default="../shared/data/kvasir-seg")
    p.add_argument("--out", default="runs/trust/data")
    p.add_argument("--n", type=int, default=40, help="foreign scans per kind (default 40)")
    p.add_argument("--seed", type=int, default=11)
    a = p.parse_args()
    out = Path(a.out)
    pool, test = write_pool_and_test(Path(a.kvasir), out)
    write_foreign(out, a.n, a.seed)
    print(f"pool {pool} pairs ({out}/pool.csv), test {test} pairs ({out}/test), foreign: {a.n} x 5 kinds")


if __name__ == "__main__":
    main()
