"""The record of the resolved options that decide a folder run's masks, and the check against it.

A run writes ``.segapp-predict.options.json`` into its output folder before its first output.
``--resume`` calls :func:`check_same_run`: outputs made with another model, threshold, TTA, ...
are never mixed into one folder without saying so. Each shard of a sharded run writes its own
record, equal to the other shards' apart from ``shard_index`` (:func:`job_record`): a shard
checks that at start (:func:`check_shard_company`), ``segapp-merge`` before merging. Options
join the record as plain keys of :func:`mask_record`, so later options (ensembles, new size
limits) only add a key; a new ``max_*`` field of ``FolderOptions`` joins it by itself.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from segapp.inference.outputs import RECORD
from segapp.inference.shards import RunFiles
from segapp.io import atomic_write

RECORD_VERSION = 1
#: the record of every shard of a sharded run (``.segapp-predict.shard-003-of-008.options.json``)
SHARD_RECORD_GLOB = ".segapp-predict.shard-*-of-*.options.json"
#: the one key in which the records of two shards of one run differ
SHARD_KEY = "shard_index"


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
        "dicom_seg": bool(getattr(options, "dicom_seg", False)),
        **size_limits(options),
    }
    for key in ("ensemble",):  # joins the record when an ensemble run passes its members' hashes
        if info.get(key) is not None:
            record[key] = info[key]
    shard = getattr(options, "shard", None)
    if shard is not None:  # sharded runs only: an unsharded record stays as it was
        record[SHARD_KEY], record["shard_count"] = int(shard.index), int(shard.count)
    return record


def job_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record without the shard index: equal for every shard of one sharded run."""
    return {k: v for k, v in record.items() if k != SHARD_KEY}


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


def read_record(folder: Path, name: str = RECORD) -> dict[str, Any] | None:
    """The record ``name`` in ``folder``, or None when there is none (or it is unreadable)."""
    try:
        record = json.loads((folder / name).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def write_record(folder: Path, record: dict[str, Any], name: str = RECORD) -> None:
    """Write the record atomically (before the run's first output)."""
    with atomic_write(folder / name, suffix=".json") as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str))


def _bookkeeping(files: RunFiles) -> tuple[str, ...]:
    """A run's journal, record, CSV and run.json (a shard's own parts when sharded)."""
    return (files.journal, files.record, files.csv, files.run_json)


def _previous_run(folder: Path, files: RunFiles) -> bool:
    """Whether ``folder`` holds (part of) an earlier run: its journal, record, CSV or run.json."""
    return any((folder / n).exists() for n in _bookkeeping(files))


def _remove_previous(folder: Path, files: RunFiles) -> int:
    """``--overwrite``: delete the outputs the earlier run's journal lists, and its CSV, run.json
    and record; returns how many files went. Files the journal does not list are left alone."""
    gone = 0
    journal = folder / files.journal
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
    for name in _bookkeeping(files):
        if (folder / name).is_file():
            (folder / name).unlink()
            gone += 1
    return gone


def _names(paths: list[Path], most: int = 3) -> str:
    shown = ", ".join(p.name for p in paths[:most])
    return shown + (f" and {len(paths) - most} more" if len(paths) > most else "")


def check_shard_company(folder: Path, record: dict[str, Any], files: RunFiles, overwrite: bool) -> None:
    """Refuse to mix a sharded and an unsharded run in one folder, or shards of two different runs.

    A shard's record must equal every other shard record in the folder apart from the shard
    index (same model, options, input folder and shard count); ``overwrite`` lets this shard
    start over regardless (``segapp-merge`` still checks every shard before merging).

    Raises:
        RunMismatchError: naming the other run's files, what differs and the fix.
    """
    others = sorted(p for p in folder.glob(SHARD_RECORD_GLOB) if p.name != files.record)
    if SHARD_KEY not in record:
        shard_locks = sorted(folder.glob(".segapp-predict.shard-*-of-*.lock"))
        if others or shard_locks:
            raise RunMismatchError(
                f"output folder {folder} holds a sharded run ({_names(others or shard_locks)}); an unsharded "
                f"run does not share a folder with shards; fix: combine the shards with segapp-merge {folder}, "
                "or use another --output"
            )
        return
    plain = RunFiles()
    unsharded = [folder / n for n in (plain.record, plain.journal, plain.lock) if (folder / n).exists()]
    if unsharded:
        raise RunMismatchError(
            f"output folder {folder} holds an unsharded run ({_names(unsharded)}); shards do not share a "
            "folder with an unsharded run; fix: use another --output for the shards"
        )
    if overwrite:
        return
    for path in others:
        diff = differences(job_record(read_record(folder, path.name) or {}), job_record(record))
        if diff:
            raise RunMismatchError(
                f"--shard: {path.name} in {folder} is a shard of another run: {'; '.join(diff)} (that shard -> "
                "this one); fix: run every shard with the same model and options, or use another --output "
                "(--overwrite restarts only this shard)"
            )


def prepare_output_folder(
    folder: Path, record: dict[str, Any], resume: bool, overwrite: bool, files: RunFiles | None = None
) -> None:
    """Check ``folder`` against this run and write the record, before the first output.

    ``resume``: the earlier run's record must match (:func:`check_same_run`). Without it, a
    folder holding a run with other options is refused unless ``overwrite`` (which removes that
    run's outputs first); a run with the same options simply starts again. ``files`` names a
    shard's own parts (:class:`~segapp.inference.shards.RunFiles`; default: an unsharded run's),
    and the other shards in the folder are checked with :func:`check_shard_company`.

    Raises:
        RunMismatchError: naming what differs and the fix.
    """
    files = files or RunFiles()
    check_shard_company(folder, record, files, overwrite)
    if _previous_run(folder, files):
        old = read_record(folder, files.record)
        if resume and not overwrite:
            check_same_run(old, record, folder)
        elif old != record and not overwrite:
            diff = "; ".join(differences(old, record)) if old else f"it recorded no options ({files.record} missing)"
            raise RunMismatchError(
                f"output folder {folder} holds the outputs of another run ({diff}); fix: pass "
                "--resume to continue that run, --overwrite to replace it, or use another --output"
            )
        elif overwrite:
            _remove_previous(folder, files)
    write_record(folder, record, files.record)
