"""SIGTERM stops the server cleanly on whichever of its threads the kernel delivers it.

A signal sent to a process goes to any thread that does not block it. The server has a dozen
(gRPC, REST, batching, the request log's reader); a SIGTERM caught by one of them once left it
running until the test's SIGKILL, its request logs unwritten (serving/server.py,
`wait_for_stop_signal`). Here the signal is sent to one chosen non-main thread with Linux's
tgkill, the way the kernel may route a plain `kill`.

The thread chosen is the oldest one besides the main thread: it was started while the server
imported TensorFlow and lives as long as the process. Pools such as gRPC's event engine start and
stop threads at will; one of those once exited between being listed and being signalled.
"""
from __future__ import annotations

import ctypes
import os
import platform
import signal
import subprocess

import pytest

from serving.demo import stop_process
from tests.serving.serving_test_support import start_server

SYS_TGKILL = {"x86_64": 234, "aarch64": 131}.get(platform.machine())


def tgkill(pid: int, tid: int, signum: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_TGKILL, pid, tid, signum) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"tgkill({pid}, {tid}): {os.strerror(error)}")


def threads_oldest_first(pid: int) -> list[int]:
    """The process's threads other than its main one, by start time (field 22 of their stat)."""
    started = {}
    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
        except FileNotFoundError:
            continue  # exited while listed
        started[tid] = int(fields[19])  # field 22 overall; fields[0] is field 3
    return sorted((tid for tid in started if tid != pid), key=lambda tid: (started[tid], tid))


def signal_one_thread(pid: int, signum: int) -> int:
    """Send `signum` to the oldest non-main thread still running; returns its id."""
    for tid in threads_oldest_first(pid):
        try:
            tgkill(pid, tid, signum)
            return tid
        except ProcessLookupError:
            continue  # that thread exited meanwhile; take the next oldest
    pytest.fail("the server runs no thread besides its main one")


@pytest.mark.skipif(SYS_TGKILL is None or not os.path.isdir("/proc/self/task"), reason="Linux tgkill and /proc")
def test_a_sigterm_caught_by_another_thread_still_stops_the_server_cleanly(exports, tmp_path):
    server = start_server(["--model_name=churn", f"--model_base_path={exports.models / 'churn'}"],
                          tmp_path / "server.log", wait_for=["churn"])
    try:
        thread = signal_one_thread(server.process.pid, signal.SIGTERM)
        code = server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server ignored a SIGTERM delivered to thread {thread}:\n{server.log()}")
    finally:
        stop_process(server.process)
    assert code == 0, server.log()
    assert "Shutting down (SIGTERM)" in server.log()
