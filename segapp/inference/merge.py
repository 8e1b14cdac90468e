"""Merge the shards of a sharded ``segapp-predict --shard`` run into one result.

:func:`merge_shards` reads every shard's record, journal and run part in the output folder and:

1. refuses (exit 2) a folder without shard records, shards whose records differ in anything but
   the shard index (another model, threshold, option, input folder or shard count: the same
   record ``--resume`` checks), and a folder where a shard still holds its lock (running);
2. recomputes the input list from the recorded input folder (when it is still there) and the
   shard each input belongs to; an input no shard finished is *missing* and listed under its
   shard with the command that completes it (``--resume``); an input two shards finished (the
   folder changed between shard starts) is reported and kept once;
3. writes one ``predictions.csv`` (input order, as an unsharded run writes it), one ``run.json``
   (summed counts and stage timings, the shards listed) and rebuilds ``review.html``.

Exit codes: 0 complete, 1 incomplete (merged what exists, lists what is missing), 2 refused.
All writes are atomic (temp files ``.tmp-merge-*``) under the lock ``.segapp-merge.lock``.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from segapp.errors import UserError
from segapp.inference import outputs as out
from segapp.inference.lock import LOCK_NAME, FolderLock, describe, holder_gone, read_holder
from segapp.inference.run_record import RECORD, SHARD_KEY, SHARD_RECORD_GLOB, differences, job_record, read_record
from segapp.inference.shards import MERGE_LOCK, MERGE_TEMP_PREFIX, RunFiles, Shard, shard_of_name
from segapp.io.writers import atomic_write, temp_prefix

EXIT_COMPLETE, EXIT_INCOMPLETE, EXIT_REFUSED = 0, 1, 2
#: the inputs listed per missing shard on the terminal (run.json lists them all)
SHOWN = 20


class MergeRefused(UserError):
    """Nothing merged: no shard parts, shards of different runs, or a shard still running."""


@dataclass
class ShardPart:
    """What one shard left in the output folder."""

    shard: Shard
    files: RunFiles
    record: dict[str, Any]
    run: dict[str, Any] | None = None  # run.shard-*.json (None: the shard has not finished yet)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # input -> its last valid journal entry
    stale: int = 0  # journal entries whose outputs are gone or whose input changed since


@dataclass
class MergeResult:
    """The outcome of :func:`merge_shards` (also summed up in the merged ``run.json``)."""

    folder: Path
    count: int
    parts: list[ShardPart]
    entries: list[dict[str, Any]]  # the journal entry merged for each input, in input order
    missing: dict[int, list[str]]  # shard index -> its inputs no shard finished
    twice: dict[str, list[int]]  # input -> the shards that finished it
    unfinished: list[int]  # shards without a finished run part (only when the input folder is gone)
    commands: dict[int, str]  # shard index -> the command that completes it
    notes: list[str]
    input_found: bool

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The merged CSV rows (one per input, per frame for multi-frame DICOM)."""
        return [r for e in self.entries for r in e["rows"]]

    @property
    def ok(self) -> int:
        """Inputs whose every row is ``ok``."""
        return sum(all(r.get("status") == "ok" for r in e["rows"]) for e in self.entries)

    @property
    def exit_code(self) -> int:
        """0 complete; 1 inputs missing (or shards unfinished when the input list cannot be rebuilt)."""
        return EXIT_INCOMPLETE if any(self.missing.values()) or self.unfinished else EXIT_COMPLETE

    def lines(self) -> list[str]:
        """What ``segapp-merge`` prints: the summary, then what is missing by shard and how to finish it."""
        n = len(self.entries)
        lines = [
            f"segapp-merge: {len(self.parts)} of {self.count} shards; {n} inputs ({self.ok} ok / {n - self.ok} "
            f"failed) merged into predictions.csv and run.json in {self.folder}"
        ]
        lines += [f"note: {note}" for note in self.notes]
        for rel, shards in sorted(self.twice.items()):
            lines.append(f"done twice: {rel} (by shards {', '.join(map(str, shards))}; one kept)")
        for index, rels in sorted(self.missing.items()):
            shown = ", ".join(rels[:SHOWN]) + (f" and {len(rels) - SHOWN} more" if len(rels) > SHOWN else "")
            lines.append(f"missing: shard {index}/{self.count}: {len(rels)} inputs: {shown}")
            lines.append(f"  finish it with: {self.commands[index]}")
        for index in self.unfinished:
            lines.append(f"unfinished: shard {index}/{self.count} has no finished run part")
            lines.append(f"  finish it with: {self.commands[index]}")
        if self.exit_code:
            lines.append("segapp-merge: incomplete (exit 1): merged what exists; run the commands above, merge again")
        return lines


