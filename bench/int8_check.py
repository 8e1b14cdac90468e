"""int8 against fp32 ONNX on Kvasir: mask agreement and forward-pass speed (docs/inference.md, "int8").

For each ``--checkpoint`` it exports fp32 ONNX and runs ``segapp-export --quantize int8`` with a
folder of Kvasir training images (half of the images outside ``bench/splits/kvasir_test.txt``,
linked into a temporary folder, unless ``--calibration`` names one), then measures on ``--n``
*other* Kvasir training images (the other half; never calibration images):

- mask agreement: mean and min per-image Dice (segapp.eval's) of the int8 masks against the fp32
  masks, both from :class:`~segapp.inference.Predictor` at the images' original size;
- speed: one forward pass of a batch of 8 preprocessed images per engine, fp32 and int8 side by
  side (alternating), the median of ``--repeats`` after one warm-up each.

Where ``segapp-export`` refuses int8 (its masks move too far), the refusal is printed and the int8
model is made again with the bound lifted, for measurement only (``"forced": true``). Prints one
JSON line per checkpoint. Timings under ``nice`` beside other jobs are noisy; the load average is
recorded::

    nice -n 19 .venv/bin/python bench/int8_check.py \\
        --checkpoint runs/quickstart/checkpoints/best.ckpt runs/kvasir40d/effl0_320-s0/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
KVASIR = REPO.parent / "shared" / "data" / "kvasir-seg" / "images"
SPLIT = REPO / "bench" / "splits" / "kvasir_test.txt"
BATCH = 8


def machine() -> dict:
    from segapp.machine import cpu_flags, cpu_model

    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "avx512_vnni": "avx512_vnni" in flags,
        "avx_vnni": "avx_vnni" in flags,
        "amx": bool({"amx_int8", "amx_tile"} & flags),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def training_images(kvasir: Path = KVASIR) -> list[Path]:
    """Kvasir images outside the fixed test split, sorted by name."""
    test = {ln.strip() for ln in SPLIT.read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    return sorted(p for p in kvasir.glob("*.jpg") if p.stem not in test)


def split_folders(work: Path, calibration: Path | None, n: int) -> tuple[Path, list[Path]]:
    """``(calibration folder, n check images)``: even-indexed training images calibrate (linked into
    ``work/calibration``), odd-indexed ones check; with ``calibration`` given, the check images are
    training images not in it."""
    files = training_images()
    if calibration is None:
        calibration = work / "calibration"
        calibration.mkdir()
        for p in files[::2]:
            (calibration / p.name).symlink_to(p)
    used = {p.name for p in calibration.rglob("*")}
    return calibration, [p for p in files[1::2] if p.name not in used][:n]


def export_pair(ckpt: Path, work: Path, calibration: Path, count: int) -> tuple[Path, Path, dict]:
    """fp32 and int8 exports of ``ckpt``; the int8 one forced (bound lifted) when segapp-export refuses."""
    from segapp.inference import quantize
    from segapp.inference.export import export_model

    fp32, int8 = work / f"{ckpt.parent.parent.name}.onnx", work / f"{ckpt.parent.parent.name}.int8.onnx"
    export_model(ckpt, fp32)
    info: dict = {"forced": False}
    try:
        export_model(ckpt, int8, quantize="int8", calibration=calibration, calibration_count=count)
    except quantize.QuantizeError as e:
        info = {"forced": True, "refused": str(e)}
        bound, quantize.MIN_MEAN_DICE = quantize.MIN_MEAN_DICE, 0.0
        try:
            export_model(ckpt, int8, quantize="int8", calibration=calibration, calibration_count=count)
        finally:
            quantize.MIN_MEAN_DICE = bound
    block = json.loads(int8.with_name(int8.name + ".json").read_text())["quantization"]
    info["export_check"] = {k: block[k] for k in ("scope", "mean_dice_vs_fp32", "min_dice_vs_fp32", "tried")}
    return fp32, int8, info


def mask_agreement(fp32: Path, int8: Path, files: list[Path]) -> dict:
    """Per-image Dice of int8 masks vs fp32 masks at original size (segapp.eval's Dice)."""
    from segapp.eval.metrics import overlap_scores
    from segapp.inference import Predictor
    from segapp.io import read_image

    a, b = Predictor.from_onnx(fp32, device="cpu"), Predictor.from_onnx(int8, device="cpu")
    dice, diff = [], []
    for f in files:
        img = read_image(f)
        pa, pb = a.predict_probs(img), b.predict_probs(img)
        dice.append(overlap_scores(pa > a.threshold, pb > b.threshold)["dice"])
        diff.append(float(np.abs(pa - pb).max()))
    return {
        "images": len(files),
        "mean_dice": round(float(np.mean(dice)), 5),
        "min_dice": round(float(np.min(dice)), 5),
        "images_below_0.99": int(sum(d < 0.99 for d in dice)),
        "max_prob_diff": round(max(diff), 4),
    }


def forward_speed(fp32: Path, int8: Path, files: list[Path], repeats: int) -> dict:
    """Seconds per forward pass of a batch of 8, fp32 and int8 alternating; medians of ``repeats``."""
    from segapp.inference.engines import OnnxEngine
    from segapp.io import preprocess, read_image

    engines = {"fp32": OnnxEngine(fp32, device="cpu"), "int8": OnnxEngine(int8, device="cpu")}
    spec = engines["fp32"].spec
    batch = np.stack([preprocess(read_image(f), spec) for f in files[:BATCH]])
    times: dict[str, list[float]] = {k: [] for k in engines}
    for e in engines.values():
        e.run(batch)  # warm-up
    for _ in range(repeats):
        for k, e in engines.items():
            t0 = time.perf_counter()
            e.run(batch)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "batch": len(batch),
        "input": list(spec.size),
        "fp32_s_per_batch": round(med["fp32"], 4),
        "int8_s_per_batch": round(med["int8"], 4),
        "int8_over_fp32": round(med["int8"] / med["fp32"], 3),
        "runs_s": {k: [round(t, 4) for t in v] for k, v in times.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", nargs="+", required=True, type=Path)
    p.add_argument("--calibration", type=Path, default=None, help="training images (default: half of Kvasir's)")
    p.add_argument("--calibration-count", type=int, default=64)
    p.add_argument("--n", type=int, default=100, help="held-out Kvasir images for the mask agreement")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    warnings.simplefilter("ignore")  # checkpoints without a trust block warn on every load
    with tempfile.TemporaryDirectory(prefix="int8-check-") as tmp:
        work = Path(tmp)
        calibration, check = split_folders(work, args.calibration, args.n)
        for ckpt in args.checkpoint:
            fp32, int8, info = export_pair(ckpt, work, calibration, args.calibration_count)
            row = {
                "checkpoint": str(ckpt),
                "calibration": {"folder": str(calibration), "count": args.calibration_count},
                **info,
                "vs_fp32_on_held_out": mask_agreement(fp32, int8, check),
                "speed": forward_speed(fp32, int8, check, args.repeats),
                "machine": machine(),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
