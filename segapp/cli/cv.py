"""``segapp-cv``: k-fold cross-validation from one config, and the fold ensemble it leaves.

Trains every fold with ``segapp fit`` (same config, ``--data.num_folds K --data.fold k``, run
folder ``OUT/fold_k``) and writes ``OUT/cv_summary.md`` and ``OUT/cv_summary.json`` with the
best validation Dice per fold and mean +- std. When every fold was trained it also writes
``OUT/ensemble.json``: the members, and the ensemble's threshold and temperature fitted on the
pooled out-of-fold predictions, so ``segapp-predict --checkpoint OUT`` predicts with the
ensemble. Arguments it does not know go to ``segapp fit``::

    segapp-cv --num-folds 5 --out runs/cv_kvasir --config configs/quickstart.yaml --data configs/data/kvasir.yaml
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable
from pathlib import Path

from segapp.cli.errors import fail, run_console
from segapp.cli.parsing import console_parser
from segapp.io import atomic_write


def _best_dice(run) -> float:
    """Best monitored validation Dice of a finished ``segapp fit`` run."""
    ckpt = run.trainer.checkpoint_callback
    score = getattr(ckpt, "best_model_score", None) if ckpt is not None else None
    if score is None:
        score = run.trainer.callback_metrics.get("val/dice")
    if score is None:
        raise RuntimeError(
            "the fold finished without a val/dice value; check that validation runs (trainer.limit_val_batches > 0)"
        )
    return float(score)


def run_folds(
    fit_args: list[str], num_folds: int, out: Path, folds: list[int] | None = None, oof: list | None = None
) -> list[dict]:
    """Train the given folds (default: all) and return one row per fold; ``oof`` collects each
    fold's out-of-fold logits when given."""
    from segapp.app import cli
    from segapp.lit.calibrate import out_of_fold

    rows = []
    for k in folds if folds is not None else range(num_folds):
        run_dir = out / f"fold_{k}"
        run = cli(
            [
                "fit",
                *fit_args,
                "--data.num_folds",
                str(num_folds),
                "--data.fold",
                str(k),
                "--trainer.default_root_dir",
                str(run_dir),
            ]
        )
        splits = run.datamodule.splits
        best = run_dir / "checkpoints" / "best.ckpt"
        if oof is not None and best.is_file():
            oof.append(out_of_fold(best, run.datamodule))
        rows.append(
            {
                "fold": k,
                "val_dice": _best_dice(run),
                "train": len(splits["train"]),
                "val": len(splits["val"]),
                "run_dir": str(run_dir),
                "checkpoint": str(best.relative_to(out)) if best.is_file() else None,
            }
        )
    return rows


def write_ensemble(out: Path, rows: list[dict], oof: list) -> dict:
    """``OUT/ensemble.json``: members, member thresholds, and the out-of-fold ensemble settings."""
    import torch

    from segapp.lit.calibrate import fit_ensemble

    metas = [torch.load(out / r["checkpoint"], map_location="cpu", weights_only=True)["segapp"] for r in rows]
    from segapp.inference.checkpoint import file_sha256

    record = {
        "members": [r["checkpoint"] for r in rows],
        "member_sha256": [file_sha256(out / r["checkpoint"]) for r in rows],
        "member_thresholds": [float(m["threshold"]) for m in metas],
        **fit_ensemble(oof, [m.get("trust") for m in metas]),
    }
    with atomic_write(out / "ensemble.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    return record


def summarize(rows: list[dict]) -> dict:
    """Mean and sample standard deviation (0 for one fold) of the per-fold Dice."""
    dice = [r["val_dice"] for r in rows]
    return {
        "folds": rows,
        "mean_val_dice": statistics.fmean(dice),
        "std_val_dice": statistics.stdev(dice) if len(dice) > 1 else 0.0,
    }


def format_table(summary: dict, command: str) -> str:
    """Markdown table of the per-fold results and the mean +- std row."""
    lines = [
        "# Cross-validation summary",
        "",
        f"Command: `{command}`",
        "",
        "| fold | train pairs | val pairs | best val Dice | run folder |",
        "|---:|---:|---:|---:|---|",
    ]
    for r in summary["folds"]:
        lines.append(f"| {r['fold']} | {r['train']} | {r['val']} | {r['val_dice']:.4f} | {r['run_dir']} |")
    lines.append(f"| mean +- std | | | {summary['mean_val_dice']:.4f} +- {summary['std_val_dice']:.4f} | |")
    return "\n".join(lines) + "\n"


def _refuse_trained_folds(out: Path, folds: Iterable[int]) -> None:
    """Refuse (before any training) to train folds whose folders hold checkpoints: each fold's
    ``segapp fit`` would refuse it anyway, after the earlier folds trained, with a fix that does
    not apply here (segapp-cv sets each fold's run folder)."""
    trained = [f"fold_{k}" for k in folds if any((out / f"fold_{k}" / "checkpoints").glob("*.ckpt"))]
    if trained:
        fail(
            "segapp-cv",
            f"--out {out}: expected a new folder (or one without the folds to train), got one holding trained "
            f"{', '.join(trained)}; fix: another --out, train the other folds with --folds, or move it away",
        )


def build_parser() -> argparse.ArgumentParser:
    p = console_parser("segapp-cv", __doc__, pass_through=True)
    p.add_argument("--num-folds", type=int, default=5, help="number of folds K (default 5)")
    p.add_argument("--folds", default=None, help="comma-separated subset of folds to train, e.g. 0,1 (default: all)")
    p.add_argument("--out", default="runs/cv", help="output folder: fold_k/ run folders and cv_summary.{md,json}")
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args, fit_args = build_parser().parse_known_args(argv)
    if args.num_folds < 2:
        fail("segapp-cv", f"--num-folds: expected at least 2, got {args.num_folds}")
    folds = [int(f) for f in args.folds.split(",")] if args.folds else None
    out = Path(args.out)
    _refuse_trained_folds(out, folds if folds is not None else range(args.num_folds))
    oof: list = []
    summary = run_console("segapp-cv", lambda: summarize(run_folds(fit_args, args.num_folds, out, folds, oof)))
    if folds is None and all(r.get("checkpoint") for r in summary["folds"]):
        record = run_console("segapp-cv", lambda: write_ensemble(out, summary["folds"], oof))
        print(
            f"ensemble of {len(record['members'])} folds: threshold {record['threshold']}, temperature "
            f"{record['trust']['temperature']:.3f} (out-of-fold Dice {record['oof']['dice_at_threshold']:.4f}); "
            f"predict with `segapp-predict --checkpoint {out} ...`"
        )
    table = format_table(summary, "segapp-cv " + " ".join(argv))
    with atomic_write(out / "cv_summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    with atomic_write(out / "cv_summary.md") as tmp:
        tmp.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