def _refuse(message: str) -> MergeRefused:
    return MergeRefused(" ".join(message.split()))


def load_parts(folder: Path) -> list[ShardPart]:
    """Every shard's record (and its file names) in ``folder``, by shard index.

    Raises:
        MergeRefused: no shard records (an unsharded run's folder says so), or one unreadable.
    """
    paths = sorted(folder.glob(SHARD_RECORD_GLOB))
    if not paths:
        if (folder / RECORD).is_file():
            raise _refuse(
                f"{folder} holds an unsharded run ({RECORD}): its predictions.csv is complete already; "
                "fix: segapp-merge combines the shards of segapp-predict --shard runs"
            )
        raise _refuse(
            f"no shard parts in {folder}: expected files like .segapp-predict.shard-000-of-004.options.json "
            "that segapp-predict --shard I/N writes; fix: pass the --output folder of the shards"
        )
    parts = []
    for path in paths:
        shard, record = shard_of_name(path.name), read_record(folder, path.name)
        if shard is None or record is None:
            raise _refuse(f"{path} is unreadable or misnamed; fix: re-run that shard with --overwrite")
        if (record.get(SHARD_KEY), record.get("shard_count")) != (shard.index, shard.count):
            raise _refuse(
                f"{path.name} records shard {record.get(SHARD_KEY)}/{record.get('shard_count')}, not "
                f"{shard.label} as its name says; fix: re-run shard {shard.label} with --overwrite"
            )
        parts.append(ShardPart(shard, RunFiles.for_shard(shard), record))
    return parts


def check_same_job(parts: list[ShardPart]) -> int:
    """Refuse shards of different runs; return the shard count.

    The records are grouped by everything but the shard index; the largest group (ties: the one
    with the lowest shard) is the run, and every other shard is named with what differs.

    Raises:
        MergeRefused: naming each odd shard's file, the differing keys (run -> that shard) and the fix.
    """
    groups: dict[str, list[ShardPart]] = defaultdict(list)
    for part in parts:
        groups[json.dumps(job_record(part.record), sort_keys=True, default=str)].append(part)
    run = max(groups.values(), key=lambda g: (len(g), -min(p.shard.index for p in g)))
    odd = [p for p in parts if p not in run]
    if odd:
        ref = run[0]
        said = "; ".join(
            f"{p.files.record} differs: {', '.join(differences(job_record(ref.record), job_record(p.record)))}"
            for p in odd
        )
        raise _refuse(
            f"shards of different runs in one folder, nothing merged: compared with {ref.files.record}, {said}; "
            "fix: re-run those shards with the model and options of the others (segapp-predict ... "
            "--shard I/N --overwrite), or move their files to another folder"
        )
    return run[0].shard.count


def check_locks(folder: Path, break_lock: bool) -> list[str]:
    """Refuse while a segapp-predict run (a shard) holds its lock; notes for stale locks.

    Raises:
        MergeRefused: naming the running shard, its holder and the fix.
    """
    notes = []
    for path in sorted([*folder.glob(".segapp-predict.shard-*-of-*.lock"), folder / LOCK_NAME]):
        holder = read_holder(path)
        if holder is None:
            continue
        shard = shard_of_name(path.name)
        who = f"shard {shard.label}" if shard else "an unsharded segapp-predict run"
        gone, why = holder_gone(holder)
        if not gone and not break_lock:
            raise _refuse(
                f"{who} is still running in {folder}: {path.name} is held by {describe(holder)}, and {why}; "
                "fix: wait for it to finish, or pass --break-lock if you are sure it is gone"
            )
        notes.append(f"{who} left a lock ({path.name}: {why if gone else '--break-lock'}); its run did not finish")
    return notes


