"""Summarise a bench/kvasir_trust.sh run: the numbers of docs/benchmarks.md's "Trust" section.

    python bench/trust_report.py runs/trust --folds 3

Reads OUT/pred/<name>/ (segapp-predict outputs with .prob.npy), OUT/eval/<name>/ (segapp-eval
--probs), the test masks in OUT/data/test/masks and each member's temperature, and prints a
Markdown summary (also OUT/trust_summary.json):

- ensemble vs each member: mean per-image Dice on the test split, paired bootstrap CI;
- failure detection (Dice < 0.8): AUROC of 1 - est_dice, of uncertainty, of 1 - agreement
  (ensemble), and Spearman's rho of est_dice vs Dice;
- out of distribution: AUROC of ood_score, test split vs each foreign kind, and the share of
  test scans over the threshold (ood_score > 1) or flagged for any reason;
- calibration: pixel ECE of the uncalibrated and the calibrated probabilities;
- cost: seconds per image (run.json, without start-up) and wall seconds (with it).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.stats import spearmanr

from segapp.eval.calibration import ReliabilityBins, auroc
from segapp.eval.stats import paired_compare
from segapp.machine import cpu_flags, cpu_model

FOREIGN = ("synthetic", "photo", "ultrasound", "blank", "noise")
FAIL = 0.8


def csv_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as fh:
        return {r["input"]: r for r in csv.DictReader(fh)}


def dice_of(eval_dir: Path) -> dict[str, float]:
    """Per-image Dice from segapp-eval's metrics.csv, keyed by image stem."""
    with open(eval_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    key = next(iter(rows[0]))
    return {Path(r[key]).stem.split(".")[0]: float(r["dice"]) for r in rows}


def col(rows: dict[str, dict[str, str]], name: str) -> dict[str, float]:
    return {Path(k).stem: float(v[name]) for k, v in rows.items() if v.get(name) not in (None, "")}


def logit(q: np.ndarray) -> np.ndarray:
    q = np.clip(q.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(q / (1 - q))


def ece_pair(out: Path, members: list[str], temps: list[float]) -> dict[str, float]:
    """Pixel ECE of each member (uncalibrated vs calibrated) and of the ensemble, on the test split."""
    masks = sorted((out / "data" / "test" / "masks").glob("*.jpg"))
    bins = {k: ReliabilityBins() for k in ("member0_raw", "member0_cal", "ensemble_raw", "ensemble_cal")}
    for m in masks:
        gt = np.asarray(Image.open(m).convert("L")) > 127
        raws = []
        for name, t in zip(members, temps, strict=True):
            q = np.load(out / "pred" / name / f"{m.name}.prob.npy")
            raws.append(1 / (1 + np.exp(-t * logit(q))))  # undo the member's own temperature (no TTA)
        ens_cal = np.load(out / "pred" / "test_ensemble" / f"{m.name}.prob.npy")
        bins["member0_raw"].update(raws[0], gt)
        bins["member0_cal"].update(np.load(out / "pred" / members[0] / f"{m.name}.prob.npy"), gt)
        bins["ensemble_raw"].update(np.mean(raws, axis=0), gt)
        bins["ensemble_cal"].update(ens_cal, gt)
        del ens_cal, raws
    return {k: round(b.result()["ece"], 4) for k, b in bins.items()}


def failure_detection(rows: dict[str, dict[str, str]], dice: dict[str, float]) -> dict[str, float]:
    keys = sorted(set(dice) & {Path(k).stem for k in rows})
    d = np.array([dice[k] for k in keys])
    fail = d < FAIL
    out: dict[str, float] = {"images": len(keys), "failures": int(fail.sum())}
    for name, sign in (("est_dice", -1), ("uncertainty", 1), ("agreement", -1)):
        c = col(rows, name)
        if len(c) < len(keys):
            continue
        s = np.array([c[k] for k in keys])
        out[f"auroc_{name}"] = round(auroc(sign * s, fail), 4)
        out[f"spearman_{name}_vs_dice"] = round(float(spearmanr(s, d).statistic), 4)
    return out


def ood(out: Path, model: str) -> dict[str, float]:
    inside = csv_rows(out / "pred" / f"test_{model}" / "predictions.csv")
    s_in = np.array([float(r["ood_score"]) for r in inside.values()])
    flagged_in = np.mean([r["review"] == "yes" for r in inside.values()])
    res: dict[str, float] = {
        "test_over_threshold": round(float(np.mean(s_in > 1)), 4),
        "test_flagged_any_reason": round(float(flagged_in), 4),
    }
    all_out = []
    for kind in FOREIGN:
        rows = csv_rows(out / "pred" / f"foreign_{kind}_{model}" / "predictions.csv")
        s_out = np.array([float(r["ood_score"]) for r in rows.values() if r["status"] == "ok"])
        all_out.append(s_out)
        y = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
        res[f"auroc_{kind}"] = round(auroc(np.r_[s_in, s_out], y.astype(bool)), 4)
        res[f"{kind}_over_threshold"] = round(float(np.mean(s_out > 1)), 4)
        res[f"{kind}_flagged_any_reason"] = round(float(np.mean([r["review"] == "yes" for r in rows.values()])), 4)
    s_all = np.concatenate(all_out)
    y = np.r_[np.zeros(len(s_in)), np.ones(len(s_all))].astype(bool)
    res["auroc_all_foreign"] = round(auroc(np.r_[s_in, s_all], y), 4)
    return res


def cost(out: Path, name: str, walls: dict[str, float]) -> dict[str, float]:
    run = json.loads((out / "pred" / name / "run.json").read_text())
    n = max(run["summary"]["images"], 1)
    return {
        "images": n,
        "s_per_image": round(run["summary"]["seconds"] / n, 4),
        "wall_s_per_image": round(walls.get(name, math.nan) / n, 4),
        "forward_s": round(run["stages_s"].get("forward", 0.0), 2),
        "postprocess_s": round(run["stages_s"].get("postprocess", 0.0), 2),
        "write_s": round(run["stages_s"].get("write", 0.0), 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description="summarise bench/kvasir_trust.sh")
    p.add_argument("out", type=Path)
    p.add_argument("--folds", type=int, default=3)
    a = p.parse_args()
    out = a.out
    members = [f"test_member{k}" for k in range(a.folds)]
    ckpts = [out / "cv" / f"fold_{k}" / "checkpoints" / "best.ckpt" for k in range(a.folds)]
    temps = [float(torch.load(c, weights_only=True)["segapp"]["trust"]["temperature"]) for c in ckpts]
    record = json.loads((out / "cv" / "ensemble.json").read_text())
    dice = {n: dice_of(out / "eval" / n) for n in [*members, "test_ensemble"]}
    walls = dict(
        (ln.split()[0], float(ln.split()[1])) for ln in (out / "pred" / "wall_seconds.txt").read_text().splitlines()
    )
    summary = {
        "machine": {"cpu": cpu_model(), "avx512_bf16": "avx512_bf16" in cpu_flags(), "amx": "amx_bf16" in cpu_flags()},
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "member_temperatures": temps,
        "ensemble": {k: record[k] for k in ("threshold", "member_thresholds", "oof")}
        | {"temperature": record["trust"]["temperature"]},
        "dice_mean": {n: round(float(np.mean(list(d.values()))), 4) for n, d in dice.items()},
        "ensemble_vs_member": {m: paired_compare(dice[m], dice["test_ensemble"]) for m in members},
        "failure_detection": {
            "member0": failure_detection(csv_rows(out / "pred" / members[0] / "predictions.csv"), dice[members[0]]),
            "ensemble": failure_detection(
                csv_rows(out / "pred" / "test_ensemble" / "predictions.csv"), dice["test_ensemble"]
            ),
        },
        "ood": {"member0": ood(out, "member0"), "ensemble": ood(out, "ensemble")},
        "ece": ece_pair(out, members, temps),
        "cost": {n: cost(out, n, walls) for n in (members[0], "test_ensemble")},
    }
    (out / "trust_summary.json").write_text(json.dumps(summary, indent=2, default=float))
    print(markdown(summary))


def markdown(s: dict) -> str:
    m = s["machine"]
    lines = [
        f"Machine: {m['cpu']} (AVX512-BF16: {m['avx512_bf16']}, AMX: {m['amx']}), {s['date']}",
        "",
        "| model | mean test Dice | ensemble - model (95 % CI) |",
        "|---|---:|---|",
    ]
    for name, cmp in s["ensemble_vs_member"].items():
        lo, hi = cmp["mean_diff_ci"]
        lines.append(f"| {name} | {s['dice_mean'][name]:.4f} | {cmp['mean_diff']:+.4f} [{lo:+.4f}, {hi:+.4f}] |")
    lines.append(f"| ensemble | {s['dice_mean']['test_ensemble']:.4f} | |")
    lines += [
        "",
        "| failure detection (Dice < 0.8) | images | failures | AUROC 1-est_dice | AUROC uncertainty |"
        " AUROC 1-agreement | Spearman est_dice vs Dice |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in s["failure_detection"].items():
        lines.append(
            f"| {name} | {f['images']} | {f['failures']} | {f.get('auroc_est_dice', math.nan):.3f} | "
            f"{f.get('auroc_uncertainty', math.nan):.3f} | {f.get('auroc_agreement', math.nan):.3f} | "
            f"{f.get('spearman_est_dice_vs_dice', math.nan):.3f} |"
        )
    lines += [
        "",
        "| OOD (ood_score) | " + " | ".join(FOREIGN) + " | all | test > 1 | test flagged |",
        "|---|" + "---:|" * (len(FOREIGN) + 3),
    ]
    for name, o in s["ood"].items():
        aucs = " | ".join(f"{o[f'auroc_{k}']:.3f}" for k in FOREIGN)
        lines.append(
            f"| {name} | {aucs} | {o['auroc_all_foreign']:.3f} | {o['test_over_threshold']:.1%} | "
            f"{o['test_flagged_any_reason']:.1%} |"
        )
    e = s["ece"]
    lines += [
        "",
        f"ECE (pixel, 15 bins) member 0: {e['member0_raw']:.4f} -> {e['member0_cal']:.4f} calibrated; "
        f"ensemble: {e['ensemble_raw']:.4f} -> {e['ensemble_cal']:.4f}",
        "",
        "| cost | images | s/image (run) | s/image (wall, with start-up) |",
        "|---|---:|---:|---:|",
    ]
    for name, c in s["cost"].items():
        lines.append(f"| {name} | {c['images']} | {c['s_per_image']:.4f} | {c['wall_s_per_image']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
