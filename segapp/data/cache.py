"""User cache folder: pre-flight results, dataset statistics and resized image/mask copies.

Location: ``$SEGAPP_CACHE_DIR``, else ``$XDG_CACHE_HOME/segapp``, else ``~/.cache/segapp``;
never beside the data (which may be read-only). Entries are keyed by the files' absolute path,
size, modification and change time plus the settings that shaped them, so a changed file or size
gets a new entry; stale entries are harmless and can be deleted with the folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from segapp.io import atomic_write
from segapp.io.writers import cache_dir

__all__ = ["cache_dir"]  # one definition, in segapp.io (inference caches there too)

log = logging.getLogger(__name__)
# Raised whenever a reader decodes a file differently, so that no entry made by the older reader is
# reused (keys see the file, not the code). 2: DICOM rescale/window from Enhanced functional groups,
# padding left out of the gray range, and the TIFF Orientation tag applied; 3: a declared 9-15-bit
# depth is scaled to 16 bits.
CACHE_VERSION = 3


def file_stamp(path: Path) -> str:
    """``absolute path|size|mtime_ns|ctime_ns``: changes whenever the file is replaced or edited.

    The change time is there because size and mtime can survive an edit: ``cp -p``, ``rsync -t``
    and unzip set the old mtime back, and a same-size BMP/TIFF/DICOM keeps its size; ``utime``
    cannot set the ctime. A ``chmod`` or a move also changes it: a needless miss, never a stale hit.
    """
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"


def digest(parts: Iterable[Any]) -> str:
    """SHA-256 (first 24 hex digits) of the ``repr`` of ``parts``, with the cache version."""
    h = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def load_json(sub: str, key: str) -> dict | None:
    """A cached JSON object, or ``None`` when absent or unreadable."""
    path = cache_dir(sub) / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def save_json(sub: str, key: str, obj: dict) -> None:
    """Store ``obj`` atomically; a read-only cache folder only logs a warning."""
    try:
        with atomic_write(cache_dir(sub) / f"{key}.json") as tmp:
            tmp.write_text(json.dumps(obj))
    except OSError as e:
        log.warning("segapp cache %s is not writable (%s); set SEGAPP_CACHE_DIR", cache_dir(), e)


class ResizedCache:
    """On-disk copies of resized images (uint16, exact to 1/65535) and masks (uint8 0/1).

    Args:
        settings: Everything besides the files that shapes an entry (size, channels, threshold).
    """

    def __init__(self, *settings: Any) -> None:
        self.settings = settings
        self.folder = cache_dir("resized")

    def key(self, files: Iterable[Path]) -> str:
        return digest([*self.settings, *(file_stamp(f) for f in files)])

    def get(
        self, files: Iterable[Path], compute: Callable[[], tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The cached ``(image float32 [0,1], mask uint8)``, computing and storing it on a miss."""
        path = self.folder / f"{self.key(files)}.npz"
        try:
            with np.load(path) as z:
                return z["image"].astype(np.float32) / 65535.0, z["mask"]
        except (OSError, KeyError, ValueError):
            pass
        img, mask = compute()
        q = np.round(np.clip(img, 0, 1) * 65535.0).astype(np.uint16)
        try:
            with atomic_write(path, suffix=".npz") as tmp, tmp.open("wb") as f:
                np.savez(f, image=q, mask=mask.astype(np.uint8))
        except OSError as e:
            log.warning("cannot write the resized cache in %s (%s); set SEGAPP_CACHE_DIR", self.folder, e)
        return q.astype(np.float32) / 65535.0, mask