def read_parts(folder: Path, parts: list[ShardPart], input_dir: Path | None) -> None:
    """Each shard's run part and its journal's last valid entry per input (outputs in place, input unchanged)."""
    for part in parts:
        try:
            part.run = json.loads((folder / part.files.run_json).read_text())
        except (OSError, json.JSONDecodeError):
            part.run = None
        last = {e["input"]: e for e in out.read_journal(folder / part.files.journal)}
        for rel, entry in last.items():
            outputs_there = all((folder / o).is_file() for o in entry.get("outputs", []))
            same_input = input_dir is None or out.same_stamp(entry.get("stamp"), out.input_stamp(input_dir, rel))
            if outputs_there and same_input and isinstance(entry.get("rows"), list):
                part.entries[rel] = entry
            else:
                part.stale += 1


def _input_order(input_dir: Path, parts: list[ShardPart]) -> tuple[list[str], int | None, bool]:
    """The inputs in an unsharded run's order, the unsupported count, and whether the folder is there.

    Without the input folder: the finished inputs, sorted as :func:`~segapp.inference.folder.discover`
    sorts (path components), and no unsupported count.
    """
    from segapp.inference.folder import discover

    if input_dir.is_dir():
        files, skipped = discover(input_dir)
        return [f.relative_to(input_dir).as_posix() for f in files], len(skipped), True
    done = {rel for p in parts for rel in p.entries}
    return sorted(done, key=lambda r: PurePosixPath(r).parts), None, False


def rerun_command(part_runs: list[dict[str, Any]], shard: Shard, folder: Path, record: dict[str, Any]) -> str:
    """The command that completes ``shard``: a shard's recorded argv with ``--shard I/N --resume``."""
    argv = next((r["argv"] for r in part_runs if isinstance(r.get("argv"), list)), None)
    if argv is None:
        return (
            f"segapp-predict --checkpoint|--model MODEL --input {shlex.quote(str(record.get('input')))} "
            f"--output {shlex.quote(str(folder))} --shard {shard.label} --resume "
            f"(with the options recorded in {RunFiles.for_shard(shard).record})"
        )
    run = next(r for r in part_runs if isinstance(r.get("argv"), list))
    kept, skip = [], 0
    for arg in _absolute_paths(argv, run, folder, record):
        if skip:
            skip -= 1
        elif arg in ("--shard", "--shard-count"):
            skip = 1
        elif not (arg.startswith(("--shard=", "--shard-count=")) or arg in ("--resume", "--overwrite")):
            kept.append(arg)
    return shlex.join(["segapp-predict", *kept, "--shard", shard.label, "--resume"])


def _shard_cwd(argv: list[str], run: dict[str, Any]) -> Path | None:
    """The folder a shard was started in, from a relative --input/--output and its resolved path."""
    for flag in ("--input", "--output"):
        given, resolved = _flag_value(argv, flag), run.get(flag[2:])
        if not given or not resolved or Path(given).is_absolute():
            continue
        rel = PurePosixPath(os.path.normpath(given))
        full = PurePosixPath(str(resolved))
        if ".." not in rel.parts and full.parts[-len(rel.parts) :] == rel.parts:
            return Path(*full.parts[: len(full.parts) - len(rel.parts)])
    return None


def _flag_value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
    return None


def _absolute_paths(argv: list[str], run: dict[str, Any], folder: Path, record: dict[str, Any]) -> list[str]:
    """``argv`` with --input (the shard's resolved input folder), --output (the merged folder) and
    relative --checkpoint/--model paths (from the shard's start folder, when it can be told)
    absolute, so the command works from any folder, not only the one the shard was started in."""
    cwd = _shard_cwd(argv, run)
    fixed = {"--input": str(record.get("input") or run.get("input")), "--output": str(folder)}

    def model_path(value: str) -> str:
        if Path(value).is_absolute() or cwd is None:
            return value
        return os.path.normpath(cwd / value)

    out, current = [], None  # current: the flag whose values follow
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if arg.startswith("--") and eq and flag in fixed:
            out.append(f"{flag}={fixed[flag]}")
        elif arg.startswith("--") and eq and flag in ("--checkpoint", "--model"):
            out.append(f"{flag}={model_path(value)}")
        elif arg.startswith("-"):
            current = arg if arg in (*fixed, "--checkpoint", "--model") else None
            out.append(arg)
        elif current in fixed:
            out.append(fixed[current])
            current = None
        elif current in ("--checkpoint", "--model"):
            out.append(model_path(arg))
            current = current if current == "--checkpoint" else None  # --checkpoint takes several
        else:
            out.append(arg)
    return out


