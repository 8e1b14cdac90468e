"""One writer thread that finishes batches in order while the next batch runs the forward pass.

ONNX Runtime and torch release the GIL in the forward pass, and Pillow releases it while it
resizes and encodes, so on a CPU the masks, trust signals, PNGs and thumbnails of batch ``n``
are computed while batch ``n + 1`` is decoded and forwarded (docs/benchmarks.md, "Inference,
issue 18"). One thread keeps the order of the journal and the CSV rows as without it, and only
it writes the journal. At most :data:`MAX_IN_FLIGHT` batches wait, so memory stays bounded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

MAX_IN_FLIGHT = 2


class Writer:
    """Runs submitted calls in order: in one background thread (``threaded``) or at once.

    An exception of a call is raised in the caller's thread by the next :meth:`submit` or by
    :meth:`drain`; calls queued after a failing one still run unless :meth:`stop` cancels them.
    """

    def __init__(self, threaded: bool = True) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="segapp-writer") if threaded else None
        self._inflight: deque[Future] = deque()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` after every earlier call; waits while too many are queued."""
        if self._pool is None:
            fn(*args)
            return
        while len(self._inflight) >= MAX_IN_FLIGHT:
            self._inflight.popleft().result()
        self._inflight.append(self._pool.submit(fn, *args))

    def drain(self) -> None:
        """Wait for every queued call; raise the first exception one of them raised."""
        while self._inflight:
            self._inflight.popleft().result()

    def stop(self) -> None:
        """Let the running call finish, cancel queued ones, end the thread (errors were raised by drain)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._inflight.clear()
