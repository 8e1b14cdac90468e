"""The budget planner against the hand-written SMP reference, side by side, on a fixed test split (issue 19).

    bench/auto_compare.sh kvasir 10 runs/auto_compare/kvasir_10m            # = the line below
    .venv/bin/python bench/auto_compare.py --dataset kvasir --budget 10 --out runs/auto_compare/kvasir_10m
    .venv/bin/python bench/auto_compare.py --dataset ultrasound --budget 10 --out runs/auto_compare/ultrasound_10m
    .venv/bin/python bench/auto_compare.py --dataset kvasir --budget 40 --out runs/auto_compare/kvasir_40m \\
        --recipe configs/quickstart.yaml --recipe configs/experiment/kvasir_effl0_320.yaml
    .venv/bin/python bench/auto_compare.py --dataset kvasir --budget 10 --out runs/auto_compare/kvasir_10m \\
        --recipe configs/quickstart.yaml --recipe configs/experiment/kvasir_effl0.yaml \\
        --recipe-args="--trainer.max_epochs 3"      # the 10-minute hand recipe of docs/benchmarks.md

(write ``--recipe-args=...`` with ``=``: its value starts with ``--``.)

``--dataset``: ``kvasir`` (the 800-pair pool and the 100 test images of bench/splits/kvasir_test.txt,
built by bench/trust_data.py from ``--kvasir``), a synthetic set of bench/splits/synthetic.json
(``ultrasound``, ``dermoscopy_large``, ``dermoscopy``: pool and test generated with different seeds,
the test pixels checked against the committed digest), or a pool folder/CSV with ``--test DIR``.

In sequence, never in parallel (each a separate process, one after the other):
(a) ``auto``: ``segapp fit --config configs/auto.yaml --data.root POOL --budget <B>`` (the planner);
(b) ``reference``: bench/reference_smp.py on the same pool, all of it, for the same minutes;
(c) ``recipe`` (with ``--recipe``): a hand-written segapp config on the pool, ``trainer.max_time`` = B;
then each model predicts the test images (segapp-predict with its default options on
``checkpoints/best.ckpt``; the reference's final weights via reference_smp.py --predict), segapp-eval
scores them at original resolution, and bench/auto_compare_report.py writes ``OUT/compare.md`` and
``OUT/compare.json``. Every step writes ``OUT/steps/<step>.json`` when it ends; a step whose record
says rc 0 is skipped on a rerun, so a killed measurement continues where it stopped (an unfinished
or failed step starts again from scratch). Logs: ``OUT/logs/<step>.log``.

The segapp training arms start with an empty segapp cache (``SEGAPP_CACHE_DIR=OUT/cache/<arm>``,
removed after the step) so that each pays the first reading of the images as a new user would;
``--warm-cache`` uses the user's cache instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SYNTHETIC = BENCH / "splits" / "synthetic.json"
sys.path.insert(0, str(BENCH))

import auto_compare_report  # noqa: E402


@dataclass(frozen=True)
class Data:
    """A comparison's data: the training pool (folder or CSV, with its layout) and the test folder."""

    name: str
    pool: str
    layout: str
    test: str


def log(msg: str) -> None:
    print(f"[auto_compare {time.strftime('%H:%M:%S', time.gmtime())}] {msg}", flush=True)


