"""SIGTERM handled like Ctrl-C: the run stops, keeps what it finished, and exits with a documented code.

Raising in the main thread (rather than dying at once) lets the folder run drop the file in
flight, close its journal, write ``predictions.csv`` with the rows it finished, release its lock
and stop its decoding workers. Exit codes follow the shell convention: 128 + signal number.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

EXIT_SIGINT, EXIT_SIGTERM = 130, 143


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process gets SIGTERM (a ``KeyboardInterrupt`` kind)."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"signal {signum}")


def exit_code_for(exc: BaseException) -> int:
    """130 for Ctrl-C (SIGINT), 143 for SIGTERM."""
    return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (restored after)."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
