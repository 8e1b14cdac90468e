"""Data loader throughput on Kvasir-SEG, with and without the resized-copy cache.

Measures images/s of the training DataLoader (decode + resize + normalise, no augmentation,
``num_workers`` workers) over the same images, alternating uncached and cached passes (A B A B)
and reporting medians; the one-off cost of filling the cache is timed separately. The cache
lives in a fresh temporary folder (``SEGAPP_CACHE_DIR``), removed afterwards.

    .venv/bin/python bench/loader_bench.py                 # ~1-3 min on 2 cores
    .venv/bin/python bench/loader_bench.py --write-docs    # also update docs/benchmarks.md

Writes ``bench/results/loader_bench_<UTC date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from segapp.machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
KVASIR = REPO.parent / "shared" / "data" / "kvasir-seg"
SECTION = "## Data loader throughput"


def one_pass(dm, limit: int) -> float:
    """Seconds to pull ``limit`` images through a fresh training loader (no augmentation)."""
    loader = dm._loader("train", train=True)
    seen, t0 = 0, time.perf_counter()
    for batch in loader:
        seen += batch["image"].shape[0]
        if seen >= limit:
            break
    return time.perf_counter() - t0, seen


def run(args: argparse.Namespace) -> dict:
    os.environ["SEGAPP_CACHE_DIR"] = tempfile.mkdtemp(prefix="segapp-bench-cache-")
    from segapp.data import LesionDataModule

    def make(cache: bool) -> LesionDataModule:
        dm = LesionDataModule(
            root=str(args.root),
            image_size=args.size,
            batch_size=args.batch_size,
            num_workers=args.workers,
            augment="none",
            normalize="none",
            val_fraction=0.0,
            check=False,
            cache=cache,
            train_subset=args.images,
        )
        dm.setup()
        return dm

    plain, cached = make(False), make(True)
    n = len(plain.splits["train"])
    fill_s, _ = one_pass(cached, n)
    times: dict[str, list[float]] = {"uncached": [], "cached": []}
    for _ in range(args.repeats):
        for name, dm in (("uncached", plain), ("cached", cached)):
            s, seen = one_pass(dm, n)
            times[name].append(seen / s)
    shutil.rmtree(os.environ["SEGAPP_CACHE_DIR"], ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    import torch

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/loader_bench.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpu": cpu_model(),
            "threads": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
            "torch": torch.__version__,
        },
        "settings": {
            "images": n,
            "image_size": args.size,
            "batch_size": args.batch_size,
            "num_workers": args.workers,
            "repeats": args.repeats,
        },
        "images_per_s": {k: [round(x, 1) for x in v] for k, v in times.items()},
        "median_images_per_s": {k: round(v, 1) for k, v in med.items()},
        "speedup": round(med["cached"] / med["uncached"], 2),
        "cache_fill_s": round(fill_s, 2),
    }


def markdown(r: dict) -> str:
    m, s = r["machine"], r["settings"]
    return "\n".join(
        [
            SECTION,
            "",
            "Training DataLoader on Kvasir-SEG (JPEG up to 1920x1072), decode + resize + normalise, no augmentation;",
            "uncached and cached passes alternate, medians of the repeats (`bench/loader_bench.py`). `load` is the",
            "1-minute load average during the run: on a shared machine absolute numbers drop, compare the ratio.",
            "",
            "| date | machine | images | size | workers | uncached img/s | cached img/s | speedup | cache fill (s) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
            f"| {r['date']} | {m['cpu']}, {m['threads']} threads, torch {m['torch']}, load "
            f"{m['load_avg_1m']:.1f} | {s['images']} | {s['image_size']} | "
            f"{s['num_workers']} | {r['median_images_per_s']['uncached']} | "
            f"{r['median_images_per_s']['cached']} | {r['speedup']}x | {r['cache_fill_s']} |",
            "",
            f"Command: `{r['command']}`",
            "",
        ]
    )


def write_docs(text: str, path: Path) -> None:
    """Replace (or append) the loader section of docs/benchmarks.md, leaving other sections alone."""
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    start = doc.find(SECTION)
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        end = doc.find("\n## ", start + len(SECTION))
        doc = doc[:start] + text + (doc[end + 1 :] if end >= 0 else "")
    path.write_text(doc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--root", type=Path, default=KVASIR, help="paired dataset folder (default ../shared/data/kvasir-seg)"
    )
    p.add_argument("--images", type=int, default=400, help="images per pass (default 400)")
    p.add_argument("--size", type=int, default=256, help="network input size (default 256)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="alternating uncached/cached passes (default 3)")
    p.add_argument("--write-docs", action="store_true", help="update the section in docs/benchmarks.md")
    args = p.parse_args()
    if not args.root.is_dir():
        sys.exit(f"loader_bench: error: {args.root} not found; pass --root /path/to/kvasir-seg")
    r = run(args)
    out = REPO / "bench" / "results" / f"loader_bench_{r['date'][:10]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=2) + "\n")
    print(json.dumps(r, indent=2))
    if args.write_docs:
        write_docs(markdown(r), REPO / "docs" / "benchmarks.md")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
