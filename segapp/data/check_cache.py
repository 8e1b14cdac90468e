"""Store a cached check report with root-relative paths, and re-anchor it on the current root.

The check cache is keyed by resolved file paths, so one entry serves the same dataset however
it is reached (``data/kvasir``, ``../data/kvasir``, an absolute path, a symlink). The report
names files, so it is stored relative to the dataset root and replayed relative to the root of
the current call: a cached report never prints paths meant for another working folder.
"""

from __future__ import annotations

import os
from pathlib import Path

_PATH_LISTS = ("images_without_mask", "masks_without_image", "missing", "low_range")
_PATH_RECORDS = ("unreadable", "mask_misfits")
_TOKEN = "<<path>>"


def _rel(path: str, root: str) -> str:
    try:
        return os.path.relpath(path, root)
    except ValueError:  # another drive on Windows: keep it absolute
        return path


def _abs(rel: str, root: str) -> str:
    return rel if os.path.isabs(rel) or root == "." else os.path.join(root, rel)


def relative_report(d: dict, root: Path | None) -> dict:
    """A copy of the report dict ``d`` whose file paths are relative to ``root``."""
    base = str(root) if root is not None else "."
    out = dict(d, root=".")
    for k in _PATH_LISTS:
        out[k] = [_rel(p, base) for p in d.get(k, [])]
    for k in _PATH_RECORDS:
        out[k] = [
            {**r, "path": _rel(r["path"], base), "reason": r["reason"].replace(r["path"], _TOKEN)} for r in d.get(k, [])
        ]
    out["errors"], out["warnings"] = [], []  # rebuilt from the anchored fields on load
    return out


def anchor_report(d: dict, root: Path | None) -> dict:
    """Inverse of :func:`relative_report` for the current spelling of ``root`` (errors and warnings
    are left empty: the caller judges the anchored report again)."""
    base = str(root) if root is not None else "."
    out = dict(d, root=base)
    for k in _PATH_LISTS:
        out[k] = [_abs(p, base) for p in d.get(k, [])]
    for k in _PATH_RECORDS:
        recs = []
        for r in d.get(k, []):
            path = _abs(r["path"], base)
            recs.append({**r, "path": path, "reason": r["reason"].replace(_TOKEN, path)})
        out[k] = recs
    return out
