"""Which HTTP library carries the REST port: the same server and load over each candidate.

Each candidate serves the same `RestApi` (model manager, batcher, JSON codec all
unchanged) in `python -m serving serve --enable_batching`, with only the HTTP
layer swapped:

- `stdlib`: the standard library's thread-per-connection `ThreadingHTTPServer`
  (the server's HTTP layer before uvicorn);
- `aiohttp`: aiohttp's low-level server on asyncio, model calls on a thread pool;
- `uvicorn`: serving/http_server.py as shipped (httptools parser, uvloop loop,
  model calls on a thread pool).

The stand-ins only pass every request to `RestApi.handle`: they lack the shipped
transport's limits and page handlers, which predict requests do not touch.
The load is bench/serving_bench.py's: one-instance predicts from N threads, each
on its own keep-alive connection, against the in-process signature call.

    python bench/rest_transports.py --model-base-path serving_models/churn --model-name churn
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import http
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.serving_bench import in_process_floor, instance_for, rest_level  # noqa: E402
from serving.client import RestClient  # noqa: E402
from serving.demo import free_port, stop_process  # noqa: E402


class _StdlibHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, payload = self.server.api.handle(self.command, self.path.split("?", 1)[0], body)
        head = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n")
        self.wfile.write(head.encode("latin-1") + payload)  # one write: Nagle never stalls it

    do_POST = do_GET  # noqa: N815

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet
        pass


class StdlibRestServer(ThreadingHTTPServer):
    """A thread per connection (the server's previous HTTP layer)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, host, port, api, max_body_bytes, pages=(), num_threads=64):
        self.api = api
        super().__init__((host, port), _StdlibHandler)

    def start(self) -> None:
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class AiohttpRestServer:
    """aiohttp's low-level server on an asyncio loop thread; model calls on a thread pool."""

    def __init__(self, host, port, api, max_body_bytes, pages=(), num_threads=64):
        self._api, self._host, self._port = api, host, port
        self._pool = concurrent.futures.ThreadPoolExecutor(num_threads)
        self._loop = asyncio.new_event_loop()
        self._stopped = None

    async def _handle(self, request):
        from aiohttp import web

        body = await request.read()
        status, payload = await self._loop.run_in_executor(self._pool, self._api.handle, request.method,
                                                           request.raw_path.split("?", 1)[0], body)
        return web.Response(status=status, body=payload, content_type="application/json")

    async def _serve(self, ready: threading.Event) -> None:
        from aiohttp import web

        runner = web.ServerRunner(web.Server(self._handle), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self._host, self._port, backlog=1024).start()
        self._stopped = asyncio.Event()
        ready.set()
        await self._stopped.wait()
        await runner.cleanup()

    def start(self) -> None:
        ready = threading.Event()
        threading.Thread(target=self._loop.run_until_complete, args=(self._serve(ready),), daemon=True).start()
        ready.wait()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stopped.set)


CANDIDATES = {"stdlib": StdlibRestServer, "aiohttp": AiohttpRestServer, "uvicorn": None}  # None: as shipped


def serve(transport: str, argv: list[str]) -> int:
    """`python -m serving serve ...` with the REST port's HTTP layer swapped for `transport`."""
    import serving.server
    from serving.__main__ import main as serving_main

    if CANDIDATES[transport] is not None:
        serving.server.RestServer = CANDIDATES[transport]
    return serving_main(["serve", *argv])


def measure(transport: str, args: argparse.Namespace, base_path: str) -> tuple[dict, list[dict], int]:
    rest_port, grpc_port = free_port(), free_port()
    command = [sys.executable, __file__, "--serve", transport, "--", f"--model_name={args.model_name}",
               f"--model_base_path={base_path}", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
               "--enable_batching", "--file_system_poll_wait_seconds=0", "--log_level=WARNING"]
    with tempfile.TemporaryFile(mode="w+") as log_file:
        server = subprocess.Popen(command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            with RestClient("127.0.0.1", rest_port) as client:
                client.wait_until_available(args.model_name, timeout=300)
                metadata = client.model_metadata(args.model_name)
            instance = instance_for(metadata, args.signature_name)
            levels = [rest_level(rest_port, args.model_name, args.signature_name, instance, concurrency,
                                 args.requests, server.pid) for concurrency in args.concurrency]
        except Exception:
            log_file.seek(0)
            print(log_file.read()[-3000:], file=sys.stderr)
            raise
        finally:
            stop_process(server)
    return metadata, levels, instance


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        return serve(sys.argv[2], sys.argv[4:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-base-path", required=True, help="directory with <version>/saved_model.pb")
    parser.add_argument("--model-name", default="churn")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "serving_transports.json"))
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--transports", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--signature-name", default="serving_default")
    args = parser.parse_args()
    base_path = os.path.abspath(args.model_base_path)
    load_before = round(os.getloadavg()[0], 2)
    results, floor = {}, None
    for transport in args.transports:
        metadata, levels, instance = measure(transport, args, base_path)
        if floor is None:
            version = metadata["model_spec"]["version"]
            floor = in_process_floor(os.path.join(base_path, version), args.signature_name, instance,
                                     args.requests)
            print(f"in-process: {floor}", flush=True)
        results[transport] = levels
        for level in levels:
            print(f"{transport}: {level}", flush=True)
    import tensorflow as tf

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({
        "model_name": args.model_name,
        "model_version": metadata["model_spec"]["version"],
        "load": "one-instance predicts, one keep-alive connection per client thread (bench/serving_bench.py)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__,
                    "load_average_1m_before": load_before, "load_average_1m_after": round(os.getloadavg()[0], 2),
                    "note": "server and client on the same machine"},
        "in_process": floor,
        "transports": results,
    }, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
