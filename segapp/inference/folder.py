"""Predict every scan under a folder: mirrored output tree, CSV, run.json, resumable.

A file that cannot be read (or a dangling symlink) becomes an ``error`` row and the run goes
on; files no reader handles are skipped and counted. Outputs are written atomically and
recorded in a journal after they are in place, so ``resume=True`` skips finished inputs after a
killed run. A lock keeps a second run out of the folder (:mod:`segapp.inference.lock`), and the
record of the options that decide the masks keeps two different runs from mixing
(:mod:`segapp.inference.run_record`). Ctrl-C and SIGTERM stop the run with the finished rows
written; an output folder that cannot be written stops it with :class:`OutputError`.

``FolderOptions(shard=Shard(3, 8))`` predicts shard 3 of 8 of the inputs into a folder the other
shards share: its CSV, run.json, journal, record, lock and temp files carry the shard's tag
(:mod:`segapp.inference.shards`), and ``segapp-merge`` (:mod:`segapp.inference.merge`) writes the
merged ``predictions.csv``, ``run.json`` and ``review.html``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segapp.inference import outputs as out
from segapp.inference.interrupt import exit_code_for
from segapp.inference.loader import Decoded, FileDataset, iterate
from segapp.inference.lock import LOCK_NAME, FolderLock
from segapp.inference.postprocess import mask_stats, overlay
from segapp.inference.predictor import FrameResult, Predictor
from segapp.inference.review import make_thumb, thumb_path, write_review, write_thumb
from segapp.inference.run_record import job_record, mask_record, prepare_output_folder
from segapp.inference.shards import RunFiles, Shard
from segapp.inference.trust import review, volume_signals
from segapp.inference.writer import Writer
from segapp.io import DEFAULT_MAX_FILE_PIXELS, DEFAULT_MAX_PIXELS, ReadLimits, atomic_write
from segapp.io.scans import scan_kind
from segapp.io.writers import temp_prefix

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_NOTHING_READ, EXIT_OUTPUT = 0, 1, 2, 3, 4
SKIPPED_NAMED = 5  # unsupported files named on the console (the rest counted)


@dataclass
class FolderOptions:
    """Folder-run options (the CLI flags that are not predictor options)."""

    save_probs: str | None = None  # None, "png" or "npy"
    overlay: bool = False
    resume: bool = False
    workers: int = 0
    nifti_axis: int = 2
    max_pixels: int = DEFAULT_MAX_PIXELS  # per 2D frame or slice; see segapp.io.limits
    max_file_pixels: int = DEFAULT_MAX_FILE_PIXELS  # per multi-frame DICOM / 3D NIfTI
    progress: bool = False
    overwrite: bool = False  # replace an earlier run with other options in the output folder
    break_lock: bool = False  # take over a lock even when its holder cannot be proven gone
    lock_name: str = LOCK_NAME  # one lock per shard for sharded runs
    save_uncertainty: bool = False  # <name>.uncertainty.png: per-pixel entropy of the calibrated probabilities
    review: bool = True  # review.html and its thumbnails (review/thumbs/)
    review_cards: int = 300  # the riskiest cards the page shows (the rest are counted)
    dicom_seg: bool = False  # <name>.seg.dcm beside the mask of every DICOM input (segapp.inference.dicom_seg)
    shard: Shard | None = None  # predict only this shard's inputs (segapp.inference.shards); merge with segapp-merge
    pipeline: bool = True  # write batch n in a thread while batch n+1 runs the forward pass (segapp.inference.writer)


@dataclass
class FolderSummary:
    """Counts and timings of a folder run (also written to ``run.json``)."""

    ok: int = 0
    failed: int = 0
    skipped_unsupported: int = 0
    skipped_done: int = 0
    images: int = 0
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    interrupted: int = 0  # 130 (Ctrl-C) or 143 (SIGTERM) when the run was stopped early
    empty_shard: bool = False  # a shard with no inputs of its own (more shards than inputs): not a failure

    @property
    def exit_code(self) -> int:
        """0 all ok; 1 some failed; 3 nothing could be read; 130/143 stopped by Ctrl-C/SIGTERM."""
        if self.interrupted:
            return self.interrupted
        if self.ok + self.skipped_done == 0 and not self.empty_shard:
            return EXIT_NOTHING_READ
        return EXIT_SOME_FAILED if self.failed else EXIT_OK

    def line(self) -> str:
        rate = self.images / self.seconds if self.seconds > 0 else 0.0
        stopped = "stopped early (Ctrl-C/SIGTERM): " if self.interrupted else ""
        return (
            f"{stopped}{self.ok} ok / {self.failed} failed / {self.skipped_unsupported} skipped (unsupported type)"
            f" / {self.skipped_done} already done; {self.images} images in {self.seconds:.1f} s"
            f" ({rate:.1f} images/s)"
        )


def _same_folder_above(output_dir: Path, input_dir: Path) -> bool:
    """Whether the output folder, or an existing folder above it, is the input folder on disk (the
    same device and inode: a bind mount or another mount of it, which no path comparison sees)."""
    st = input_dir.stat()
    for p in (output_dir, *output_dir.parents):
        if p.exists():
            here = p.stat()
            if (here.st_dev, here.st_ino) == (st.st_dev, st.st_ino):
                return True
    return False


def check_folders(input_dir: Path, output_dir: Path) -> tuple[Path, Path]:
    """Resolve both folders; refuse a missing input or an output inside (or equal to) the input.

    Raises:
        ValueError: with the fix.
        OutputError: the output path is a file.
    """
    input_dir, output_dir = Path(input_dir).resolve(), Path(output_dir).resolve()
    if not input_dir.is_dir():
        raise ValueError(f"input folder {input_dir} not found; expected a folder of images or scans")
    if output_dir == input_dir or input_dir in output_dir.parents or _same_folder_above(output_dir, input_dir):
        raise ValueError(f"output folder {output_dir} is inside the input folder {input_dir}; choose another")
    if output_dir.exists() and not output_dir.is_dir():
        raise out.OutputError(
            f"output {output_dir} is a file, expected a folder; fix: pass a folder path as "
            "--output (a new one is created), or move that file"
        )
    return input_dir, output_dir


def discover(input_dir: Path) -> tuple[list[Path], list[Path]]:
    """Supported files under ``input_dir`` (sorted, recursive) and the skipped (unsupported) ones
    (see :func:`discover_all`, which also says which folders were passed over)."""
    found = discover_all(input_dir)
    return found.files, found.skipped


@dataclass
class Discovered:
    """What :func:`discover_all` found: inputs, unsupported files, and folders passed over with why."""

    files: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    passed: list[tuple[Path, str]] = field(default_factory=list)


def _run_folder(folder: Path) -> bool:
    """Whether ``folder`` is a segapp-predict output folder: it holds a run record or a journal
    (unsharded, or a shard's ``.segapp-predict.shard-...`` ones)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    return any(n in (out.RECORD, out.JOURNAL) or n.startswith(".segapp-predict.shard-") for n in names)


def _pass_over(folder: Path, input_dir: Path, links: set[tuple[int, int]]) -> str | None:
    """Why a subfolder is not walked (``None``: walk it)."""
    if _run_folder(folder):
        return "a segapp-predict output folder"
    if not folder.is_symlink():
        return None
    real = folder.resolve()
    if real == input_dir or input_dir in real.parents:
        return f"a link to {real}, a folder of the input walked under its own name"
    st = folder.stat()
    if (st.st_dev, st.st_ino) in links:
        return f"a link to {real}, walked already through another link"
    links.add((st.st_dev, st.st_ino))
    return None


def discover_all(input_dir: Path) -> Discovered:
    """Walk ``input_dir`` (recursive, in sorted order) for scans.

    Hidden files and everything in hidden folders (``.snapshot/``, ``.git/``, a viewer's
    ``.cache/``) are left out, as old copies there would be predicted as scans. Dangling symlinks
    are kept (whatever their name): the loader turns each into an error row. Symlinked folders are
    walked (``rglob`` skipped them without a word), except a link to a folder of the input (walked
    under its own name) or to one another link reached. Passed over, and named: those links, a
    folder that is a segapp-predict output (its masks, overlays and thumbnails would be predicted
    as scans: an output folder reached inside the input through another path, e.g. a container's
    bind mounts) and a folder that cannot be read.
    """
    found = Discovered()
    links: set[tuple[int, int]] = set()
    input_dir = Path(input_dir)

    def unreadable(e: OSError) -> None:
        found.passed.append((Path(e.filename), f"cannot be read ({e.strerror})"))

    for root, dirs, names in os.walk(input_dir, followlinks=True, onerror=unreadable):
        here = Path(root)
        keep = []
        for d in sorted(x for x in dirs if not x.startswith(".")):
            why = _pass_over(here / d, input_dir.resolve(), links)
            if why:
                found.passed.append((here / d, why))
            else:
                keep.append(d)
        dirs[:] = keep
        for name in names:
            p = here / name
            if name.startswith("."):
                continue
            if p.is_symlink() and not p.exists():
                found.files.append(p)
            elif p.is_file():
                (found.skipped if scan_kind(p) is None else found.files).append(p)
    found.files.sort()
    found.skipped.sort()
    return found


class FolderRun:
    """One run over a folder; see :func:`predict_folder`."""

    def __init__(self, predictor: Predictor, input_dir: Path, output_dir: Path, options: FolderOptions) -> None:
        self.p, self.opts = predictor, options
        self.input_dir, self.output_dir = check_folders(input_dir, output_dir)
        self.files = RunFiles.for_shard(options.shard)
        self.summary = FolderSummary()
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self._pending: list[Decoded] = []
        self._last_progress = 0.0
        self.series_uid, self.algorithm = "", {}  # DICOM SEG identity, set once the run's record is known

    def run(self) -> FolderSummary:
        """Predict the inputs the journal does not list as done; write ``predictions.csv``.

        Raises:
            OutputError: the output folder cannot be written (the journal keeps what finished).
        """
        t0 = time.perf_counter()
        shard = self.opts.shard
        with out.writing(self.output_dir):
            out.remove_stale_temps(self.output_dir, self.files.temp_prefix if shard else None)
            journal = out.Journal(self.output_dir, self.opts.resume, self.input_dir, name=self.files.journal)
        found = discover_all(self.input_dir)
        files, skipped = found.files, found.skipped
        for folder, why in found.passed:
            _note(f"passed over {folder.relative_to(self.input_dir).as_posix()}: {why}")
        self.summary.skipped_unsupported = len(skipped)
        if skipped:
            names = ", ".join(p.relative_to(self.input_dir).as_posix() for p in skipped[:SKIPPED_NAMED])
            more = f" and {len(skipped) - SKIPPED_NAMED} more" if len(skipped) > SKIPPED_NAMED else ""
            _note(f"skipped {len(skipped)} file(s) no reader handles (by extension or DICOM preamble): {names}{more}")
        if shard is not None:
            self.summary.empty_shard = bool(files) and not shard.select(files)
            files = shard.select(files)
        todo = [f for f in files if f.relative_to(self.input_dir).as_posix() not in journal.done]
        with out.writing(self.output_dir):
            journal.remove_stale({f.relative_to(self.input_dir).as_posix() for f in todo})
        for rel, entry in journal.done.items():
            self.rows[rel] = entry["rows"]
        self.summary.skipped_done = len(files) - len(todo)
        self.total = len(todo)
        self.journal = journal
        keep_raw = self.opts.overlay or self.opts.review
        limits = ReadLimits(self.opts.max_pixels, self.opts.max_file_pixels)
        dataset = FileDataset(
            self.input_dir, todo, self.p.preparer(), keep_raw, self.opts.nifti_axis, limits, check=self.p.checker()
        )
        items = iterate(dataset, self.opts.workers)
        self._writer = Writer(self.opts.pipeline)
        try:
            with out.writing(self.output_dir):
                for item in items:
                    self._add(item)
                self._flush()
                self._writer.drain()  # re-raises what the writer thread raised (a full disk, a bug)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM via segapp.inference.interrupt
            self.summary.interrupted = exit_code_for(e)
        finally:
            self._writer.stop()  # the batch being written finishes; queued ones are left for --resume
            items.close()  # stops the decoding workers now, not at garbage collection
            journal.close()
        self.summary.seconds = time.perf_counter() - t0
        with out.writing(self.output_dir):
            self._finish(files)
        return self.summary

    def _add(self, item: Decoded) -> None:
        self.summary.stages["decode"] += item.decode_s
        self.summary.stages["preprocess"] += item.prep_s
        if item.error:
            self._writer.submit(
                self._record,
                item,
                [
                    {
                        "input": item.rel,
                        "status": "error",
                        "reason": item.error,
                        "seconds": round(item.decode_s + item.prep_s, 4),
                    }
                ],
                [],
            )
            return
        self._pending.append(item)
        if self.p.mode == "tile" or sum(len(i.inputs) for i in self._pending) >= self.p.batch_size:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        items, self._pending = self._pending, []
        t0 = time.perf_counter()
        variants = self.p.forward_prepared([x for i in items for x in i.inputs])
        forward = time.perf_counter() - t0
        self.summary.stages["forward"] += forward
        counts = [len(i.inputs) for i in items]
        for item in items:
            item.inputs = []
        self._writer.submit(self._write_batch, items, counts, variants, forward)

    def _write_batch(self, items: list[Decoded], counts: list[int], variants: list, forward: float) -> None:
        """Masks, trust signals and outputs of one forwarded batch (in the writer thread when pipelined)."""
        t0 = time.perf_counter()
        results = self.p.results_of(variants, [s for i in items for s in i.sizes])
        self.summary.stages["postprocess"] += time.perf_counter() - t0
        k = 0
        for item, n in zip(items, counts, strict=True):
            self._write(item, results[k : k + n], forward * n / max(len(results), 1))
            k += n

    def _write(self, item: Decoded, results: list[FrameResult], forward_s: float) -> None:
        t0 = time.perf_counter()
        try:
            rows, outputs = (self._write_nifti if item.kind == "nifti" else self._write_frames)(item, results)
            self.summary.stages["write"] += time.perf_counter() - t0
        except OSError as e:
            if e.errno in out.FATAL_ERRNOS:
                raise  # disk full, not writable: every later input would fail too; stop the run
            rows, outputs = [{"input": item.rel, "status": "error", "reason": f"cannot write outputs: {e}"}], []
        seconds = round(item.decode_s + item.prep_s + forward_s + time.perf_counter() - t0, 4)
        for r in rows:
            r["seconds"] = seconds
        self._record(item, rows, outputs)

    def _trust_columns(self, signals: dict[str, Any], checks: list[str], empty: bool) -> dict[str, Any]:
        return {
            **signals,
            "input_check": " ".join(checks),
            **review(signals, checks, empty, self.p.rules),
        }

    def _write_frames(self, item: Decoded, results: list[FrameResult]):
        rel = Path(item.rel)
        multi = len(results) > 1
        rows, outputs = [], []
        for k, res in enumerate(results):
            frame = k if multi else None
            name = out.output_name(rel, "mask", frame)
            out.write_mask(self.output_dir / name, res.mask)
            outputs.append(name.as_posix())
            outputs += self._extras(item, k, frame, res)
            row = {
                "input": item.rel,
                "frame": "" if item.kind != "dicom" else k,
                "sop_instance_uid": item.meta.get("sop_instance_uid", ""),
                "output": name.as_posix(),
                "status": "ok",
                "reason": item.notes[k],
                **mask_stats(res.mask, res.probs, res.components),
                **self._trust_columns(res.signals, item.checks[k], not res.mask.any()),
            }
            rows.append(row)
        if item.kind == "dicom" and self.opts.dicom_seg:
            outputs += self._write_seg(item, results, rows)
        return rows, outputs

    def _write_seg(self, item: Decoded, results: list[FrameResult], rows: list[dict[str, Any]]) -> list[str]:
        """``<rel>.seg.dcm`` for a DICOM input (BINARY, FRACTIONAL with --save-probs); a source a
        valid SEG cannot be made from gets the reason in its rows instead, never an invalid SEG."""
        from segapp.inference.dicom_seg import SegError, write_seg

        name = out.output_name(Path(item.rel), "seg", ext="dcm")
        probs = [self._seg_probs(r) for r in results] if self.opts.save_probs else None
        try:
            write_seg(
                self.input_dir / item.rel,
                [r.mask for r in results],
                self.output_dir / name,
                probs=probs,
                series_uid=self.series_uid,
                algorithm=self.algorithm,
            )
        except SegError as e:
            for r in rows:
                r["reason"] = f"no DICOM SEG: {e}"
            return []
        return [name.as_posix()]

    def _seg_probs(self, res: FrameResult) -> np.ndarray:
        """A FRACTIONAL SEG's probabilities: 0 where the clean-up (--keep-largest, --min-size) removed
        a component, so thresholding the SEG at its ``threshold_calibrated`` gives the mask the CSV
        and the PNG describe (it gave the mask before clean-up); below-threshold values are kept."""
        removed = (res.probs > self.p.calibrated_threshold) & ~res.mask
        return np.where(removed, 0.0, res.probs).astype(res.probs.dtype, copy=False)

    def _extras(self, item: Decoded, k: int, frame: int | None, res: FrameResult) -> list[str]:
        """Probabilities, uncertainty map, overlay and review thumbnail of one frame, as asked."""
        rel, written = Path(item.rel), []
        if self.opts.save_probs:
            pname = out.output_name(rel, "prob", frame, self.opts.save_probs)
            out.write_probs(self.output_dir / pname, res.probs, self.opts.save_probs)
            written.append(pname)
        if self.opts.save_uncertainty:
            uname = out.output_name(rel, "uncertainty", frame)
            out.write_uncertainty(self.output_dir / uname, res.uncertainty_map())
            written.append(uname)
        if self.opts.overlay and item.raw is not None:
            oname = out.output_name(rel, "overlay", frame)
            out.write_overlay(self.output_dir / oname, overlay(item.raw[k], res.mask))
            written.append(oname)
        if self.opts.review and item.raw is not None:
            tpath = thumb_path(self.output_dir, item.rel, frame)
            write_thumb(tpath, make_thumb(item.raw[k], res.mask, res.uncertainty_map()))
            written.append(tpath.relative_to(self.output_dir))
        return [Path(w).as_posix() for w in written]

    def _write_nifti(self, item: Decoded, results: list[FrameResult]):
        rel, meta = Path(item.rel), item.meta
        axis = meta["axis"]
        stack = (
            (lambda arrs: arrs[0])
            if len(results) == 1 and len(meta["shape"]) == 2
            else (lambda arrs: np.stack(arrs, axis=axis))
        )
        volume = stack([r.mask for r in results])
        name = out.output_name(rel, "mask", ext="nii.gz")
        out.write_nifti(self.output_dir / name, volume, meta)
        outputs = [name.as_posix()]
        probs = stack([r.probs for r in results])
        if self.opts.save_probs:
            pname = out.output_name(rel, "prob", ext="nii.gz")
            out.write_nifti(self.output_dir / pname, probs, meta, dtype=np.float32)
            outputs.append(pname.as_posix())
        stats = mask_stats(volume, probs, sum(r.components for r in results), size=results[0].probs.shape)
        signals = volume_signals([r.signals for r in results], probs, volume)
        # blank only when every slice is: an all-zero edge slice of a padded or skull-stripped scan
        # is normal; the other checks flag the volume when any slice has them
        checks = sorted({c for cs in item.checks for c in cs if c != "blank"})
        if item.checks and all("blank" in cs for cs in item.checks):
            checks = sorted({"blank", *checks})
        row = {"input": item.rel, "frame": "", "sop_instance_uid": "", "output": name.as_posix(), "status": "ok"}
        return [{**row, "reason": "", **stats, **self._trust_columns(signals, checks, not volume.any())}], outputs

    def _record(self, item: Decoded, rows: list[dict[str, Any]], outputs: list[str]) -> None:
        status = "ok" if all(r["status"] == "ok" for r in rows) else "error"
        self.rows[item.rel] = rows
        self.journal.record(item.rel, status, rows, outputs)
        if status == "ok":
            self.summary.ok += 1
            self.summary.images += len(rows) if item.kind != "nifti" else len(item.sizes)
        else:
            self.summary.failed += 1
        self._progress()

    def _progress(self) -> None:
        now = time.perf_counter()
        if not self.opts.progress or now - self._last_progress < 0.5:
            return
        self._last_progress = now
        done = self.summary.ok + self.summary.failed
        elapsed = sum(self.summary.stages[k] for k in ("forward", "postprocess", "write")) or 1e-9
        print(
            f"\r[{done}/{self.total}] {self.summary.failed} failed, {self.summary.images / elapsed:.1f} images/s",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def _finish(self, files: list[Path]) -> None:
        if self.opts.progress:
            print(file=sys.stderr)
        order = [f.relative_to(self.input_dir).as_posix() for f in files]
        rows = [r for rel in order for r in self.rows.get(rel, [])]
        out.write_csv(self.output_dir / self.files.csv, rows)
        if self.opts.review and self.opts.shard is None:  # sharded: segapp-merge writes the one review.html
            write_review(self.output_dir, rows, max_cards=self.opts.review_cards)
        if line := low_range_line(rows):
            _note(line)


def low_range_line(rows: list[dict[str, Any]]) -> str:
    """The console line for scans flagged ``input: low-range`` ("" for none): how many, an example, the fix.

    The flag alone (a row among thousands) is easy to miss, and the fix is in the data, so the run says it once.
    """
    low = [r for r in rows if "low-range" in str(r.get("input_check", "")).split()]
    if not low:
        return ""
    return f"{len(low)} scan(s) flagged input: low-range (the reason column says why), e.g. {low[0]['input']}: " + str(
        low[0].get("reason", "")
    ).removeprefix("input: low-range: ")


def _versions(engine_info: dict[str, Any]) -> dict[str, Any]:
    import PIL

    import segapp

    return {
        "segapp": segapp.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        **{k: v for k, v in engine_info.items() if k in ("torch", "onnxruntime")},
    }


def write_run_json(output_dir: Path, summary: FolderSummary, info: dict[str, Any], name: str = "run.json") -> None:
    """``run.json`` (a shard's ``run.shard-003-of-008.json``): model file and hash, options, engine,
    versions, counts and stage timings."""
    counts = {k: getattr(summary, k) for k in ("ok", "failed", "skipped_unsupported", "skipped_done", "images")}
    payload = {
        **info,
        "summary": {**counts, "seconds": round(summary.seconds, 3), "interrupted": bool(summary.interrupted)},
        "stages_s": {k: round(v, 3) for k, v in summary.stages.items()},
        "exit_code": summary.exit_code,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with atomic_write(output_dir / name, suffix=".json") as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str))


def _note(line: str) -> None:
    print(f"segapp-predict: note: {line}", file=sys.stderr, flush=True)


def predict_folder(
    predictor: Predictor,
    input_dir: str | Path,
    output_dir: str | Path,
    options: FolderOptions | None = None,
    info: dict[str, Any] | None = None,
) -> FolderSummary:
    """Predict every supported file under ``input_dir`` into ``output_dir``.

    Writes masks (see :mod:`segapp.inference.outputs` for names), ``predictions.csv`` and
    ``run.json``, holding the folder's lock throughout. Returns the summary; its ``exit_code``
    is what the CLI exits with (130/143 when Ctrl-C/SIGTERM stopped it early). With
    ``options.shard`` only that shard's inputs, into the shard's own CSV, run.json, journal,
    record, lock and temp files; no review.html (``segapp-merge`` writes it).

    Raises:
        ValueError: missing input folder, or an output folder inside the input folder.
        RunMismatchError: the output folder holds a run with other options (see ``resume``/``overwrite``).
        LockError: another run holds the output folder's lock.
        OutputError: the output folder cannot be written (a file, not writable, disk full).
    """
    options, info = options or FolderOptions(), info or {}
    if predictor.rules.unreliable:
        _note(f"every prediction is flagged 'model: trust not calibrated': {predictor.rules.unreliable}")
    run = FolderRun(predictor, Path(input_dir), Path(output_dir), options)
    lock_name = run.files.lock if options.shard else options.lock_name
    lock = FolderLock(run.output_dir, name=lock_name, break_lock=options.break_lock, notes=_note)
    with out.writing(run.output_dir):
        run.output_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    try:
        with temp_prefix(run.files.temp_prefix):
            return _locked_run(run, predictor, info)
    finally:
        lock.release()


def _locked_run(run: FolderRun, predictor: Predictor, info: dict[str, Any]) -> FolderSummary:
    """Check and record the run's options, predict, and write run.json (the lock is held)."""
    options = run.opts
    record = mask_record(predictor, options, run.input_dir, info)
    run.series_uid, run.algorithm = _seg_identity(run, predictor, record, info)
    with out.writing(run.output_dir):
        prepare_output_folder(run.output_dir, record, options.resume, options.overwrite, run.files)
    summary = run.run()
    with out.writing(run.output_dir):
        write_run_json(run.output_dir, summary, _run_meta(run, predictor, record, info), run.files.run_json)
    return summary


def _seg_identity(
    run: FolderRun, predictor: Predictor, record: dict[str, Any], info: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The DICOM SEG series UID of this job and the algorithm identification its SEGs carry.

    The UID is derived from the output folder and the job's record (the record without the
    shard index), so every shard of one job, and a --resume of it, writes into one series.
    """
    if not run.opts.dicom_seg:
        return "", {}
    from segapp.inference.dicom_seg import job_series_uid

    job = json.dumps({"output": str(run.output_dir), **job_record(record)}, sort_keys=True, default=str)
    net = (predictor.engine.meta.get("net") or {}).get("name", "segapp-model")
    algorithm = {
        "name": f"{net} x{predictor.engine.members}" if predictor.engine.members > 1 else net,
        "sha256": str(record.get("model", "")),
        "threshold": predictor.threshold,
        "keep_largest": bool(predictor.keep_largest),
        "min_size": predictor.min_size,
    }
    if run.opts.save_probs:  # FRACTIONAL: the stored probabilities are calibrated; say on which scale
        algorithm["threshold_calibrated"] = round(predictor.calibrated_threshold, 6)
    return job_series_uid(job), algorithm


def _run_meta(run: FolderRun, predictor: Predictor, record: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """What run.json says besides the counts: folders, engine, versions, options, trust, record, shard."""
    options = run.opts
    engine_info = predictor.engine.describe()
    meta = {
        "input": str(run.input_dir),
        "output": str(run.output_dir),
        "engine": engine_info,
        "versions": _versions(engine_info),
        "options": {
            **asdict(options),
            "threshold": predictor.threshold,
            "tta": predictor.tta,
            "mode": predictor.mode,
            "keep_largest": predictor.keep_largest,
            "min_size": predictor.min_size,
            "batch_size": predictor.batch_size,
            "from_model": list(getattr(predictor, "from_model", ())),
        },
        "trust": {
            "members": predictor.engine.members,
            "ood_statistics": bool(getattr(predictor.engine, "has_ood", False)),
            "rules": predictor.rules.__dict__,
            "calibrated_threshold": predictor.calibrated_threshold,
            "source": getattr(predictor.engine, "source", None),
            "member_files": getattr(predictor.engine, "member_files", None),
        },
        "mask_record": record,
        "preprocess": predictor.spec.to_dict(),
        **info,
    }
    if options.shard is not None:
        meta["shard"] = {"index": options.shard.index, "count": options.shard.count, "files": asdict(run.files)}
    return meta