def _pick(
    order: list[str], parts: list[ShardPart], count: int
) -> tuple[list[dict[str, Any]], dict[int, list[str]], dict[str, list[int]]]:
    """Each input's entry (its own shard's when two shards did it), the missing by shard, the done twice."""
    chosen, missing, twice = [], defaultdict(list), {}
    by_index = {p.shard.index: p for p in parts}
    finished_by: dict[str, list[int]] = defaultdict(list)
    for part in parts:
        for rel in part.entries:
            finished_by[rel].append(part.shard.index)
    for position, rel in enumerate(order):
        done_by = finished_by.get(rel, [])
        if not done_by:
            missing[position % count].append(rel)
            continue
        if len(done_by) > 1:
            twice[rel] = done_by
        own = position % count if position % count in done_by else done_by[0]
        chosen.append(by_index[own].entries[rel])
    return chosen, dict(missing), twice


def merge_shards(output_dir: str | Path, break_lock: bool = False, review_cards: int | None = None) -> MergeResult:
    """Merge the shard parts in ``output_dir``; see the module docstring.

    Raises:
        MergeRefused: nothing merged (exit 2): no shard parts, mismatched shards, a shard running.
        LockError: another segapp-merge is merging this folder.
        OutputError: the folder cannot be written.
    """
    folder = Path(output_dir).resolve()
    if not folder.is_dir():
        raise _refuse(f"output folder {folder} not found; fix: pass the --output folder of the shards")
    parts = load_parts(folder)
    count = check_same_job(parts)
    notes = check_locks(folder, break_lock)
    with FolderLock(folder, name=MERGE_LOCK, break_lock=break_lock), temp_prefix(MERGE_TEMP_PREFIX):
        with out.writing(folder):
            out.remove_stale_temps(folder, MERGE_TEMP_PREFIX)
        return _merge(folder, parts, count, notes, review_cards)


def _merge(folder: Path, parts: list[ShardPart], count: int, notes: list[str], review_cards: int | None) -> MergeResult:
    record = parts[0].record
    input_dir = Path(str(record.get("input")))
    read_parts(folder, parts, input_dir if input_dir.is_dir() else None)
    order, skipped, found = _input_order(input_dir, parts)
    entries, missing, twice = _pick(order, parts, count)
    unfinished = [] if found else _unfinished(parts, count)
    notes += _notes(parts, order, input_dir, found)
    runs = [p.run for p in parts if p.run]
    commands = {i: rerun_command(runs, Shard(i, count), folder, record) for i in sorted({*missing, *unfinished})}
    result = MergeResult(folder, count, parts, entries, missing, twice, unfinished, commands, notes, found)
    _write(folder, result, skipped, review_cards)
    return result


def _unfinished(parts: list[ShardPart], count: int) -> list[int]:
    """Shards without a run part of a run that was not stopped early (used without the input folder)."""
    finished = {p.shard.index for p in parts if p.run and not (p.run.get("summary") or {}).get("interrupted")}
    return [i for i in range(count) if i not in finished]


def _notes(parts: list[ShardPart], order: list[str], input_dir: Path, found: bool) -> list[str]:
    notes = []
    if not found:
        notes.append(f"input folder {input_dir} not found here: inputs that no shard finished cannot be listed")
    for p in parts:
        if p.stale:
            notes.append(f"shard {p.shard.label}: {p.stale} journal entries left out (outputs gone or input changed)")
    gone = {rel for p in parts for rel in p.entries} - set(order)
    if gone:
        notes.append(f"{len(gone)} finished inputs are no longer in the input folder; left out")
    return notes


def _summed(parts: list[ShardPart]) -> tuple[dict[str, float], dict[str, float]]:
    """The shards' run parts' counts and stage timings, summed."""
    counts: dict[str, float] = defaultdict(float)
    stages: dict[str, float] = defaultdict(float)
    for part in parts:
        for k, v in ((part.run or {}).get("summary") or {}).items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                counts[k] += v
        for k, v in ((part.run or {}).get("stages_s") or {}).items():
            stages[k] += float(v)
    return counts, stages