def write_json(path: Path, obj: dict) -> None:
    """Write ``obj`` atomically (a killed run never leaves half a record)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def pixel_digest(root: Path) -> str:
    """SHA-256 of the names and decoded pixels of ``root/images`` and ``root/masks`` (PNG-encoder independent)."""
    h = hashlib.sha256()
    for p in sorted(root.glob("*/*.png")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(np.asarray(Image.open(p)).tobytes())
    return h.hexdigest()


SUMMARY_TOLERANCE = 1e-3
"""Relative difference allowed in a test set's pixel sums. The ultrasound generator's pixels differ
between an AVX-512 and an AVX2-only CPU (floating-point maths rounding differently; the exact
source is not pinned down), which can move a pixel by a grey level or a boundary pixel; one lesion
drawn differently moves the mask sum by several times this."""


def pixel_summary(root: Path) -> dict[str, int]:
    """File count and pixel sums of ``root/images`` and ``root/masks`` (masks counted as foreground pixels)."""
    files = sorted(root.glob("*/*.png"))
    images = sum(int(np.asarray(Image.open(p), np.int64).sum()) for p in files if p.parent.name == "images")
    masks = sum(int((np.asarray(Image.open(p)) > 0).sum()) for p in files if p.parent.name == "masks")
    return {"files": len(files), "image_sum": images, "mask_pixels": masks}


def same_test_set(root: Path, spec: dict) -> tuple[bool, str]:
    """Whether ``root`` is the committed test set: its exact digest, or (on a CPU whose maths
    rounds differently) the same files with pixel sums within :data:`SUMMARY_TOLERANCE`."""
    digest, known = pixel_digest(root), spec["test_sha256"]
    known = [known] if isinstance(known, str) else known
    if digest in known:
        return True, ""
    got, want = pixel_summary(root), spec.get("test_summary")
    if not want:
        return (
            False,
            f"digest {digest[:12]} vs {', '.join(k[:12] for k in known)}; no test_summary to compare sums with",
        )
    ok = got["files"] == want["files"] and all(
        abs(got[k] - want[k]) <= SUMMARY_TOLERANCE * max(want[k], 1) for k in ("image_sum", "mask_pixels")
    )
    return ok, f"digest {digest[:12]} vs {', '.join(k[:12] for k in known)}; summary {got} vs {want}"


def synthetic_specs() -> dict:
    """The committed synthetic comparison sets: kind, size, pool and test seeds and sizes, test digest."""
    return json.loads(SYNTHETIC.read_text())["sets"]


def make_synthetic(name: str, out: Path) -> Data:
    """Generate the pool and the fixed test set of ``name``; refuse a test set unlike the committed one."""
    from segapp.data.synth import generate

    spec = synthetic_specs()[name]
    for part in ("pool", "test"):
        generate(out / part, n=spec[part]["n"], size=spec["size"], seed=spec[part]["seed"], kind=spec["kind"])
    ok, why = same_test_set(out / "test", spec)
    if not ok:
        sys.exit(f"{name}: the generated test set differs from {SYNTHETIC} ({why})")
    return Data(name, str(out / "pool"), "paired", str(out / "test"))


def make_kvasir(kvasir: Path, out: Path) -> Data:
    """The trust issue's fixed split: ``pool.csv`` (800 pairs) and ``test/`` (100 pairs, links)."""
    import trust_data

    trust_data.write_pool_and_test(kvasir.resolve(), out)
    return Data("kvasir", str(out / "pool.csv"), "csv", str(out / "test"))


def prepare(args: argparse.Namespace) -> Data:
    """The data step (resumable: ``OUT/data/data.json`` records what was made)."""
    marker = args.out / "data" / "data.json"
    if marker.is_file():
        return Data(**json.loads(marker.read_text()))
    out = args.out / "data"
    if args.dataset == "kvasir":
        data = make_kvasir(args.kvasir, out)
    elif args.dataset in synthetic_specs():
        data = make_synthetic(args.dataset, out)
    else:
        if not args.test:
            sys.exit(f"--dataset {args.dataset}: a pool folder or CSV needs --test DIR (images/ + masks/)")
        pool = Path(args.dataset).resolve()
        data = Data(pool.stem if pool.is_file() else pool.name, str(pool), args.layout, str(args.test.resolve()))
    write_json(marker, asdict(data))
    log(f"data: pool {data.pool} ({data.layout}), test {data.test}")
    return data


def run_step(out: Path, name: str, cmd: list[str], clear: tuple[Path, ...] = (), env: dict | None = None) -> dict:
    """Run ``cmd`` once (skipped when ``OUT/steps/<name>.json`` records rc 0); its wall time and rc.

    A step without a record (killed) or with a failed one is rerun after ``clear`` is removed.
    """
    marker = out / "steps" / f"{name}.json"
    if marker.is_file() and (done := json.loads(marker.read_text()))["rc"] == 0:
        log(f"{name}: done before, skipped ({marker})")
        return {**done, "skipped": True}
    for p in clear:
        shutil.rmtree(p, ignore_errors=True)
    logfile = out / "logs" / f"{name}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    log(f"{name}: {shlex.join(cmd)}  > {logfile}")
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.perf_counter()
    with open(logfile, "w") as fh:
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    rec = {"step": name, "rc": rc, "wall_s": round(time.perf_counter() - t0, 1), "started": started, "cmd": cmd}
    write_json(marker, rec)
    log(f"{name}: {'ok' if rc == 0 else f'FAILED (rc {rc}), see {logfile}'} in {rec['wall_s'] / 60:.1f} min")
    return rec


