"""The lock that lets invocations started together make a shared thing once (jaxdiff.common.files.exclusive)."""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from helpers import logging_and_signalling
from jaxdiff.common import files
from jaxdiff.common.errors import UserError


def _lock_note(host: str, pid: int) -> str:
    return f"host={host} pid={pid} since=2026-11-27T00:00:00\n"


def test_a_waiting_process_enters_when_the_holder_releases(tmp_path):
    path, logs, order = str(tmp_path / "thing.lock"), [], []
    holding, waiting = threading.Event(), threading.Event()
    log = logging_and_signalling(logs, waiting)

    def holder():
        with files.exclusive(path, "the thing", log=log, poll_s=0.01):
            holding.set()
            waiting.wait(10)  # released only once the waiter has found the lock held, however busy the machine
            order.append("holder done")

    thread = threading.Thread(target=holder)
    thread.start()
    holding.wait(5)
    assert f"pid={os.getpid()}" in open(path).read()  # the lock names its holder
    with files.exclusive(path, "the thing", log=log, poll_s=0.01):
        order.append("waiter in")
    thread.join()
    assert order == ["holder done", "waiter in"]
    assert len(logs) == 1 and logs[0].startswith("waiting for the thing, which host=")
    assert not os.path.exists(path)


def test_the_lock_is_released_when_the_block_fails(tmp_path):
    path = str(tmp_path / "sub" / "thing.lock")  # its directory is made
    with pytest.raises(RuntimeError, match="boom"):
        with files.exclusive(path, "the thing", log=lambda *a: None):
            raise RuntimeError("boom")
    assert not os.path.exists(path)


def test_a_lock_left_by_an_exited_process_on_this_host_is_taken_over(tmp_path):
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    path, logs = str(tmp_path / "thing.lock"), []
    with open(path, "w") as f:
        f.write(_lock_note(socket.gethostname(), exited.pid))
    with files.exclusive(path, "the thing", log=logs.append, poll_s=0.01):
        assert f"pid={os.getpid()}" in open(path).read()
    assert len(logs) == 1 and logs[0].startswith(f"taking over {path}: its holder (host=")


def test_a_lock_held_too_long_from_another_host_says_to_delete_it(tmp_path):
    path = str(tmp_path / "thing.lock")
    with open(path, "w") as f:
        f.write(_lock_note("another-host", 1))
    two_hours_ago = time.time() - 7200
    os.utime(path, (two_hours_ago, two_hours_ago))
    with pytest.raises(UserError, match=r"is making the thing, for 120 min now; .* delete .*thing.lock and rerun"):
        with files.exclusive(path, "the thing", log=lambda *a: None, stale_s=3600):
            pytest.fail("entered a lock another host holds")
    assert os.path.exists(path)  # not removed: the user decides


def test_a_lock_from_another_host_is_waited_for(tmp_path):
    path, logs = str(tmp_path / "thing.lock"), []
    with open(path, "w") as f:
        f.write(_lock_note("another-host", 1))  # pid 1 is alive here, but on another host it is not ours to check
    release = threading.Timer(0.2, os.remove, [path])
    release.start()
    start = time.monotonic()
    with files.exclusive(path, "the thing", log=logs.append, poll_s=0.01):
        waited = time.monotonic() - start
    release.join()
    assert waited >= 0.15 and logs == [f"waiting for the thing, which host=another-host pid=1 "
                                       f"since=2026-11-27T00:00:00 is making ({path})"]
