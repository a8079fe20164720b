"""The REST port's HTTP layer: uvicorn (httptools parser, uvloop event loop) around `RestApi`.

One event loop thread parses HTTP and keeps every connection; model calls, which
block, run on a thread pool (where the dynamic batcher can merge them), so a slow
call never stalls other connections. Why uvicorn: serving/README.md, Performance.

Transport rules the tests hold: keep-alive; a POST needs Content-Length (411
otherwise, and for chunked bodies); bodies over the limit get 413; paths outside
`/v1/` go to the page handlers, else 404. A refused body is read and dropped,
never kept, before the answer: a client still sending it would otherwise get a
connection reset instead of the error.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
from typing import Sequence

import uvicorn

from serving import json_codec
from serving.pages import PageHandler, serve_page
from serving.rest import RestApi

log = logging.getLogger(__name__)

JSON = "application/json"
IDLE_KEEP_ALIVE_SECONDS = 120  # how long an idle keep-alive connection stays open


class RestServer:
    """Serves `RestApi` and the page handlers on host:port until `stop()`."""

    def __init__(self, host: str, port: int, api: RestApi, max_body_bytes: int,
                 pages: Sequence[PageHandler] = (), num_threads: int = 64):
        self._api = api
        self._max_body_bytes = max_body_bytes
        self._pages = tuple(pages)
        self._pool = concurrent.futures.ThreadPoolExecutor(num_threads, thread_name_prefix="rest")
        # Bound here, so a port in use fails now with OSError instead of later in the loop thread.
        self._socket = socket.create_server((host, port), backlog=1024, reuse_port=False)
        config = uvicorn.Config(self._app, interface="asgi3", loop="uvloop", http="httptools", lifespan="off",
                                log_config=None, access_log=False, proxy_headers=False, server_header=False,
                                date_header=False,
                                timeout_keep_alive=IDLE_KEEP_ALIVE_SECONDS, timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="rest-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, let running requests finish (2 s at most), then close."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()
        self._socket.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _app(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        path = scope["raw_path"].decode("latin-1").split("?", 1)[0]  # undecoded, as RestApi expects
        loop = asyncio.get_running_loop()
        if not path.lower().startswith("/v1/"):
            status, content_type, body = await loop.run_in_executor(self._pool, self._page, method, path)
            await _respond(send, status, body, content_type)
            return
        refusal = self._refusal(method, scope["headers"])
        if refusal is not None:
            status, message = refusal
            log.info("%s %s -> %d: %s", method, path, status, message)
            await _discard_body(receive)
            await _respond(send, status, json_codec.dumps({"error": message}))
            return
        body = await _read_body(receive)
        status, payload = await loop.run_in_executor(self._pool, self._api.handle, method, path, body)
        await _respond(send, status, payload)

    def _refusal(self, method: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, str] | None:
        """(status, message) when the body must not be read, else None."""
        length = None
        for name, value in headers:
            if name == b"transfer-encoding" and b"chunked" in value.lower():
                return 411, "Chunked request bodies are not supported; send Content-Length"
            if name == b"content-length":
                length = int(value)  # httptools already refused a malformed Content-Length
        if length is None:
            return (411, "Content-Length header is required") if method == "POST" else None
        if length > self._max_body_bytes:
            return 413, (f"Request body of {length} bytes exceeds the limit of {self._max_body_bytes} bytes "
                         "(--rest_api_max_body_bytes)")
        return None

    def _page(self, method: str, path: str) -> tuple[int, str, bytes]:
        """A page handler's answer, TF Serving-style 404 when none owns the path, 500 if one breaks."""
        try:
            answer = serve_page(self._pages, method, path)
        except Exception as error:  # noqa: BLE001 - a broken page must cost one request, not the server
            log.exception("%s %s failed", method, path)
            return 500, JSON, json_codec.dumps({"error": f"Internal error: {error}"})
        if answer is None:
            return 404, JSON, json_codec.dumps({"error": f"Not found: {method} {path}"})
        return answer


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _discard_body(receive) -> None:
    """Read a refused body without keeping it, so the client can finish sending and read the answer."""
    while (await receive()).get("more_body"):
        pass


async def _respond(send, status: int, body: bytes, content_type: str = JSON) -> None:
    headers = [(b"content-type", content_type.encode("latin-1")), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
