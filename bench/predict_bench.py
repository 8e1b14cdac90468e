"""Benchmark ``segapp-predict`` against a naive loop, ONNX Runtime against torch, and peak RSS.

Usage (results land in docs/benchmarks.md, section "Inference")::

    .venv/bin/python bench/predict_bench.py speed --limit 200 --repeats 2
    .venv/bin/python bench/predict_bench.py rss --n 1000

``speed`` times, in one process and alternating A B A B: the naive loop (one image at a time,
fp32, no workers, no channels_last: read, preprocess, forward, upsample, threshold, write),
``segapp-predict``'s pipeline (``predict_folder``: DataLoader workers, batches, channels_last,
``--precision``), and the same pipeline on the exported ONNX model. Each reports the time per
stage. Without ``--checkpoint`` it first trains a small scratch U-Net (depth 4, 16 base
channels) for 2 epochs at 256 px on synthetic data: speed, not quality.
``rss`` runs the CLI as a subprocess over N generated 128 px PNGs and reports its peak RSS
(and that of its worker processes) for N/5 and N images, to show memory stays flat.
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


def machine() -> dict:
    import torch

    from segapp.machine import cpu_model

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_avg_1m": os.getloadavg()[0],
    }


def make_checkpoint(work: Path) -> Path:
    """Train a small scratch U-Net for 2 epochs at 256 px on 64 synthetic pairs (a few minutes)."""
    from segapp.data.synth import generate

    root = generate(work / "synth", n=64, size=256, seed=0)
    cmd = [
        sys.executable,
        "-m",
        "segapp.cli.main",
        "fit",
        "--config",
        str(REPO / "configs" / "quickstart.yaml"),
        "--data.root",
        str(root),
        "--data.image_size",
        "256",
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "8",
        "--trainer.max_epochs",
        "2",
        "--trainer.default_root_dir",
        str(work / "run"),
        "--trainer.enable_progress_bar",
        "false",
    ]
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"})
    return work / "run" / "checkpoints" / "last.ckpt"


def naive_loop(ckpt: Path, files: list[Path], out: Path) -> dict:
    """One image at a time, fp32, no workers: the baseline."""
    import torch

    from segapp.inference import load_net
    from segapp.inference.postprocess import upsample
    from segapp.io import preprocess, read_image, write_mask_png

    net, spec, threshold, _ = load_net(ckpt)
    stages: dict[str, float] = defaultdict(float)
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
            ("postprocess", t3, t4),
            ("write", t4, t5),
        ):
            stages[k] += b - a
    return {"seconds": time.perf_counter() - t_start, "stages_s": dict(stages)}


def pipeline(engine, files_dir: Path, out: Path, workers: int, batch: int) -> dict:
    from segapp.inference import FolderOptions, Predictor, predict_folder

    predictor = Predictor(engine, batch_size=batch)
    t0 = time.perf_counter()
    summary = predict_folder(predictor, files_dir, out, FolderOptions(workers=workers))
    seconds = time.perf_counter() - t0
    if summary.failed:
        raise RuntimeError(f"{summary.failed} images failed in the benchmark")
    return {"seconds": seconds, "stages_s": dict(summary.stages), "describe": engine.describe()}


def agreement(a_dir: Path, b_dir: Path) -> dict:
    """Pixel agreement and mean Dice (segapp.eval's, 1.0 when both are empty) between two folders of masks."""
    from segapp.eval.metrics import overlap_scores
    from segapp.io import read_mask

    dices, agree = [], []
    for p in sorted(a_dir.glob("*.mask.png")):
        a, b = read_mask(p), read_mask(b_dir / p.name)
        agree.append(float((a == b).mean()))
        dices.append(overlap_scores(a, b)["dice"])
    return {
        "pixel_agreement": float(np.mean(agree)),
        "mean_dice": float(np.mean(dices)),
        "min_dice": float(np.min(dices)),
    }


def speed(args: argparse.Namespace) -> dict:
    from segapp.inference.engines import OnnxEngine, TorchEngine
    from segapp.inference.export import export_model

    work = Path(tempfile.mkdtemp(prefix="segapp-bench-"))
    ckpt = Path(args.checkpoint) if args.checkpoint else make_checkpoint(work)
    onnx_path = export_model(ckpt, work / "model.onnx")
    files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".jpg", ".png"))[: args.limit]
    subset = work / "images"
    subset.mkdir()
    for f in files:
        os.symlink(f, subset / f.name)
    torch_engine = TorchEngine.from_checkpoint(ckpt, device="cpu", precision=args.precision)
    onnx_engine = OnnxEngine(onnx_path, device="cpu")
    runs: dict[str, list[dict]] = defaultdict(list)
    for r in range(args.repeats):  # A B C A B C: interleaved against machine noise
        for name, fn in (
            ("naive", lambda o: naive_loop(ckpt, files, o)),
            ("segapp-predict", lambda o: pipeline(torch_engine, subset, o, args.workers, args.batch_size)),
            ("segapp-predict-onnx", lambda o: pipeline(onnx_engine, subset, o, args.workers, args.batch_size)),
        ):
            out = work / f"out-{name}-{r}"
            out.mkdir()
            res = fn(out)
            res["images_per_s"] = len(files) / res["seconds"]
            runs[name].append(res)
            print(f"{name} run {r}: {res['seconds']:.1f} s ({res['images_per_s']:.2f} img/s)", flush=True)
    med = {k: statistics.median(x["seconds"] for x in v) for k, v in runs.items()}
    result = {
        "machine": machine(),
        "images": len(files),
        "checkpoint": str(ckpt),
        "workers": args.workers,
        "batch_size": args.batch_size,
        "precision": torch_engine.precision,
        "runs": runs,
        "median_s": med,
        "speedup_vs_naive": med["naive"] / med["segapp-predict"],
        "onnx_speedup_vs_naive": med["naive"] / med["segapp-predict-onnx"],
        "agreement_torch_vs_naive": agreement(work / "out-naive-0", work / "out-segapp-predict-0"),
        "agreement_onnx_vs_torch": agreement(work / "out-segapp-predict-0", work / "out-segapp-predict-onnx-0"),
    }
    if args.bf16_check:
        bf = TorchEngine.from_checkpoint(ckpt, device="cpu", precision="bf16")
        pipeline(bf, subset, work / "out-bf16", args.workers, args.batch_size)
        fp = TorchEngine.from_checkpoint(ckpt, device="cpu", precision="fp32")
        pipeline(fp, subset, work / "out-fp32", args.workers, args.batch_size)
        result["agreement_bf16_vs_fp32"] = agreement(work / "out-fp32", work / "out-bf16")
    shutil.rmtree(work, ignore_errors=True)
    return result


