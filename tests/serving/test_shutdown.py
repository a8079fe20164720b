"""SIGTERM stops the server cleanly on whichever of its threads the kernel delivers it.

A signal sent to a process goes to any thread that does not block it. The server has a dozen
(gRPC, REST, batching, the request log's reader); a SIGTERM caught by one of them once left it
running until the test's SIGKILL, its request logs unwritten (serving/server.py,
`wait_for_stop_signal`). Here the signal is sent to one chosen non-main thread with Linux's
tgkill, the way the kernel may route a plain `kill`.
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
        raise OSError(ctypes.get_errno(), f"tgkill({pid}, {tid}) failed")


@pytest.mark.skipif(SYS_TGKILL is None or not os.path.isdir("/proc/self/task"), reason="Linux tgkill and /proc")
def test_a_sigterm_caught_by_another_thread_still_stops_the_server_cleanly(exports, tmp_path):
    server = start_server(["--model_name=churn", f"--model_base_path={exports.models / 'churn'}"],
                          tmp_path / "server.log", wait_for=["churn"])
    try:
        pid = server.process.pid
        threads = sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid)
        assert threads, "the server runs threads besides its main one"
        tgkill(pid, threads[-1], signal.SIGTERM)
        code = server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server ignored a SIGTERM delivered to thread {threads[-1]}:\n{server.log()}")
    finally:
        stop_process(server.process)
    assert code == 0, server.log()
    assert "Shutting down (SIGTERM)" in server.log()
