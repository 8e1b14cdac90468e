"""Run every (variant, seed) of a study, sequentially and resumably, and collect results.csv rows.

Run folders: ``OUT/runs/<variant>/seed<k>/`` (a normal ``segapp fit`` run folder). A finished run
writes ``DONE.json`` there (its results row, arguments and a digest of the base configs); reruns
skip those, and refuse to when the study changed since. A run folder without it (an interrupted
run) is deleted and trained again from scratch.
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
    refuse_changed_runs(study, base, out, list(extra or []), todo)
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


def configs_digest(base: list[str]) -> str:
    """SHA-256 of the base config files' contents (an edited file changes every run's settings)."""
    import hashlib

    h = hashlib.sha256()
    for c in base:
        h.update(Path(c).read_bytes() if Path(c).is_file() else str(c).encode())
    return h.hexdigest()


IGNORED_KEYS = ("trainer.default_root_dir", "data.num_workers", "trainer.enable_progress_bar", "config")
"""Arguments that do not change a run's result (the base configs count by their contents' digest)."""


def run_settings(args: list[str]) -> dict[str, str]:
    """``key -> value`` of a ``segapp fit`` argument list, in a form that does not depend on how it was
    typed (``--k=v`` or ``--k v``, a relative or absolute path), without :data:`IGNORED_KEYS`."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if not token.startswith("--"):
            continue
        key, eq, value = token[2:].partition("=")
        if not eq and i < len(args) and not args[i].startswith("--"):
            value, i = args[i], i + 1
        if key not in IGNORED_KEYS:
            out[key] = str(Path(value).resolve()) if value and Path(value).exists() else value
    return out


def refuse_changed_runs(
    study: Study, base: list[str], out: Path, extra: list[str], todo: list[tuple[Variant, int]]
) -> None:
    """Refuse a rerun whose finished runs were trained with other settings than this study's.

    A finished run is skipped on a rerun; after an edit of the study (a variant's value, the epoch
    budget, ``--data.root``, a base config, ``evaluate``) its old row used to be reported under
    the new settings. Checked for every run before any trains.

    Raises:
        UserError: naming the first changed run, what changed and the fix.
    """
    digest = configs_digest(base)
    for variant, seed in todo:
        root = run_dir(out, variant.name, seed)
        if not (root / DONE).is_file():
            continue
        done = json.loads((root / DONE).read_text())
        why = _changed(done, fit_command(study, variant, seed, base, extra, root), digest, study.evaluate)
        if why:
            raise UserError(
                f"{root} was trained with other settings than this study's ({why}), so its results would be "
                f"reported under the new ones; expected a rerun of the same study to resume it; fix: a new --out "
                f"for the changed study, or delete {root} to train that run again"
            )


def _changed(done: dict, args: list[str], digest: str, evaluate: bool) -> str | None:
    """What differs between a finished run's ``DONE.json`` and this study's run, or ``None``."""
    if done.get("args") is not None:
        old, new = run_settings(done["args"]), run_settings(args)
        differ = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if differ:
            return "; ".join(f"{k}={old.get(k, '(unset)')} then, {new.get(k, '(unset)')} now" for k in differ[:4])
    if done.get("configs_sha256") not in (None, digest):
        return "a base config file's contents changed"
    if evaluate and not set(EVAL_COLUMNS) <= set(done.get("row", {})):
        return "it was trained without evaluate: true"
    return None


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
        Path(tmp).write_text(json.dumps({"row": row, "args": args, "configs_sha256": configs_digest(base)}, indent=2))
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
