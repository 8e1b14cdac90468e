"""Output naming, atomic writers and the resumable journal of a folder run.

Naming (documented in docs/inference.md) keeps the input's full file name, so ``a.dcm`` and
``a.tiff`` never collide, and appends a fixed suffix:

==========================  ===============================  ==============================
input                       mask                             probabilities / overlay
==========================  ===============================  ==============================
image, one-frame DICOM      ``<rel>.mask.png``               ``<rel>.prob.png|npy``, ``.overlay``, ``.uncertainty``
multi-frame DICOM frame k   ``<rel>.f{k:03d}.mask.png``      ``<rel>.f{k:03d}.prob.png|npy`` ...
NIfTI                       ``<rel>.mask.nii.gz``            ``<rel>.prob.nii.gz`` (no overlay)
==========================  ===============================  ==============================
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segapp.errors import OutputWriteError
from segapp.io import atomic_write, write_mask_png

CSV_FIELDS = (
    "input",
    "frame",
    "sop_instance_uid",
    "output",
    "status",
    "reason",
    "height",
    "width",
    "lesion_pixels",
    "lesion_fraction",
    "components",
    "bbox",
    "mean_prob",
    "uncertainty",
    "est_dice",
    "agreement",
    "ood_score",
    "input_check",
    "review",
    "review_reason",
    "risk",
    "seconds",
)
JOURNAL = ".segapp-predict.jsonl"
#: the record of the options that decide the masks (:mod:`segapp.inference.run_record`)
RECORD = ".segapp-predict.options.json"

#: errors that stop the whole run (every later write would fail the same way), not one input
FATAL_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EEXIST,
    errno.EIO,
}
_FIXES = {
    errno.ENOSPC: ("no space left on the device", "free space, then rerun the same command with --resume to finish"),
    errno.EDQUOT: ("disk quota exceeded", "free space, then rerun the same command with --resume to finish"),
    errno.EROFS: ("read-only file system", "choose an --output on a writable disk"),
    errno.EACCES: ("permission denied", "choose an --output you can write to, or change its permissions"),
    errno.EPERM: ("operation not permitted", "choose an --output you can write to, or change its permissions"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "pass a folder path as --output (or move that file)"),
    errno.EEXIST: ("a file is in the way of a folder", "pass a folder path as --output (or move that file)"),
}


class OutputError(OutputWriteError):
    """The output folder cannot be written (disk full, not writable, a file in the way).

    The message is one line naming the path and the fix; ``segapp-predict`` exits with 4.
    """


def output_error(e: OSError, path: Path) -> OutputError:
    """One-line :class:`OutputError` for an ``OSError`` met while writing under ``path``."""
    what, fix = _FIXES.get(e.errno or 0, (e.strerror or str(e), "check the output folder and rerun with --resume"))
    where = e.filename or path
    return OutputError(f"cannot write {where}: {what}; fix: {fix}")


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn any ``OSError`` raised inside into an :class:`OutputError` naming ``path``."""
    try:
        yield
    except OSError as e:
        raise output_error(e, path) from e


def output_name(rel: Path, kind: str = "mask", frame: int | None = None, ext: str = "png") -> Path:
    """Output path (relative to the output root) for an input path relative to the input root.

    ``output_name(Path("a/b.jpg"))`` -> ``a/b.jpg.mask.png``; with ``frame=3`` ->
    ``a/b.jpg.f003.mask.png``; ``kind`` is ``mask``, ``prob`` or ``overlay``.
    """
    frame_part = "" if frame is None else f".f{frame:03d}"
    return rel.with_name(f"{rel.name}{frame_part}.{kind}.{ext}")


def write_probs(path: Path, probs: np.ndarray, fmt: str) -> None:
    """Probabilities as a 16-bit PNG (0-65535 = 0-1) or a float32 ``.npy``, atomically."""
    if fmt == "npy":
        with atomic_write(path, suffix=".npy") as tmp:
            np.save(tmp, probs.astype(np.float32))
        return
    scaled = np.rint(np.clip(probs, 0.0, 1.0) * 65535.0).astype(np.uint16)
    with atomic_write(path, suffix=".png") as tmp:
        Image.fromarray(scaled).save(tmp, format="PNG")


def write_uncertainty(path: Path, entropy: np.ndarray) -> None:
    """Per-pixel entropy (bits, 0-1) as an 8-bit grey PNG (0-255), atomically."""
    scaled = np.rint(np.clip(entropy, 0.0, 1.0) * 255.0).astype(np.uint8)
    with atomic_write(path, suffix=".png") as tmp:
        Image.fromarray(scaled).save(tmp, format="PNG")


def write_overlay(path: Path, rgb: np.ndarray) -> None:
    """uint8 RGB overlay picture as PNG, atomically."""
    with atomic_write(path, suffix=".png") as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")


def write_mask(path: Path, mask: np.ndarray) -> None:
    """Binary mask as an 8-bit 0/255 PNG, atomically."""
    write_mask_png(path, mask)


