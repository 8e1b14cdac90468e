"""The output-folder lock (issue 14, item 4): holder recorded, live holders refused, gone ones taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from segapp.inference.lock import LOCK_NAME, FolderLock, LockError, process_start_time


@pytest.fixture
def sleeper():
    """A live process that is not us (stands for another segapp-predict run)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def write_lock(folder, **holder) -> None:
    (folder / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "since": "then", **holder}))


def test_the_lock_records_host_pid_and_start_time_and_is_released(tmp_path):
    with FolderLock(tmp_path) as lock:
        holder = json.loads(lock.path.read_text())
        assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid()
        assert holder["start_time"] == process_start_time(os.getpid()) and holder["start_time"] is not None
        with pytest.raises(LockError, match=f"PID {os.getpid()}"):
            FolderLock(tmp_path).acquire()  # a second run is refused while the first holds it
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_live_holder_is_refused_with_its_name_unless_break_lock(tmp_path, sleeper):
    write_lock(tmp_path, pid=sleeper.pid, start_time=process_start_time(sleeper.pid))
    with pytest.raises(LockError, match=rf"PID {sleeper.pid} on host .*--break-lock"):
        FolderLock(tmp_path).acquire()
    notes: list[str] = []
    with FolderLock(tmp_path, break_lock=True, notes=notes.append):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert len(notes) == 1 and "--break-lock" in notes[0]


def test_a_dead_or_reused_pid_on_this_host_is_taken_over_with_a_note(tmp_path, sleeper):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for holder, why in (
        ({"pid": dead.pid, "start_time": "1"}, "no longer running"),
        ({"pid": sleeper.pid, "start_time": "1"}, "another process"),
    ):
        write_lock(tmp_path, **holder)
        notes: list[str] = []
        with FolderLock(tmp_path, notes=notes.append):
            assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
        assert len(notes) == 1 and why in notes[0], notes


@pytest.mark.parametrize(
    "holder", [{"host": "elsewhere", "pid": 12345, "start_time": "9"}, {"pid": 1, "start_time": "1"}]
)
def test_another_host_or_an_unprovable_pid_is_refused(tmp_path, holder):
    write_lock(tmp_path, **holder)
    with pytest.raises(LockError, match="--break-lock"):
        FolderLock(tmp_path).acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == holder["pid"]  # left alone


def test_one_lock_per_shard(tmp_path):
    with (
        FolderLock(tmp_path, name=".segapp-predict.shard-0.lock"),
        FolderLock(tmp_path, name=".segapp-predict.shard-1.lock"),
    ):
        assert len(list(tmp_path.glob("*.lock"))) == 2


def test_release_leaves_a_lock_that_another_run_took_over(tmp_path):
    lock = FolderLock(tmp_path)
    lock.acquire()
    write_lock(tmp_path, pid=4242, start_time="7")  # another run broke our lock
    lock.release()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == 4242
