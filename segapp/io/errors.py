"""Errors raised by readers: one type, a human reason, the file named."""

from __future__ import annotations

from pathlib import Path


class ReadError(ValueError):
    """A file could not be decoded as an image or mask.

    Args:
        path: The file that failed.
        reason: What went wrong, in words a user can act on.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
