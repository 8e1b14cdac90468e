"""Decode and preprocess input files, in parallel DataLoader workers when torch is installed.

Each item is one input file: its frames' network inputs, sizes and non-identifying metadata,
or the reason it could not be read. Decoding never raises: a bad file becomes an error item.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from segapp.inference.lock import pid_alive, process_start_time
from segapp.inference.trust import input_note
from segapp.io import ReadError, ReadLimits
from segapp.io.scans import depth_known, read_scan


@dataclass
class Decoded:
    """One input file after decoding and preprocessing (or the reason it failed)."""

    rel: str
    kind: str = ""
    inputs: list[np.ndarray] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    raw: list[np.ndarray] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    checks: list[list[str]] = field(default_factory=list)  # per frame: input checks that fired
    notes: list[str] = field(default_factory=list)  # per frame: what a check found and the fix ("" for none)
    error: str = ""
    decode_s: float = 0.0
    prep_s: float = 0.0


class FileDataset:
    """Map-style dataset over files (a plain class: DataLoader needs only ``__getitem__``/``__len__``).

    Args:
        root: Input root (paths are reported relative to it).
        files: Files to read.
        prepare: Raw frame -> network input (the predictor's :meth:`prepare`).
        keep_raw: Keep decoded frames (needed for overlays).
        nifti_axis: Slice axis for 3D NIfTI volumes.
        limits: Reader size limits (:class:`segapp.io.ReadLimits`), checked from each file's
            header before decoding; the defaults when None.
        check: Raw frame and ``depth_known`` (:func:`segapp.io.scans.depth_known` of its file) ->
            the input checks that fire (:func:`segapp.inference.trust.input_checks`).
    """

    def __init__(
        self,
        root: Path,
        files: list[Path],
        prepare: Callable[[np.ndarray], np.ndarray],
        keep_raw: bool = False,
        nifti_axis: int = 2,
        limits: ReadLimits | None = None,
        check: Callable[..., list[str]] | None = None,
    ) -> None:
        self.root, self.files, self.prepare, self.check = root, files, prepare, check
        self.keep_raw, self.nifti_axis = keep_raw, nifti_axis
        self.limits = limits

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Decoded:
        path = self.files[i]
        item = Decoded(rel=path.relative_to(self.root).as_posix())
        t0 = time.perf_counter()
        if path.is_symlink() and not path.exists():  # dangling: an error row, never a silent skip
            item.error = f"broken symlink -> {os.readlink(path)} (its target does not exist)"
            return item
        try:
            scan = read_scan(path, nifti_axis=self.nifti_axis, limits=self.limits)
            t1 = time.perf_counter()
            item.inputs = [self.prepare(f) for f in scan.frames]
            known = depth_known(scan)
            item.checks = [self.check(f, depth_known=known) if self.check else [] for f in scan.frames]
            item.notes = [input_note(f, cs) for f, cs in zip(scan.frames, item.checks, strict=True)]
            item.prep_s = time.perf_counter() - t1
        except ReadError as e:
            item.error = e.reason
        except Exception as e:  # never let one odd file stop the run
            item.error = f"cannot process this file ({type(e).__name__}: {e})"
        else:
            item.kind, item.meta = scan.kind, scan.meta
            item.sizes = [tuple(f.shape[:2]) for f in scan.frames]
            item.raw = scan.frames if self.keep_raw else None
        item.decode_s = time.perf_counter() - t0 - item.prep_s
        return item


def _identity(x: Decoded) -> Decoded:
    return x


def _gone(pid: int, start: str | None) -> bool:
    """Whether ``pid`` has died (a zombie its own parent has not reaped yet counts) or was reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return not pid_alive(pid)  # no /proc: only a dead PID can be seen
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[0] in ("Z", "X") or fields[19] != start


def _die_with(parent_pid: int, parent_start: str | None) -> None:
    """Poll the main process; when it is gone (``kill -9`` included), stop this worker and the
    forkserver it was forked from (it would outlive the main process otherwise)."""
    while True:
        time.sleep(0.5)
        if _gone(parent_pid, parent_start):
            forkserver = os.getppid()
            try:
                if b"multiprocessing.forkserver" in Path(f"/proc/{forkserver}/cmdline").read_bytes():
                    os.kill(forkserver, signal.SIGKILL)
            except OSError:
                pass
            os._exit(1)


def _set_parent_death_signal() -> None:
    """Linux: SIGKILL this process when its parent (the forkserver) dies (``PR_SET_PDEATHSIG``)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_init(_: int, parent_pid: int = 0, parent_start: str | None = None) -> None:
    """Set up a decoding worker: die with the main process, leave signals to it, one OpenCV thread.

    DataLoader workers are children of the forkserver, not of the main process, so a killed
    main process would leave them (and through them the forkserver and resource tracker)
    running: a thread polls the main process and exits the worker when it is gone. Ctrl-C and
    SIGTERM are the main process's to handle (it stops the workers itself).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _set_parent_death_signal()
    if parent_pid:
        threading.Thread(target=_die_with, args=(parent_pid, parent_start), daemon=True).start()
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setNumThreads(1)  # the workers already use every core


def iterate(dataset: FileDataset, workers: int) -> Iterator[Decoded]:
    """Yield decoded files in order: a torch DataLoader with ``workers`` processes, or a plain loop.

    The plain loop runs when ``workers == 0`` or torch is not installed (slim ONNX container).
    """
    if workers > 0:
        try:
            from torch.utils.data import DataLoader
        except ImportError:
            workers = 0
    if workers <= 0:
        yield from (dataset[i] for i in range(len(dataset)))
        return
    # forkserver, not fork: forking a process whose OpenCV/OpenMP thread pools already ran
    # (any earlier inference in the same process) can deadlock the workers.
    loader = DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=workers,  # type: ignore[arg-type]
        collate_fn=_identity,
        prefetch_factor=2,
        worker_init_fn=partial(_worker_init, parent_pid=os.getpid(), parent_start=process_start_time(os.getpid())),
        multiprocessing_context="forkserver",
    )
    yield from loader
