"""The record of the resolved options that decide a folder run's masks, and the check against it.

A run writes ``.segapp-predict.options.json`` into its output folder before its first output.
``--resume`` (and, later, merging shards) calls :func:`check_same_run`: outputs made with
another model, threshold, TTA, ... are never mixed into one folder without saying so. Options
join the record as plain keys of :func:`mask_record`, so later options (ensembles, new size
limits) only add a key; a new ``max_*`` field of ``FolderOptions`` joins it by itself.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from segapp.io import atomic_write

RECORD = ".segapp-predict.options.json"
RECORD_VERSION = 1


class RunMismatchError(ValueError):
    """The output folder holds outputs of a run with other options (message lists each one)."""


def model_identity(predictor: Any, info: dict[str, Any]) -> str:
    """SHA-256 of the model file when the caller knows it, else a digest of the weights (torch)
    or of the model's embedded metadata (ONNX), so API runs are checked too."""
    if info.get("model_sha256"):
        return str(info["model_sha256"])
    engine = predictor.engine
    digest = hashlib.sha256()
    net = getattr(engine, "net", None)
    if net is not None:
        for key, tensor in net.state_dict().items():
            digest.update(key.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
        return "weights:" + digest.hexdigest()
    digest.update(json.dumps(getattr(engine, "meta", {}), sort_keys=True, default=str).encode())
    return "meta:" + digest.hexdigest()


def size_limits(options: Any) -> dict[str, int]:
    """The reader size limits in force (``FolderOptions.max_pixels``, ``max_file_pixels``, and any
    ``max_*`` limit added later): over them an input is an error row, so they belong to the record."""
    fields = getattr(options, "__dataclass_fields__", {})
    return {k: int(getattr(options, k)) for k in fields if k.startswith("max_") and getattr(options, k) is not None}


def mask_record(predictor: Any, options: Any, input_dir: Path, info: dict[str, Any]) -> dict[str, Any]:
    """The resolved options that change a mask or the set of outputs, as one flat dict.

    Args:
        predictor: The :class:`~segapp.inference.predictor.Predictor` (threshold resolved).
        options: The :class:`~segapp.inference.folder.FolderOptions`.
        input_dir: The resolved input folder (journal entries are relative to it).
        info: Caller's extras; ``model_sha256`` names the model file's hash, ``ensemble`` (a
            list of hashes) joins the record as given.
    """
    engine = predictor.engine.describe()
    record: dict[str, Any] = {
        "record_version": RECORD_VERSION,
        "input": str(input_dir),
        "model": model_identity(predictor, info),
        "engine": engine.get("engine"),
        "precision": engine.get("precision"),
        "threshold": float(predictor.threshold),
        "tta": predictor.tta,
        "mode": predictor.mode,
        "overlap": float(predictor.overlap) if predictor.mode == "tile" else None,
        "keep_largest": bool(predictor.keep_largest),
        "min_size": int(predictor.min_size),
        "nifti_axis": int(options.nifti_axis),
        "save_probs": options.save_probs,
        "overlay": bool(options.overlay),
        "save_uncertainty": bool(getattr(options, "save_uncertainty", False)),
        "review": bool(getattr(options, "review", True)),
        **size_limits(options),
    }
    for key in ("ensemble",):  # joins the record when an ensemble run passes its members' hashes
        if info.get(key) is not None:
            record[key] = info[key]
    return record


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``["threshold 0.5 -> 0.7", ...]`` for every key whose value differs (missing = None)."""
    keys = [k for k in dict.fromkeys([*old, *new]) if k != "record_version"]
    return [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def check_same_run(old: dict[str, Any] | None, new: dict[str, Any], folder: Path, what: str = "--resume") -> None:
    """Refuse to mix outputs of two runs with different options into one folder.

    The one check for ``--resume`` and for merging shards.

    Raises:
        RunMismatchError: naming each option that differs (old -> new) and the fix.
    """
    if old is None:
        raise RunMismatchError(
            f"{what}: {folder} holds outputs of a run that recorded no options ({RECORD} "
            "missing), so they may come from another model; fix: pass --overwrite to start "
            "over, or use another --output"
        )
    diff = differences(old, new)
    if diff:
        raise RunMismatchError(
            f"{what}: the outputs in {folder} were made with other options: {'; '.join(diff)}; "
            "fix: rerun with the same options, pass --overwrite to start over, or use another --output"
        )


def read_record(folder: Path) -> dict[str, Any] | None:
    """The record in ``folder``, or None when there is none (or it is unreadable)."""
    try:
        record = json.loads((folder / RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def write_record(folder: Path, record: dict[str, Any]) -> None:
    """Write the record atomically (before the run's first output)."""
    with atomic_write(folder / RECORD, suffix=".json") as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str))


def _previous_run(folder: Path) -> bool:
    """Whether ``folder`` holds (part of) an earlier run: its journal, record, CSV or run.json."""
    from segapp.inference.outputs import JOURNAL

    return any((folder / n).exists() for n in (JOURNAL, RECORD, "predictions.csv", "run.json"))


def _remove_previous(folder: Path) -> int:
    """``--overwrite``: delete the outputs the earlier run's journal lists, and its CSV, run.json
    and record; returns how many files went. Files the journal does not list are left alone."""
    from segapp.inference.outputs import JOURNAL

    gone = 0
    journal = folder / JOURNAL
    lines = journal.read_text(errors="ignore").splitlines() if journal.is_file() else []
    for line in lines:
        try:
            outputs = json.loads(line).get("outputs", [])
        except (json.JSONDecodeError, AttributeError):
            continue
        for rel in outputs:
            target = (folder / rel).resolve()
            if folder.resolve() in target.parents and target.is_file():
                target.unlink()
                gone += 1
    for name in (JOURNAL, RECORD, "predictions.csv", "run.json"):
        if (folder / name).is_file():
            (folder / name).unlink()
            gone += 1
    return gone


def prepare_output_folder(folder: Path, record: dict[str, Any], resume: bool, overwrite: bool) -> None:
    """Check ``folder`` against this run and write the record, before the first output.

    ``resume``: the earlier run's record must match (:func:`check_same_run`). Without it, a
    folder holding a run with other options is refused unless ``overwrite`` (which removes that
    run's outputs first); a run with the same options simply starts again.

    Raises:
        RunMismatchError: naming what differs and the fix.
    """
    if _previous_run(folder):
        old = read_record(folder)
        if resume and not overwrite:
            check_same_run(old, record, folder)
        elif old != record and not overwrite:
            diff = "; ".join(differences(old, record)) if old else f"it recorded no options ({RECORD} missing)"
            raise RunMismatchError(
                f"output folder {folder} holds the outputs of another run ({diff}); fix: pass "
                "--resume to continue that run, --overwrite to replace it, or use another --output"
            )
        elif overwrite:
            _remove_previous(folder)
    write_record(folder, record)