def tool(name: str) -> str:
    """A console script of this venv (``segapp``, ``segapp-predict``...), else the one on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def segapp_env(args: argparse.Namespace, arm: str) -> dict:
    """Offline hub, quiet albumentations, and (unless --warm-cache) a fresh segapp cache for ``arm``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    if not args.warm_cache:
        env["SEGAPP_CACHE_DIR"] = str((args.out / "cache" / arm).resolve())
    return env


def max_time(seconds: float) -> str:
    """Lightning's ``DD:HH:MM:SS``."""
    s = int(round(seconds))
    return f"{s // 86400:02d}:{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def seed_value(text: str) -> int:
    """``--seed``: an integer in 0 .. 2**32 - 1 (what torch and Lightning accept), else a clear refusal."""
    if not text.isdigit() or int(text) >= 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 4294967295, got {text!r}; fix: e.g. --seed 1")
    return int(text)


def seed_args(args: argparse.Namespace, flag: str) -> tuple[str, ...]:
    """``flag N`` when --seed was given; else nothing, so each arm keeps its own default (0, or its config's)."""
    return () if args.seed is None else (flag, str(args.seed))


def auto_cmd(args: argparse.Namespace, data: Data) -> list[str]:
    """The planner run, as docs/planner.md documents it, on the pool."""
    return [
        *(tool("segapp"), "fit", "--config", "configs/auto.yaml"),
        *("--data.root", data.pool, "--data.layout", data.layout),
        *("--budget", f"{int(round(args.budget * 60))}s"),
        *("--trainer.default_root_dir", str(args.out / "auto"), "--trainer.enable_progress_bar", "false"),
        *seed_args(args, "--seed_everything"),
        *shlex.split(args.auto_args),
    ]


def reference_cmd(args: argparse.Namespace, data: Data) -> list[str]:
    """bench/reference_smp.py on the whole pool for the budget; final weights saved."""
    ref = args.out / "reference"
    return [
        *(sys.executable, str(BENCH / "reference_smp.py"), "--root", data.pool, "--layout", data.layout, "--no-split"),
        *("--minutes", f"{args.budget:g}", "--precision", args.reference_precision, *seed_args(args, "--seed")),
        *("--save-weights", str(ref / "weights.pt"), "--out", str(ref / "train.json")),
    ]


def recipe_cmd(args: argparse.Namespace, data: Data) -> list[str]:
    """A hand-written segapp config on the pool, its wall-clock limit set to the budget."""
    configs = [x for c in args.recipe for x in ("--config", c)]
    return [
        *(tool("segapp"), "fit", *configs, "--data.root", data.pool, "--data.layout", data.layout),
        *("--trainer.default_root_dir", str(args.out / "recipe"), "--trainer.max_time", max_time(args.budget * 60)),
        *("--trainer.enable_progress_bar", "false", *seed_args(args, "--seed_everything")),
        *shlex.split(args.recipe_args),
    ]


def train(args: argparse.Namespace, data: Data, arm: str) -> dict:
    """Train one arm (resumable); a retrained arm's predictions and scores are redone."""
    if arm == "reference":
        rec = run_step(args.out, "train_reference", reference_cmd(args, data), (args.out / "reference",))
    else:
        cmd = auto_cmd(args, data) if arm == "auto" else recipe_cmd(args, data)
        rec = run_step(args.out, f"train_{arm}", cmd, (args.out / arm, args.out / "cache" / arm), segapp_env(args, arm))
        shutil.rmtree(args.out / "cache" / arm, ignore_errors=True)
    if not rec.get("skipped"):  # a new model: its old predictions and scores are stale
        for step in (f"predict_{arm}", f"eval_{arm}"):
            (args.out / "steps" / f"{step}.json").unlink(missing_ok=True)
    return rec


def checkpoint(run: Path) -> Path | None:
    """The checkpoint a user deploys (best), else the last one."""
    return next((p for p in (run / "checkpoints" / n for n in ("best.ckpt", "last.ckpt")) if p.is_file()), None)


def predict(args: argparse.Namespace, data: Data, arm: str) -> dict | None:
    """Predict the test images with one trained arm (masks at original size under ``OUT/pred/<arm>``)."""
    pred, images = args.out / "pred" / arm, str(Path(data.test) / "images")
    if arm == "reference":
        weights = args.out / "reference" / "weights.pt"
        if not weights.is_file():
            return None
        cmd = [sys.executable, str(BENCH / "reference_smp.py"), "--weights", str(weights), "--predict", images]
        cmd += ["--pred-out", str(pred), "--out", str(args.out / "reference" / "predict.json")]
        return run_step(args.out, "predict_reference", cmd, (pred,))
    ckpt = checkpoint(args.out / arm)
    if ckpt is None:
        return None
    cmd = [tool("segapp-predict"), "--checkpoint", str(ckpt), "--input", images, "--output", str(pred), "--no-progress"]
    return run_step(args.out, f"predict_{arm}", cmd, (pred,), {**os.environ, "HF_HUB_OFFLINE": "1"})