def _shard_entry(part: ShardPart) -> dict[str, Any]:
    run = part.run or {}
    return {
        "shard": part.shard.label,
        "record": part.files.record,
        "run_json": part.files.run_json if part.run else None,
        "inputs_merged": len(part.entries),
        "summary": run.get("summary"),
        "exit_code": run.get("exit_code"),
        "finished": run.get("finished"),
    }


def merged_images(result: MergeResult) -> int:
    """The images of the merged inputs that succeeded, counted from their rows (not from the
    shards' run parts, one of which may be missing): one per row, a NIfTI row its slices."""
    return sum(
        _row_images(result.folder, r)
        for e in result.entries
        if all(r.get("status") == "ok" for r in e["rows"])
        for r in e["rows"]
    )


def _row_images(folder: Path, row: dict[str, Any]) -> int:
    """1, or a NIfTI row's slices: its ``slices`` field, else the mask's voxels over one slice's
    ``height x width`` (header only), else 1."""
    output = str(row.get("output", ""))
    if not output.endswith((".nii", ".nii.gz")):
        return 1
    try:
        if row.get("slices") not in (None, ""):
            return int(row["slices"])
        import nibabel as nib

        voxels = math.prod(nib.load(str(folder / output)).shape)
        per_slice = int(row["height"]) * int(row["width"])
        return max(1, voxels // per_slice) if voxels % per_slice == 0 else 1
    except Exception:  # noqa: BLE001 - a count in a summary: an unreadable mask counts as one
        return 1


def merged_run_json(result: MergeResult, skipped: int | None) -> dict[str, Any]:
    """``run.json`` of the merged run: the shards' common settings, summed counts and timings, the shards.

    ``skipped``: unsupported files in the input folder (None when it is gone: the shards' largest count).
    """
    base = next((dict(p.run) for p in result.parts if p.run), {})
    for key in ("summary", "stages_s", "exit_code", "finished", "shard", "argv"):
        base.pop(key, None)
    if isinstance(base.get("options"), dict):
        base["options"] = {k: v for k, v in base["options"].items() if k not in ("shard", "resume", "overwrite")}
    counts, stages = _summed(result.parts)
    if skipped is None:
        skipped = max(int((p.run or {}).get("summary", {}).get("skipped_unsupported", 0)) for p in result.parts)
    missing = {f"{i}/{result.count}": rels for i, rels in sorted(result.missing.items())}
    n = len(result.entries)
    return {
        **base,
        "mask_record": job_record(result.parts[0].record),
        "summary": {
            "inputs": n,
            "ok": result.ok,
            "failed": n - result.ok,
            "missing": sum(len(v) for v in missing.values()),
            "done_twice": len(result.twice),
            "skipped_unsupported": skipped,
            "images": merged_images(result),
            "seconds": round(counts.get("seconds", 0.0), 3),
        },
        "stages_s": {k: round(v, 3) for k, v in stages.items()},
        "shards": {"count": result.count, "parts": [_shard_entry(p) for p in result.parts]},
        "missing": missing,
        "unfinished_shards": result.unfinished,
        "done_twice": result.twice,
        "rerun": {f"{i}/{result.count}": c for i, c in result.commands.items()},
        "exit_code": result.exit_code,
        "merged": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _review_cards(result: MergeResult, review_cards: int | None) -> int:
    if review_cards is not None:
        return review_cards
    opts = next(((p.run or {}).get("options") for p in result.parts if p.run), None) or {}
    return int(opts.get("review_cards", 300))


def _write(folder: Path, result: MergeResult, skipped: int | None, review_cards: int | None) -> None:
    """predictions.csv, run.json and review.html (when the run makes one), atomically."""
    from segapp.inference.review import write_review

    with out.writing(folder):
        out.write_csv(folder / "predictions.csv", result.rows)
        with atomic_write(folder / "run.json", suffix=".json") as tmp:
            tmp.write_text(json.dumps(merged_run_json(result, skipped), indent=2, default=str))
        if result.parts[0].record.get("review", True):
            write_review(folder, result.rows, max_cards=_review_cards(result, review_cards))
