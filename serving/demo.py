"""Start a throw-away server on free ports, ask it one question over REST, stop it.

This is what `make demo` needs after the Pusher ran: a live endpoint for one
query, with no port left busy and no process left behind.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from serving.client import RestClient


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def serve_and_query(model_name: str, base_path: str, instance: dict[str, Any],
                    signature_name: str | None = None, timeout: float = 180.0) -> dict:
    """Predict one instance through a real server process; returns the REST answer.

    Raises RuntimeError (with the end of the server log) if the server does not
    come up or dies; the process is always stopped before returning.
    """
    rest_port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "serving", "serve", f"--model_name={model_name}",
               f"--model_base_path={os.path.abspath(base_path)}", f"--port={grpc_port}",
               f"--rest_api_port={rest_port}", "--file_system_poll_wait_seconds=0"]
    with tempfile.TemporaryFile(mode="w+") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            with RestClient("127.0.0.1", rest_port, timeout=60.0) as client:
                _wait_until_available(client, process, log_file, model_name, timeout)
                return client.predict(model_name, instances=[instance], signature_name=signature_name)
        finally:
            stop_process(process)


def _wait_until_available(client: RestClient, process: subprocess.Popen, log_file,
                          model_name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}\n"
                               f"--- server log ---\n{_tail(log_file)}")
        try:
            client.wait_until_available(model_name, timeout=1.0)
            return
        except TimeoutError as error:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{error}\n--- server log ---\n{_tail(log_file)}") from error


def stop_process(process: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit within `grace` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(log_file, lines: int = 30) -> str:
    log_file.seek(0)
    return "".join(log_file.readlines()[-lines:])
