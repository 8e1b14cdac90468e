"""Predict every scan under a folder: mirrored output tree, CSV, run.json, resumable.

A file that cannot be read becomes an ``error`` row and the run goes on; files no reader
handles are skipped and counted. Outputs are written atomically and recorded in a journal
after they are in place, so ``resume=True`` skips finished inputs after a killed run.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segapp.inference import outputs as out
from segapp.inference.loader import Decoded, FileDataset, iterate
from segapp.inference.postprocess import mask_stats, overlay
from segapp.inference.predictor import Predictor
from segapp.io import DEFAULT_MAX_FILE_PIXELS, DEFAULT_MAX_PIXELS, ReadLimits, atomic_write
from segapp.io.scans import scan_kind

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_NOTHING_READ = 0, 1, 2, 3


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

    @property
    def exit_code(self) -> int:
        """0 all ok; 1 some failed; 3 nothing could be read (see docs/inference.md)."""
        if self.ok + self.skipped_done == 0:
            return EXIT_NOTHING_READ
        return EXIT_SOME_FAILED if self.failed else EXIT_OK

    def line(self) -> str:
        rate = self.images / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.ok} ok / {self.failed} failed / {self.skipped_unsupported} skipped (unsupported type)"
                f" / {self.skipped_done} already done; {self.images} images in {self.seconds:.1f} s"
                f" ({rate:.1f} images/s)")  # fmt: skip


def check_folders(input_dir: Path, output_dir: Path) -> tuple[Path, Path]:
    """Resolve both folders; refuse a missing input or an output inside (or equal to) the input.

    Raises:
        ValueError: with the fix.
    """
    input_dir, output_dir = Path(input_dir).resolve(), Path(output_dir).resolve()
    if not input_dir.is_dir():
        raise ValueError(f"input folder {input_dir} not found; expected a folder of images or scans")
    if output_dir == input_dir or input_dir in output_dir.parents:
        raise ValueError(f"output folder {output_dir} is inside the input folder {input_dir}; choose another")
    return input_dir, output_dir


def discover(input_dir: Path) -> tuple[list[Path], int]:
    """Supported files under ``input_dir`` (sorted, recursive) and the count of skipped ones."""
    files, skipped = [], 0
    for p in sorted(input_dir.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        if scan_kind(p) is None:
            skipped += 1
        else:
            files.append(p)
    return files, skipped


class FolderRun:
    """One run over a folder; see :func:`predict_folder`."""

    def __init__(self, predictor: Predictor, input_dir: Path, output_dir: Path, options: FolderOptions) -> None:
        self.p, self.opts = predictor, options
        self.input_dir, self.output_dir = check_folders(input_dir, output_dir)
        self.summary = FolderSummary()
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self._pending: list[Decoded] = []
        self._last_progress = 0.0

    def run(self) -> FolderSummary:
        t0 = time.perf_counter()
        out.remove_stale_temps(self.output_dir)
        journal = out.Journal(self.output_dir, resume=self.opts.resume)
        files, self.summary.skipped_unsupported = discover(self.input_dir)
        todo = [f for f in files if f.relative_to(self.input_dir).as_posix() not in journal.done]
        for rel, entry in journal.done.items():
            self.rows[rel] = entry["rows"]
        self.summary.skipped_done = len(files) - len(todo)
        self.total = len(todo)
        self.journal = journal
        keep_raw = self.opts.overlay
        limits = ReadLimits(self.opts.max_pixels, self.opts.max_file_pixels)
        dataset = FileDataset(self.input_dir, todo, self.p.preparer(), keep_raw, self.opts.nifti_axis, limits)
        try:
            for item in iterate(dataset, self.opts.workers):
                self._add(item)
            self._flush()
        finally:
            journal.close()
        self.summary.seconds = time.perf_counter() - t0
        self._finish(files)
        return self.summary

    def _add(self, item: Decoded) -> None:
        self.summary.stages["decode"] += item.decode_s
        self.summary.stages["preprocess"] += item.prep_s
        if item.error:
            self._record(item, [{"input": item.rel, "status": "error", "reason": item.error,
                                 "seconds": round(item.decode_s + item.prep_s, 4)}], [])  # fmt: skip
            return
        self._pending.append(item)
        if self.p.mode == "tile" or sum(len(i.inputs) for i in self._pending) >= self.p.batch_size:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        items, self._pending = self._pending, []
        t0 = time.perf_counter()
        probs = self.p.probs_prepared([x for i in items for x in i.inputs], [s for i in items for s in i.sizes])
        forward = time.perf_counter() - t0
        self.summary.stages["forward"] += forward
        n_total, k = len(probs), 0
        for item in items:
            n = len(item.inputs)
            share = forward * n / max(n_total, 1)
            self._write(item, probs[k : k + n], share)
            k += n
            item.inputs = []

    def _write(self, item: Decoded, probs: list[np.ndarray], forward_s: float) -> None:
        t0 = time.perf_counter()
        try:
            masks = [self.p.to_mask(pr) for pr in probs]
            t1 = time.perf_counter()
            self.summary.stages["postprocess"] += t1 - t0
            rows, outputs = (self._write_nifti if item.kind == "nifti" else self._write_frames)(item, probs, masks)
            self.summary.stages["write"] += time.perf_counter() - t1
        except OSError as e:
            rows, outputs = [{"input": item.rel, "status": "error", "reason": f"cannot write outputs: {e}"}], []
        seconds = round(item.decode_s + item.prep_s + forward_s + time.perf_counter() - t0, 4)
        for r in rows:
            r["seconds"] = seconds
        self._record(item, rows, outputs)

    def _write_frames(self, item: Decoded, probs: list[np.ndarray], masks: list[tuple[np.ndarray, int]]):
        rel = Path(item.rel)
        multi = len(probs) > 1
        rows, outputs = [], []
        for k, (pr, (mask, comps)) in enumerate(zip(probs, masks)):
            frame = k if multi else None
            name = out.output_name(rel, "mask", frame)
            out.write_mask(self.output_dir / name, mask)
            outputs.append(name.as_posix())
            if self.opts.save_probs:
                pname = out.output_name(rel, "prob", frame, self.opts.save_probs)
                out.write_probs(self.output_dir / pname, pr, self.opts.save_probs)
                outputs.append(pname.as_posix())
            if self.opts.overlay and item.raw is not None:
                oname = out.output_name(rel, "overlay", frame)
                out.write_overlay(self.output_dir / oname, overlay(item.raw[k], mask))
                outputs.append(oname.as_posix())
            row = {"input": item.rel, "frame": "" if item.kind != "dicom" else k,
                   "sop_instance_uid": item.meta.get("sop_instance_uid", ""), "output": name.as_posix(),
                   "status": "ok", "reason": "", **mask_stats(mask, pr, comps)}  # fmt: skip
            rows.append(row)
        return rows, outputs

    def _write_nifti(self, item: Decoded, probs: list[np.ndarray], masks: list[tuple[np.ndarray, int]]):
        rel, meta = Path(item.rel), item.meta
        axis = meta["axis"]
        stack = (lambda arrs: arrs[0]) if len(probs) == 1 and len(meta["shape"]) == 2 else \
            (lambda arrs: np.stack(arrs, axis=axis))  # fmt: skip
        volume = stack([m for m, _ in masks])
        name = out.output_name(rel, "mask", ext="nii.gz")
        out.write_nifti(self.output_dir / name, volume, meta)
        outputs = [name.as_posix()]
        if self.opts.save_probs:
            pname = out.output_name(rel, "prob", ext="nii.gz")
            out.write_nifti(self.output_dir / pname, stack(probs), meta, dtype=np.float32)
            outputs.append(pname.as_posix())
        pixels = int(volume.sum())
        mean_prob = round(float(stack(probs)[volume].mean()), 4) if pixels else ""
        row = {"input": item.rel, "frame": "", "sop_instance_uid": "", "output": name.as_posix(), "status": "ok",
               "reason": "", "height": probs[0].shape[0], "width": probs[0].shape[1], "lesion_pixels": pixels,
               "lesion_fraction": round(pixels / volume.size, 6), "components": sum(c for _, c in masks),
               "bbox": "", "mean_prob": mean_prob}  # fmt: skip
        return [row], outputs

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
        print(f"\r[{done}/{self.total}] {self.summary.failed} failed, {self.summary.images / elapsed:.1f} images/s",
              end="", file=sys.stderr, flush=True)  # fmt: skip

    def _finish(self, files: list[Path]) -> None:
        if self.opts.progress:
            print(file=sys.stderr)
        order = [f.relative_to(self.input_dir).as_posix() for f in files]
        out.write_csv(self.output_dir / "predictions.csv", [r for rel in order for r in self.rows.get(rel, [])])


def _versions(engine_info: dict[str, Any]) -> dict[str, Any]:
    import PIL

    import segapp

    return {"segapp": segapp.__version__, "python": platform.python_version(), "numpy": np.__version__,
            "pillow": PIL.__version__, **{k: v for k, v in engine_info.items() if k in ("torch", "onnxruntime")}}  # fmt: skip


def write_run_json(output_dir: Path, summary: FolderSummary, info: dict[str, Any]) -> None:
    """``run.json``: model file and hash, options, engine, versions, counts and stage timings."""
    counts = {k: getattr(summary, k) for k in ("ok", "failed", "skipped_unsupported", "skipped_done", "images")}
    payload = {**info, "summary": {**counts, "seconds": round(summary.seconds, 3)},
               "stages_s": {k: round(v, 3) for k, v in summary.stages.items()}, "exit_code": summary.exit_code,
               "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    with atomic_write(output_dir / "run.json", suffix=".json") as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str))


def predict_folder(predictor: Predictor, input_dir: str | Path, output_dir: str | Path,
                   options: FolderOptions | None = None, info: dict[str, Any] | None = None) -> FolderSummary:  # fmt: skip
    """Predict every supported file under ``input_dir`` into ``output_dir``.

    Writes masks (see :mod:`segapp.inference.outputs` for names), ``predictions.csv`` and
    ``run.json``. Returns the summary; its ``exit_code`` is what the CLI exits with.

    Raises:
        ValueError: missing input folder, or an output folder inside the input folder.
    """
    options = options or FolderOptions()
    run = FolderRun(predictor, Path(input_dir), Path(output_dir), options)
    summary = run.run()
    engine_info = predictor.engine.describe()
    meta = {"input": str(run.input_dir), "output": str(run.output_dir), "engine": engine_info,
            "versions": _versions(engine_info), "options": {**asdict(options), "threshold": predictor.threshold,
            "tta": predictor.tta, "mode": predictor.mode, "keep_largest": predictor.keep_largest,
            "min_size": predictor.min_size, "batch_size": predictor.batch_size},
            "preprocess": predictor.spec.to_dict(), **(info or {})}  # fmt: skip
    write_run_json(run.output_dir, summary, meta)
    return summary
