"""A lock file on an output folder, so two runs never write into one folder at once.

The lock is created atomically (``O_CREAT | O_EXCL``) and records the holder's host, PID and
process start time (``/proc/<pid>/stat`` field 22 on Linux). A lock left by a run that is
*provably* gone (same host, and the PID is dead or now belongs to a process that started at
another time) is taken over with a note; any other existing lock (another host, PID 1 in a
container, no ``/proc`` to compare start times) is refused unless ``break_lock=True``.

Sharded runs take one lock per shard: pass ``name`` (``.segapp-predict.shard-003-of-008.lock``,
see :mod:`segapp.inference.shards`), so shards run side by side while a second run of one shard
is refused; ``segapp-merge`` refuses while any shard's lock is held by a live run.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segapp.errors import UserError

LOCK_NAME = ".segapp-predict.lock"


class LockError(UserError):
    """The output folder is locked by another run (the message names the holder and the fix)."""


def process_start_time(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None.

    None when the process does not exist or there is no ``/proc`` (macOS, some sandboxes).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # field 2 (comm) is in parentheses and may hold spaces: split after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None  # field 22 overall = index 19 after comm


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (signal 0; EPERM means it exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def this_holder() -> dict[str, Any]:
    """Host, PID and start time of this process, as written into a lock."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "start_time": process_start_time(pid),
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def holder_gone(holder: dict[str, Any]) -> tuple[bool, str]:
    """Is the lock's holder provably gone? Returns ``(gone, why)``.

    Provably gone: same host and the PID is dead, or alive with another start time (PID reused).
    Not provable: another host, PID 1 (a container's init: PIDs are per container), this very
    process, or no start time on either side while the PID is alive.
    """
    if holder.get("unreadable"):
        if holder.get("age", 0) > 10:
            return True, "the lock file is empty or unreadable (its writer was killed while creating it)"
        return False, "the lock file is being written"
    host, pid, start = holder.get("host"), holder.get("pid"), holder.get("start_time")
    if host != socket.gethostname():
        return False, f"it was taken on another host ({host}); this host is {socket.gethostname()}"
    if not isinstance(pid, int) or pid <= 1:
        return False, f"its PID ({pid}) cannot be checked (PID 1 is a container's init)"
    if pid == os.getpid():
        return False, "this process holds it"
    if not pid_alive(pid):
        return True, f"PID {pid} is no longer running"
    now = process_start_time(pid)
    if start is not None and now is not None and str(now) != str(start):
        return True, f"PID {pid} now belongs to another process (started at tick {now}, not {start})"
    return False, f"PID {pid} is running" + ("" if now is not None and start is not None else " (start time unknown)")


def describe(holder: dict[str, Any]) -> str:
    """``PID 123 on host vm (started 2026-01-01T10:00:00Z)``."""
    return f"PID {holder.get('pid')} on host {holder.get('host')} (since {holder.get('since', '?')})"


def read_holder(path: Path) -> dict[str, Any] | None:
    """The holder recorded in the lock file ``path`` (None: no lock). An empty or unreadable file
    (its writer was killed between create and write) reads as ``{"unreadable": True, "age": s}``."""
    try:
        text = path.read_text()
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        holder = None
    return holder if isinstance(holder, dict) else {"unreadable": True, "age": round(age, 1)}


@dataclass
class FolderLock:
    """Hold ``folder / name`` while a run writes into ``folder``; a context manager.

    Args:
        folder: The output folder (created if missing).
        name: Lock file name; one per shard for sharded runs.
        break_lock: Take over any existing lock (the user checked its holder is gone).
        notes: Where take-over notes go (a callable taking one line; default: ignored).
    """

    folder: Path
    name: str = LOCK_NAME
    break_lock: bool = False
    notes: Any = None

    def __post_init__(self) -> None:
        self.path = Path(self.folder) / self.name
        self._token: str | None = None

    def acquire(self) -> None:
        """Create the lock, or take over a provably stale one.

        Raises:
            LockError: another run holds it (message names the holder and ``--break-lock``).
            OSError: the folder cannot be written.
        """
        for _ in range(5):  # a lost race against another run taking over a stale lock retries
            if self._create():
                return
            holder = self._read()
            if holder is None:  # released (or still being written) between our two calls
                time.sleep(0.05)
                continue
            gone, why = holder_gone(holder)
            if not (gone or self.break_lock):
                raise LockError(
                    f"output folder {self.folder} is in use by another segapp-predict run: "
                    f"{describe(holder)}, and {why}; fix: wait for it to finish, use another --output, "
                    f"or pass --break-lock if you are sure it is gone (lock file {self.path})"
                )
            self._take_over(holder, why if gone else "--break-lock was given")
        raise LockError(f"could not take the lock {self.path}: other runs keep taking it; fix: retry")

    def _create(self) -> bool:
        payload = json.dumps(this_holder())
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(payload)
        self._token = payload
        return True

    def _read(self) -> dict[str, Any] | None:
        return read_holder(self.path)

    def _take_over(self, holder: dict[str, Any], why: str) -> None:
        """Move the stale lock aside (only one contender's rename succeeds), then retry create."""
        aside = self.path.with_name(f"{self.name}.stale-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = self._read_file(aside)
        if moved is not None and moved != holder and not self.break_lock:
            # we moved a fresh lock another run had just taken: put it back if the slot is free
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
            aside.unlink(missing_ok=True)
            return
        aside.unlink(missing_ok=True)
        if self.notes:
            self.notes(f"took over the lock of {describe(holder)}: {why}")

    @staticmethod
    def _read_file(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def release(self) -> None:
        """Remove the lock if it is still ours (a --break-lock by another run may have replaced it)."""
        if self._token is None:
            return
        try:
            if self.path.read_text() == self._token:
                self.path.unlink()
        except OSError:
            pass
        self._token = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