def rss(args: argparse.Namespace) -> dict:
    from PIL import Image

    work = Path(tempfile.mkdtemp(prefix="segapp-rss-"))
    ckpt = Path(args.checkpoint) if args.checkpoint else make_checkpoint(work)
    rng = np.random.default_rng(0)
    result = {"machine": machine(), "checkpoint": str(ckpt), "runs": []}
    for n in (args.n // 5, args.n):
        inp = work / f"in{n}"
        inp.mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(inp / f"{i:05d}.png")
        code = (
            "import resource, runpy, sys; sys.argv = ['segapp-predict'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('segapp.cli.predict', run_name='__main__')\nexcept SystemExit as e:\n"
            "    s = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; c = "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
            "    print(f'PEAK_RSS_KB {s} {c}'); raise"
        )
        cmd = [
            sys.executable,
            "-c",
            code,
            "--checkpoint",
            str(ckpt),
            "--input",
            str(inp),
            "--output",
            str(work / f"out{n}"),
            "--workers",
            str(args.workers),
            "--batch-size",
            str(args.batch_size),
            "--no-progress",
        ]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True)
        line = next(ln for ln in res.stdout.splitlines() if ln.startswith("PEAK_RSS_KB"))
        main_kb, child_kb = (int(v) for v in line.split()[1:])
        result["runs"].append(
            {
                "images": n,
                "exit_code": res.returncode,
                "seconds": time.perf_counter() - t0,
                "peak_rss_main_mib": main_kb / 1024,
                "peak_rss_worker_mib": child_kb / 1024,
            }
        )
        print(result["runs"][-1], flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("speed", "rss"))
    p.add_argument("--checkpoint", help="checkpoint to use (default: train a small one first)")
    p.add_argument("--images", default=str(KVASIR), help="folder of images (default: the 900 Kvasir images)")
    p.add_argument("--limit", type=int, default=900, help="first N images of the folder (sorted)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--precision", default="auto")
    p.add_argument("--bf16-check", action="store_true", help="also compare bf16 and fp32 masks")
    p.add_argument("--n", type=int, default=1000, help="images for the rss run")
    p.add_argument("--out", default=str(REPO / "runs" / "bench"), help="folder for the JSON result")
    args = p.parse_args()
    result = speed(args) if args.what == "speed" else rss(args)
    result["command"] = " ".join(sys.argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"predict_{args.what}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
