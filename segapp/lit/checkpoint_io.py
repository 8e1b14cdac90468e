"""Atomic checkpoint writes: a full disk or a kill never leaves a truncated ``last.ckpt``.

Lightning's ``TorchCheckpointIO`` writes the file in place; here the checkpoint goes to a
temporary file in the same folder, is flushed and fsynced, and is then renamed over the old one
(``os.replace`` is atomic on POSIX), so the previous good checkpoint survives any failure.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from segapp.errors import OutputWriteError


class CheckpointWriteError(OutputWriteError):
    """A checkpoint could not be written (disk full, folder not writable); the old one is kept."""


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` through a temp file + fsync + rename in the same folder.

    Raises:
        CheckpointWriteError: naming the file, the OS reason and the fix; ``path`` is untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from e
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _write_error(path, e) from e
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _write_error(path: Path, e: OSError) -> CheckpointWriteError:
    kept = " (the previous checkpoint there is kept)" if path.exists() else ""
    fix = "free disk space" if e.errno == errno.ENOSPC else "make the folder writable or set trainer.default_root_dir"
    return CheckpointWriteError(
        f"cannot write checkpoint {path}: {e.strerror or e}{kept}; fix: {fix}, then resume with --ckpt_path last"
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose ``save_checkpoint`` is atomic (see module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_torch_save(checkpoint, path)