def evaluate(args: argparse.Namespace, data: Data, arm: str) -> dict:
    """segapp-eval of one arm's predictions against the test masks (``OUT/eval/<arm>/metrics.csv``)."""
    out = args.out / "eval" / arm
    cmd = [tool("segapp-eval"), "--pred", str(args.out / "pred" / arm), "--gt", data.test, "--out", str(out)]
    return run_step(args.out, f"eval_{arm}", cmd, (out,))


def arms(args: argparse.Namespace) -> list[str]:
    """The arms to run, in order: auto, reference, then the recipe when one is given."""
    chosen = [a for a in args.arms.split(",") if a]
    unknown = set(chosen) - set(auto_compare_report.ARMS)
    if unknown:
        sys.exit(f"--arms: unknown {sorted(unknown)}; expected some of {', '.join(auto_compare_report.ARMS)}")
    return [a for a in auto_compare_report.ARMS if a in chosen and (a != "recipe" or args.recipe)]


def default_precision() -> str:
    """bf16 autocast for the reference when the CPU has native bf16 (AMX or AVX512-BF16), else fp32.

    The planner may train in bf16 on such a CPU (it times both); the reference gets the same
    hardware advantage, so a difference between the arms is not a precision difference."""
    from segapp.machine import cpu_supports_bf16

    return "bf16" if cpu_supports_bf16() else "fp32"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="kvasir, a set of bench/splits/synthetic.json, or a pool")
    p.add_argument("--budget", type=float, required=True, help="training budget of every arm, in minutes")
    p.add_argument("--out", type=Path, required=True, help="output folder (rerun with the same one to resume)")
    p.add_argument("--test", type=Path, help="with a pool folder/CSV: the fixed test folder (images/ + masks/)")
    p.add_argument("--layout", default="auto", help="with a pool folder/CSV: its segapp layout (default auto)")
    p.add_argument("--kvasir", type=Path, default=ROOT.parent / "shared" / "data" / "kvasir-seg")
    p.add_argument("--arms", default="auto,reference,recipe", help="comma-separated subset (default: all)")
    p.add_argument("--recipe", action="append", default=[], help="config(s) of the recipe arm, in order")
    p.add_argument("--recipe-args", default="", help="extra arguments of the recipe's segapp fit (one string)")
    p.add_argument("--auto-args", default="", help="extra arguments of the planner's segapp fit (one string)")
    p.add_argument(
        "--reference-precision", choices=["fp32", "bf16"], default=None, help="default: bf16 with AMX or AVX512-BF16"
    )
    p.add_argument(
        "--seed", type=seed_value, default=None, help="every arm's training seed (seed_everything; reference --seed)"
    )
    p.add_argument("--warm-cache", action="store_true", help="segapp arms use the user's cache, not a fresh one")
    args = p.parse_args(argv)
    args.out = args.out.resolve()
    args.reference_precision = args.reference_precision or default_precision()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cpu = auto_compare_report.cpu_label()["label"]
    info = {"dataset": args.dataset, "budget_min": args.budget, "argv": sys.argv, "cpu": cpu}
    before = json.loads((args.out / "run.json").read_text()) if (args.out / "run.json").is_file() else info
    if (before["dataset"], before["budget_min"]) != (args.dataset, args.budget):
        sys.exit(f"{args.out} holds {before['dataset']} at {before['budget_min']:g} min; use another --out")
    write_json(args.out / "run.json", info)
    log(f"{args.dataset}, {args.budget:g} min per arm, {cpu} -> {args.out}")
    data = prepare(args)
    chosen = arms(args)
    for arm in chosen:
        train(args, data, arm)
    for arm in chosen:
        rec = predict(args, data, arm)
        if rec is None:
            log(f"{arm}: no trained model, not scored")
        elif rec["rc"] == 0:
            if not rec.get("skipped"):  # new predictions: score them again
                (args.out / "steps" / f"eval_{arm}.json").unlink(missing_ok=True)
            evaluate(args, data, arm)
    rep = auto_compare_report.write(args.out, args.budget, data.name)
    print(auto_compare_report.markdown(rep), flush=True)


if __name__ == "__main__":
    main()
