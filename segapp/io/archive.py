"""Cheap integrity check of a torch checkpoint file (a zip archive) before anything unpickles it."""

from __future__ import annotations

import zipfile
from pathlib import Path


def checkpoint_problem(path: str | Path) -> str | None:
    """What is wrong with the checkpoint file at ``path``, in words, or None if it looks whole.

    Checks that the file exists, is not empty and is a complete zip archive (torch's format
    since 1.6): a checkpoint cut short by a full disk or a killed process has no central
    directory and is caught here instead of by torch's zip reader.
    """
    path = Path(path)
    if not path.exists():
        return "not found" if not path.is_symlink() else f"a broken symlink -> {path.readlink()}"
    if not path.is_file():
        return "a directory, not a checkpoint file" if path.is_dir() else "not a regular file"
    size = path.stat().st_size
    if size == 0:
        return "empty (0 bytes): the run that wrote it was probably stopped while saving"
    try:
        with zipfile.ZipFile(path) as zf:
            zf.infolist()
    except zipfile.BadZipFile:
        return f"truncated or not a torch checkpoint ({size} bytes, not a complete zip archive)"
    except OSError as e:
        return f"cannot be read: {e.strerror or e}"
    return None
