"""Run every (variant, seed) of a study, sequentially and resumably, and collect results.csv rows.

Run folders: ``OUT/runs/<variant>/seed<k>/`` (a normal ``segapp fit`` run folder). A finished run
writes ``DONE.json`` there (its results row); reruns skip those. A run folder without it (an
interrupted run) is deleted and trained again from scratch.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path
from typing import Any

from segapp.ablation.metrics import (
    EVAL_COLUMNS,
    EVAL_COUNTS,
    RUN_COLUMNS,
    eval_numbers,
    fit_metrics_csv,
    read_epochs,
    summarize_run,
)
from segapp.ablation.study import Study, Variant, cli_args
from segapp.app import bare_argv
from segapp.errors import UserError
from segapp.io import atomic_write

DONE = "DONE.json"


def run_dir(out: Path, variant: str, seed: int) -> Path:
    """Run folder of one (variant, seed)."""
    return out / "runs" / variant / f"seed{seed}"


def fit_command(study: Study, variant: Variant, seed: int, base: list[str], extra: list[str], root: Path) -> list[str]:
    """The ``segapp fit`` arguments of one run (``cli(args)`` form, without the program name)."""
    configs = [a for c in base for a in ("--config", str(c))]
    return [
        "fit",
        *configs,
        *cli_args(study.run_overrides(variant)),
        *extra,
        "--trainer.default_root_dir",
        str(root),
        "--seed_everything",
        str(seed),
    ]


def _train_one(args: list[str], root: Path, target: float | None, evaluate: bool) -> dict[str, Any]:
    from segapp.app import cli

    if root.exists():
        shutil.rmtree(root)  # an interrupted run: start it over
    with bare_argv():
        t0 = time.perf_counter()
        cli(args)
        wall = time.perf_counter() - t0
    row = summarize_run(read_epochs(fit_metrics_csv(root)), target, wall)
    if evaluate:
        row.update(_evaluate(args, root))
    return row


def _evaluate(fit_args: list[str], root: Path) -> dict[str, float]:
    """``segapp validate`` of best.ckpt with the evaluation report (no logger: report in ``root/val_report``)."""
    from segapp.app import cli

    args = [
        "validate",
        *fit_args[1:],
        "--ckpt_path",
        str(root / "checkpoints" / "best.ckpt"),
        "--trainer.logger=false",
        "--trainer.callbacks+=segapp.lit.report_callback.EvalReport",
        "--trainer.callbacks.split=val",
    ]
    with bare_argv():
        cli(args)
    return eval_numbers(root / "val_report" / "summary.json")


def run_study(
    study: Study, base: list[str], out: Path, extra: list[str] | None = None, log=print
) -> list[dict[str, Any]]:
    """Train what is not done yet; return one row per (variant, seed), finished ones included.

    Args:
        study: The expanded study (validate it first with :func:`validate_study`).
        base: Base config files (``--config`` each, in order).
        out: Study output folder.
        extra: More ``segapp fit`` arguments for every run (e.g. ``--data.root X``).
        log: Progress printer.
    """
    rows = []
    todo = [(v, s) for v in study.variants for s in study.seeds]
    for i, (variant, seed) in enumerate(todo, 1):
        root = run_dir(out, variant.name, seed)
        done = root / DONE
        if done.is_file():
            row = json.loads(done.read_text())["row"]
            log(f"[{i}/{len(todo)}] {variant.name} seed {seed}: done before, skipped")
        else:
            log(f"[{i}/{len(todo)}] {variant.name} seed {seed}: training in {root}")
            row = _run_arm(study, variant, seed, base, list(extra or []), root, log)
        rows.append(row)
        write_results(rows, out / "results.csv", study.evaluate)
    return rows


def _run_arm(
    study: Study, variant: Variant, seed: int, base: list[str], extra: list[str], root: Path, log
) -> dict[str, Any]:
    """Train one arm; a user error (a setting or the data) becomes the arm's ``error`` row and the
    study goes on (it used to end the study with a traceback, the later arms never run, no report)."""
    args = fit_command(study, variant, seed, base, extra, root)
    try:
        row = {"variant": variant.name, "seed": seed, **_train_one(args, root, study.target_dice, study.evaluate)}
    except UserError as e:
        log(f"  {variant.name} seed {seed}: FAILED ({type(e).__name__}): {e}")
        return {"variant": variant.name, "seed": seed, "error": f"{type(e).__name__}: {e}"}
    with atomic_write(root / DONE) as tmp:
        Path(tmp).write_text(json.dumps({"row": row, "args": args}, indent=2))
    return row


def write_results(rows: list[dict[str, Any]], path: Path, evaluate: bool = False) -> None:
    """``results.csv``: variant, seed, :data:`RUN_COLUMNS` (and :data:`EVAL_COLUMNS` with ``evaluate``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        evals = [*EVAL_COLUMNS, *EVAL_COUNTS] if evaluate else []
        w = csv.DictWriter(f, fieldnames=["variant", "seed", *RUN_COLUMNS, *evals, "error"])
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items() if k in w.fieldnames})
