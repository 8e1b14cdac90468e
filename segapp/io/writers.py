"""Writers that never leave a half-written file behind (temp file + rename)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image


@contextlib.contextmanager
def atomic_write(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A process killed inside the block leaves at most a ``.tmp-*`` file, never a truncated
    ``path``. The temp name keeps the final suffix so writers that pick a format by
    extension (PIL, nibabel) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path: Path | None = None
    try:  # the temp file is created inside the try: a Ctrl-C/SIGTERM right after mkstemp still removes it
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix or "".join(path.suffixes), dir=path.parent)
        tmp_path = Path(tmp)
        os.close(fd)
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def write_mask_png(path: str | Path, mask: np.ndarray) -> None:
    """Write a boolean ``H x W`` mask as an 8-bit PNG with values 0 and 255, atomically."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2D (H x W), got shape {mask.shape}")
    with atomic_write(path) as tmp:
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(tmp, format="PNG")
