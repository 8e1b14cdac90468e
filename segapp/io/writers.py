"""Writers that never leave a half-written file behind (temp file + rename).

Temp files are named ``<prefix><random><suffix>`` beside their target; the prefix is ``.tmp-``
unless a caller sets another one for a stretch of code with :func:`temp_prefix`. A sharded
prediction run writes ``.tmp-s003-*`` files, so the start-up clean-up of one shard removes only
its own leftovers and never another shard's writes in progress.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

TEMP_PREFIX = ".tmp-"
_prefix: contextvars.ContextVar[str] = contextvars.ContextVar("segapp_temp_prefix", default=TEMP_PREFIX)


@contextlib.contextmanager
def temp_prefix(prefix: str) -> Iterator[None]:
    """Name the temp files of every :func:`atomic_write` inside the block ``<prefix>...``.

    The prefix must start with ``.tmp-`` (hidden, and still matched by a plain ``.tmp-*``
    clean-up), e.g. ``.tmp-s003-`` for shard 3 of a sharded run.
    """
    if not prefix.startswith(TEMP_PREFIX):
        raise ValueError(f"temp-file prefix {prefix!r} must start with {TEMP_PREFIX!r}")
    token = _prefix.set(prefix)
    try:
        yield
    finally:
        _prefix.reset(token)


@contextlib.contextmanager
def atomic_write(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A process killed inside the block leaves at most a ``.tmp-*`` file, never a truncated
    ``path``. The temp name keeps the final suffix so writers that pick a format by
    extension (PIL, nibabel) still work; its prefix is ``.tmp-`` or the one :func:`temp_prefix` set.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path: Path | None = None
    try:  # the temp file is created inside the try: a Ctrl-C/SIGTERM right after mkstemp still removes it
        fd, tmp = tempfile.mkstemp(prefix=_prefix.get(), suffix=suffix or "".join(path.suffixes), dir=path.parent)
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


def cache_dir(sub: str | None = None) -> Path:
    """The segapp cache folder (or its subfolder ``sub``); not created here.

    ``$SEGAPP_CACHE_DIR``, else ``$XDG_CACHE_HOME/segapp``, else ``~/.cache/segapp``: never beside
    the data or the models (the resized-image cache and the ONNX export cache live here).
    """
    env = os.environ.get("SEGAPP_CACHE_DIR")
    if env:
        base = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "segapp"
    return base / sub if sub else base
