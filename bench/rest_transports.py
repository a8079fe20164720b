"""Which HTTP library carries the REST port: the same server and load over each candidate.

Each candidate serves the same `RestApi` (model manager, batcher, JSON codec all
unchanged) in `python -m serving serve --enable_batching`, with only the HTTP
layer swapped:

- `stdlib`: serving/http_server.py as shipped: the standard library's
  thread-per-connection `socketserver` with the project's own HTTP/1.1 reader
  (bench/results/serving_transports.json was measured before that reader, on
  `http.server`'s `ThreadingHTTPServer`);
- `aiohttp`: aiohttp's low-level server on asyncio, model calls on a thread pool;
- `uvicorn`: uvicorn with the httptools parser and the uvloop event loop, model
  calls on a thread pool.

The two event-loop stand-ins only pass every request to `RestApi.handle`: they
lack the shipped layer's limits and page handlers, which predict requests do not
touch, so they are measured slightly in their favour.
The load is bench/serving_bench.py's: one-instance predicts from N threads, each
on its own keep-alive connection, against the in-process signature call.

    python bench/rest_transports.py --model-base-path serving_models/churn --model-name churn
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.serving_bench import in_process_floor, instance_for, rest_level  # noqa: E402
from serving.client import RestClient  # noqa: E402
from serving.demo import free_port, stop_process  # noqa: E402


class UvicornRestServer:
    """uvicorn (httptools parser, uvloop loop) on a loop thread; model calls on a thread pool."""

    def __init__(self, host, port, api, max_body_bytes, pages=(), num_threads=64):
        import uvicorn

        self._api = api
        self._pool = concurrent.futures.ThreadPoolExecutor(num_threads)
        self._socket = socket.create_server((host, port), backlog=1024)
        config = uvicorn.Config(self._app, interface="asgi3", loop="uvloop", http="httptools", lifespan="off",
                                log_config=None, access_log=False, proxy_headers=False, server_header=False,
                                date_header=False, timeout_keep_alive=120)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    async def _app(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        path = scope["raw_path"].decode("latin-1").split("?", 1)[0]
        status, payload = await asyncio.get_running_loop().run_in_executor(
            self._pool, self._api.handle, scope["method"], path, b"".join(chunks))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join()


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


CANDIDATES = {"stdlib": None, "aiohttp": AiohttpRestServer, "uvicorn": UvicornRestServer}  # None: as shipped


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


def medians(runs: list[list[dict]]) -> list[dict]:
    """Per concurrency level, the median of each figure over the rounds."""
    summary = []
    for levels in zip(*runs):
        summary.append({"concurrency": levels[0]["concurrency"], "rounds": len(levels),
                        **{key: round(statistics.median(level[key] for level in levels), 3)
                           for key in ("requests_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_request")}})
    return summary


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
    parser.add_argument("--rounds", type=int, default=3,
                        help="measure every transport this often, in rotated order (other work skews single runs)")
    parser.add_argument("--signature-name", default="serving_default")
    args = parser.parse_args()
    base_path = os.path.abspath(args.model_base_path)
    load_before = round(os.getloadavg()[0], 2)
    rounds: dict[str, list[list[dict]]] = {transport: [] for transport in args.transports}
    floor = None
    for round_index in range(args.rounds):
        shift = round_index % len(args.transports)
        for transport in args.transports[shift:] + args.transports[:shift]:
            metadata, levels, instance = measure(transport, args, base_path)
            if floor is None:
                version = metadata["model_spec"]["version"]
                floor = in_process_floor(os.path.join(base_path, version), args.signature_name, instance,
                                         args.requests)
                print(f"in-process: {floor}", flush=True)
            rounds[transport].append(levels)
            for level in levels:
                print(f"round {round_index + 1} {transport}: {level}", flush=True)
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
        "median_over_rounds": {transport: medians(runs) for transport, runs in rounds.items()},
        "rounds": rounds,
    }, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