def write_nifti(path: Path, volume: np.ndarray, meta: dict[str, Any], dtype: type = np.uint8) -> None:
    """Write ``volume`` (the input's array shape) with the input's affine and header, atomically."""
    import nibabel as nib

    header = meta["header"].copy()
    header.set_data_dtype(dtype)
    data = volume.astype(dtype).reshape(meta["shape"])
    img = (
        nib.Nifti1Image(data, meta["affine"], header)
        if isinstance(header, nib.Nifti1Header)
        else nib.Nifti2Image(data, meta["affine"], header)
    )
    img.header.set_slope_inter(1.0, 0.0)
    with atomic_write(path, suffix=".nii.gz") as tmp:
        nib.save(img, str(tmp))


#: temp files that belong to a shard (``.tmp-s003-``) or to segapp-merge (``.tmp-merge-``)
SHARD_TEMP_RE = re.compile(r"^\.tmp-(s\d+|merge)-")


def remove_stale_temps(root: Path, prefix: str | None = None) -> int:
    """Delete the temp files a killed run left under ``root``; returns how many.

    ``prefix`` (e.g. ``.tmp-s003-``): only that shard's temps, so a shard starting up never
    deletes another shard's writes in progress. ``None`` (an unsharded run): every ``.tmp-*``
    file except shard and merge temps (which an unsharded run's folder does not hold anyway).
    """
    count = 0
    if root.is_dir():
        for p in root.rglob(f"{prefix}*" if prefix else ".tmp-*"):
            if not prefix and SHARD_TEMP_RE.match(p.name):
                continue
            if p.is_file():
                p.unlink()
                count += 1
    return count


def input_stamp(input_dir: Path | None, rel: str) -> list[int] | None:
    """``[size, mtime_ns, ctime_ns]`` of an input, as the journal records it (None without an input
    folder or when the input is gone): a journal entry whose stamp differs is of a replaced input.
    The change time catches a same-size replacement whose mtime was kept (``cp -p``, ``rsync -t``):
    ``utime`` cannot set it back."""
    if input_dir is None:
        return None
    try:
        st = (input_dir / rel).stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def same_stamp(recorded: Any, now: list[int] | None) -> bool:
    """Whether a journal's ``recorded`` stamp matches ``now`` (a journal written before the change
    time was recorded compares size and mtime only, so its run is not predicted all over again)."""
    if isinstance(recorded, list) and now is not None and len(recorded) == 2:
        return recorded == now[:2]
    return recorded == now


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The entries of a journal file in order (none when it is missing); torn lines are skipped."""
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(errors="ignore").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("input"), str):
            entries.append(entry)
    return entries


class Journal:
    """Append-only record of finished inputs (one JSON line each) that ``--resume`` reads back.

    A line is written only after all of an input's outputs were renamed into place, so a line
    present means the input is done; a torn last line (killed mid-write) is ignored. Each line
    records the input's size, modification and change time: an input replaced since is predicted again.
    :meth:`remove_stale` then deletes what its old entries listed (see there).
    """

    def __init__(self, output_dir: Path, resume: bool, input_dir: Path | None = None, name: str = JOURNAL) -> None:
        self.path = output_dir / name
        self.input_dir = input_dir
        self.done: dict[str, dict[str, Any]] = {}
        self.output_dir, self.removed = output_dir, 0
        self._old = read_journal(self.path)  # a run again without --resume predicts every input anew
        for entry in self._old if resume else []:
            outputs_there = all((output_dir / o).is_file() for o in entry.get("outputs", []))
            same = same_stamp(entry.get("stamp"), self._stamp(entry["input"]))
            if entry.get("status") == "ok" and outputs_there and same:
                self.done[entry["input"]] = entry
        output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path, suffix=".jsonl") as tmp:  # keep only entries still valid
            tmp.write_text("".join(json.dumps(e) + "\n" for e in self.done.values()))
        self._fh = open(self.path, "a")  # noqa: SIM115 - the journal stays open for the run; close() closes it

    def remove_stale(self, todo: set[str]) -> int:
        """Before the inputs ``todo`` (this run's, after sharding) are predicted: delete the outputs
        their old entries listed that no valid entry lists, inside the output folder only.

        A 30-frame ``IM0001`` replaced by a 20-frame one under the same name left frames 20-29
        of the old scan (and an old SEG) beside the new masks, in no CSV. Only ``todo`` inputs:
        another shard's inputs, and inputs no longer predicted (gone, skipped), keep theirs."""
        keep = {o for e in self.done.values() for o in e.get("outputs", [])}
        again = {o for e in self._old if e["input"] in todo for o in e.get("outputs", [])} - keep
        root = self.output_dir.resolve()
        for o in sorted(again):
            target = (self.output_dir / o).resolve()
            if root in target.parents and target.is_file():
                target.unlink()
                self.removed += 1
        self._old = []
        return self.removed

    def _stamp(self, rel: str) -> list[int] | None:
        return input_stamp(self.input_dir, rel)

    def record(self, rel: str, status: str, rows: list[dict[str, Any]], outputs: list[str]) -> None:
        entry = {"input": rel, "status": status, "rows": rows, "outputs": outputs, "stamp": self._stamp(rel)}
        self._fh.write(json.dumps(entry) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def write_csv(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """``predictions.csv`` with :data:`CSV_FIELDS`, atomically."""
    with atomic_write(path, suffix=".csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
