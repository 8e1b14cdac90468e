"""Benchmark ``segapp-predict`` as users run it (issue 18): every variant a fresh process, start-up included.

Usage (results land in docs/benchmarks.md, section "Inference, issue 18")::

    .venv/bin/python bench/predict_bench.py speed --checkpoint runs/quickstart/checkpoints/best.ckpt
    .venv/bin/python bench/predict_bench.py speed --checkpoint <kvasir effl0_320 best.ckpt> --rounds 1

``speed`` runs, over the same images (default: the 900 Kvasir-SEG images at original size),
each variant as its own process and alternating A B C ... A B C in rounds against machine
noise: the naive loop (``naive``: one image at a time, fp32, NCHW, no workers: read, preprocess,
forward, upsample, threshold, write), the "same command, unoptimised" (``--engine torch
--batch-size 1 --workers 0 --precision fp32 --tta none``), the default command, ``--engine
torch``, ``--engine onnx``, the previous default (torch, ``--workers 2 --batch-size 8``,
bf16 where the CPU has it), an int8 export (``segapp-export --quantize int8``, calibrated on
other Kvasir images) and ensembles of 3 and 5 members. Ensemble members are copies of the
checkpoint with slightly perturbed weights (cost only: ensemble quality is in "Trust"). Every
``segapp-predict`` variant keeps the default trust signals and review page. One-time ONNX
exports are made before timing (the cache serves the timed runs). It reports wall time
(start-up included), images/s, speed-ups, the peak RSS of the process tree and mask agreement
with the unoptimised command (mean and min Dice, identical masks).
``rss`` runs the CLI over N generated 128 px PNGs: peak RSS for N/5 and N images (flat).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
KVASIR = REPO.parent / "shared" / "data" / "kvasir-seg" / "images"
TEST_SPLIT = REPO / "bench" / "splits" / "kvasir_test.txt"
BIN = Path(sys.executable).parent
# A fresh interpreter runs the module as its console script would and prints its peak RSS (self,
# largest child) on the way out; every variant pays the same few milliseconds for it.
WRAP = (
    "import resource, runpy, sys\n"
    "mod = sys.argv[1]; sys.argv = [mod] + sys.argv[2:]\n"
    "try:\n"
    "    run = runpy.run_path if mod.endswith('.py') else runpy.run_module\n"
    "    run(mod, run_name='__main__')\n"
    "except SystemExit as e:\n"
    "    code = e.code\n"
    "else:\n"
    "    code = 0\n"
    "s = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "c = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(f'PEAK_RSS_KB {s} {c}', file=sys.stderr); sys.exit(code)\n"
)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}


def machine() -> dict:
    from segapp.machine import cpu_flags, cpu_model

    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx": "amx_bf16" in flags,
        "vnni": bool({"avx512_vnni", "avx_vnni"} & flags),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_avg_1m": os.getloadavg()[0],
    }


def naive_loop(ckpt: Path, files: list[Path], out: Path) -> dict:
    """One image at a time, fp32, NCHW, no workers: the script a user writes first."""
    from collections import defaultdict as dd

    import torch

    from segapp.inference import load_net
    from segapp.inference.postprocess import upsample
    from segapp.io import preprocess, read_image, write_mask_png

    net, spec, threshold, _ = load_net(ckpt)
    stages: dict[str, float] = dd(float)
    t_start = time.perf_counter()
    for f in files:
        t0 = time.perf_counter()
        img = read_image(f)
        t1 = time.perf_counter()
        x = torch.from_numpy(preprocess(img, spec))[None]
        t2 = time.perf_counter()
        with torch.no_grad():
            probs = torch.sigmoid(net(x))[0, 0].numpy()
        t3 = time.perf_counter()
        mask = upsample(probs, img.shape[:2]) > threshold
        t4 = time.perf_counter()
        write_mask_png(out / (f.name + ".mask.png"), mask)
        t5 = time.perf_counter()
        for k, a, b in (
            ("decode", t0, t1),
            ("preprocess", t1, t2),
            ("forward", t2, t3),
            ("post", t3, t4),
            ("write", t4, t5),
        ):
            stages[k] += b - a
    return {"seconds": time.perf_counter() - t_start, "stages_s": dict(stages)}


def agreement(a_dir: Path, b_dir: Path) -> dict:
    """Pixel agreement, mean/min Dice (segapp.eval's, 1.0 when both are empty) and identical masks."""
    from segapp.eval.metrics import overlap_scores
    from segapp.io import read_mask

    dices, agree, same = [], [], 0
    for p in sorted(a_dir.glob("*.mask.png")):
        a, b = read_mask(p), read_mask(b_dir / p.name)
        agree.append(float((a == b).mean()))
        dices.append(overlap_scores(a, b)["dice"])
        same += bool(np.array_equal(a, b))
    return {
        "pixel_agreement": float(np.mean(agree)),
        "mean_dice": float(np.mean(dices)),
        "min_dice": float(np.min(dices)),
        "identical": same,
        "masks": len(dices),
    }


def perturbed_copies(ckpt: Path, n: int, work: Path) -> list[Path]:
    """``n`` copies of ``ckpt`` whose float weights carry 0.1 % noise (distinct members, same cost)."""
    import torch

    paths = []
    for k in range(n):
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        g = torch.Generator().manual_seed(k + 1)
        for name, t in state["state_dict"].items():
            if t.is_floating_point() and t.numel() > 1 and "running" not in name:
                t.add_(torch.randn(t.shape, generator=g) * 1e-3 * (t.std() + 1e-12))
        paths.append(work / f"member{k + 1}.ckpt")
        torch.save(state, paths[-1])
    return paths


def calibration_folder(images: Path, work: Path, n: int) -> Path:
    """``n`` Kvasir images outside the fixed test split (bench/splits/kvasir_test.txt), as symlinks."""
    test = set(TEST_SPLIT.read_text().split()) if TEST_SPLIT.is_file() else set()
    pool = sorted(p for p in images.iterdir() if p.stem not in test and p.suffix.lower() in (".jpg", ".png"))
    folder = work / "calibration"
    folder.mkdir()
    for p in pool[-n:]:  # the end of the sorted pool: other images than a --limit prefix
        os.symlink(p.resolve(), folder / p.name)
    return folder


def variants(a: argparse.Namespace, ckpt: Path, images: Path, work: Path) -> dict[str, list[str]]:
    """name -> argv after the python executable (all runs read ``images``; --output is added per run)."""
    predict = ["-c", WRAP, "segapp.cli.predict", "--input", str(images), "--no-progress"]
    naive = ["-c", WRAP, str(Path(__file__).resolve()), "naive", "--checkpoint", str(ckpt), "--input", str(images)]
    v = {
        "naive": naive,
        "unoptimised": [*predict, "--checkpoint", str(ckpt), "--engine", "torch", "--batch-size", "1"]
        + ["--workers", "0", "--precision", "fp32", "--tta", "none"],
        "default": [*predict, "--checkpoint", str(ckpt)],
        "engine_torch": [*predict, "--checkpoint", str(ckpt), "--engine", "torch"],
        "engine_onnx": [*predict, "--checkpoint", str(ckpt), "--engine", "onnx"],
        "previous_default": [*predict, "--checkpoint", str(ckpt), "--engine", "torch", "--workers", "2"]
        + ["--batch-size", "8", "--precision", "bf16" if machine()["avx512_bf16"] or machine()["amx"] else "fp32"],
    }
    if "int8" in a.variants:
        v["int8"] = [*predict, "--model", str(work / "int8.onnx")]
    members = perturbed_copies(ckpt, max(a.ensembles) - 1, work) if a.ensembles else []
    for k in a.ensembles:
        v[f"ensemble_{k}"] = [*predict, "--checkpoint", str(ckpt), *map(str, members[: k - 1])]
    return {k: x for k, x in v.items() if k in a.variants or k.startswith("ensemble")}


def run_once(argv: list[str], out: Path) -> dict:
    """One variant in a fresh process: wall seconds (start-up included), peak RSS, exit code."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, *argv, "--output", str(out)], capture_output=True, text=True, env=ENV)
    seconds = time.perf_counter() - t0
    line = next((ln for ln in res.stderr.splitlines() if ln.startswith("PEAK_RSS_KB")), None)
    if res.returncode != 0 or line is None:
        raise RuntimeError(f"{' '.join(argv[3:8])} ... failed ({res.returncode}):\n{res.stderr[-3000:]}")
    main_kb, child_kb = (int(x) for x in line.split()[1:])
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    return {
        "seconds": seconds,
        "peak_rss_mib": max(main_kb, child_kb) / 1024,
        "peak_rss_main_mib": main_kb / 1024,
        "engine": run.get("engine", {}).get("engine", "torch (naive)"),
        "precision": run.get("engine", {}).get("precision", "fp32"),
        "sizing": run.get("sizing"),
        "stages_s": run.get("stages_s"),
        "run_seconds": run.get("seconds"),
    }


def warm_up(v: dict[str, list[str]], images: Path, work: Path) -> None:
    """Make the one-time ONNX exports (cached) on two images, so no timed run pays for them."""
    few = work / "warm"
    few.mkdir()
    for p in sorted(images.iterdir())[:2]:
        os.symlink(p.resolve(), few / p.name)
    for name, argv in v.items():
        if name in ("default", "engine_onnx") or name.startswith("ensemble"):
            argv = [few if a == str(images) else a for a in argv]
            run_once([str(a) for a in argv], work / f"warm-{name}")


def export_int8(ckpt: Path, calibration: Path, work: Path) -> dict:
    cmd = [str(BIN / "segapp-export"), "--checkpoint", str(ckpt), "--out", str(work / "int8.onnx")]
    cmd += ["--quantize", "int8", "--calibration", str(calibration)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    out = {"exit_code": res.returncode, "seconds": time.perf_counter() - t0, "output": (res.stdout + res.stderr)[-600:]}
    meta = work / "int8.onnx.json"
    if meta.is_file():
        out["quantization"] = json.loads(meta.read_text()).get("quantization")
    return out


def speed(a: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="segapp-bench-"))
    ckpt = Path(a.checkpoint).resolve()
    files = sorted(p for p in Path(a.images).iterdir() if p.suffix.lower() in (".jpg", ".png"))[: a.limit]
    images = work / "images"
    images.mkdir()
    for f in files:
        os.symlink(f.resolve(), images / f.name)
    result: dict = {"machine": machine(), "images": len(files), "checkpoint": str(ckpt), "rounds": a.rounds}
    if "int8" in a.variants:
        result["int8_export"] = export_int8(ckpt, calibration_folder(Path(a.images), work, a.calibration_n), work)
        print("int8 export:", json.dumps(result["int8_export"])[:400], flush=True)
        if result["int8_export"]["exit_code"] != 0:
            a.variants = [x for x in a.variants if x != "int8"]
    v = variants(a, ckpt, images, work)
    warm_up(v, images, work)
    runs: dict[str, list[dict]] = defaultdict(list)
    for r in range(a.rounds):
        for name, argv in v.items():
            out = work / f"out-{name}-{r}"
            res = run_once(argv, out)
            res["images_per_s"] = len(files) / res["seconds"]
            runs[name].append(res)
            print(
                f"round {r} {name}: {res['seconds']:.1f} s, {res['images_per_s']:.2f} img/s, "
                f"{res['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
    med = {k: statistics.median(x["seconds"] for x in rs) for k, rs in runs.items()}
    ref = work / "out-unoptimised-0"
    table = {
        name: {
            "median_s": med[name],
            "images_per_s": len(files) / med[name],
            "vs_naive": med["naive"] / med[name] if "naive" in med else None,
            "vs_unoptimised": med["unoptimised"] / med[name] if "unoptimised" in med else None,
            "vs_default": med[name] / med["default"] if "default" in med else None,
            "peak_rss_mib": max(x["peak_rss_mib"] for x in rs),
            "engine": rs[0]["engine"],
            "precision": rs[0]["precision"],
            "sizing": rs[0]["sizing"],
            "agreement_vs_unoptimised": agreement(ref, work / f"out-{name}-0") if ref.is_dir() else None,
        }
        for name, rs in runs.items()
    }
    result.update(runs=runs, table=table)
    shutil.rmtree(work, ignore_errors=True)
    return result


def markdown(result: dict) -> str:
    """The docs table of one checkpoint."""
    lines = [
        f"| variant | engine, precision | s ({result['images']} images) | images/s | vs naive | vs unoptimised | "
        "peak RSS MiB | masks identical to unoptimised | mean / min Dice vs unoptimised |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in result["table"].items():
        ag = t["agreement_vs_unoptimised"] or {}
        lines.append(
            f"| {name} | {t['engine']} {t['precision']} | {t['median_s']:.1f} | {t['images_per_s']:.1f} | "
            f"{t['vs_naive'] or 0:.2f}x | {t['vs_unoptimised'] or 0:.2f}x | {t['peak_rss_mib']:.0f} | "
            f"{ag.get('identical', '')}/{ag.get('masks', '')} | "
            f"{ag.get('mean_dice', 0):.4f} / {ag.get('min_dice', 0):.4f} |"
        )
    return "\n".join(lines)


def rss(a: argparse.Namespace) -> dict:
    from PIL import Image

    work = Path(tempfile.mkdtemp(prefix="segapp-rss-"))
    rng = np.random.default_rng(0)
    result = {"machine": machine(), "checkpoint": a.checkpoint, "runs": []}
    for n in (a.n // 5, a.n):
        inp = work / f"in{n}"
        inp.mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(inp / f"{i:05d}.png")
        argv = ["-c", WRAP, "segapp.cli.predict", "--checkpoint", a.checkpoint, "--input", str(inp), "--no-progress"]
        res = run_once(argv, work / f"out{n}")
        result["runs"].append({"images": n, **res})
        print(result["runs"][-1], flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return result


def naive_main(a: argparse.Namespace) -> None:
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in Path(a.input).iterdir() if p.suffix.lower() in (".jpg", ".png"))
    res = naive_loop(Path(a.checkpoint), files, out)
    (out / "naive.json").write_text(json.dumps(res))


ALL = ["naive", "unoptimised", "default", "engine_torch", "engine_onnx", "previous_default", "int8"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("speed", "rss", "naive"))
    p.add_argument("--checkpoint", required=True, help="a `segapp fit` checkpoint")
    p.add_argument("--images", default=str(KVASIR), help="folder of images (default: the 900 Kvasir images)")
    p.add_argument("--input", help="naive: the folder to predict")
    p.add_argument("--output", help="naive: the folder for masks")
    p.add_argument("--limit", type=int, default=900, help="first N images of the folder (sorted)")
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds (median reported)")
    p.add_argument("--variants", nargs="+", default=ALL, choices=ALL)
    p.add_argument("--ensembles", type=int, nargs="*", default=[3, 5], help="ensemble sizes to time")
    p.add_argument("--calibration-n", type=int, default=64, help="int8: Kvasir images outside the test split")
    p.add_argument("--n", type=int, default=1000, help="images for the rss run")
    p.add_argument("--out", default=str(REPO / "runs" / "bench"), help="folder for the JSON result")
    a = p.parse_args()
    if a.what == "naive":
        naive_main(a)
        return
    result = speed(a) if a.what == "speed" else rss(a)
    result["command"] = " ".join(sys.argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"predict_{a.what}_{Path(a.checkpoint).parent.parent.name}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    if a.what == "speed":
        print(markdown(result))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
