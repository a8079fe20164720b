"""The REST port's HTTP layer: the standard library's thread-per-connection server around `RestApi`.

Each connection gets a thread that reads a request, runs it (model calls block
this thread only, and the dynamic batcher merges concurrent ones) and writes the
answer in one write, so Nagle never stalls it. Why not an event-loop server
(uvicorn, aiohttp): serving/README.md, Performance.

Transport rules the tests hold: keep-alive; a POST needs Content-Length (411
otherwise, and for chunked bodies); bodies over the limit get 413; a malformed
Content-Length gets 400; paths outside `/v1/` go to the page handlers, else 404.
A refused body is read and dropped, never kept, before the answer: a client
still sending it would otherwise get a connection reset instead of the error.
"""
from __future__ import annotations

import http
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Sequence

from serving import json_codec
from serving.pages import PageHandler, serve_page
from serving.rest import RestApi

log = logging.getLogger(__name__)

JSON = "application/json"
IDLE_KEEP_ALIVE_SECONDS = 120  # how long an idle keep-alive connection may hold its thread
_DRAIN_CHUNK = 1 << 16


class RestServer:
    """Serves `RestApi` and the page handlers on host:port until `stop()`."""

    def __init__(self, host: str, port: int, api: RestApi, max_body_bytes: int,
                 pages: Sequence[PageHandler] = ()):
        # Bound here, so a port in use fails now with OSError.
        self._server = _HttpServer((host, port), _Handler)
        self._server.api = api
        self._server.max_body_bytes = max_body_bytes
        self._server.pages = tuple(pages)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="rest", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and close the listening socket; running requests finish on their threads."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # bursts of new connections must not be dropped
    api: RestApi
    max_body_bytes: int
    pages: tuple[PageHandler, ...]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection
    timeout = IDLE_KEEP_ALIVE_SECONDS
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815 - RestApi answers what it does not route

    def _serve(self) -> None:
        path = self.path.split("?", 1)[0]
        if not path.lower().startswith("/v1/"):
            self._discard_body()
            if not self.close_connection:
                self._reply(*self._page(path))
            return
        body = self._read_body()
        if body is not None:
            self._reply(*self.server.api.handle(self.command, path, body), JSON)

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering why it is refused."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._refuse(411, "Chunked request bodies are not supported; send Content-Length")
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            if self.command == "POST":
                return self._refuse(411, "Content-Length header is required")
            return b""
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True  # the body's end is unknown: the connection cannot be reused
            return self._refuse(400, f"Invalid Content-Length: {length_header}")
        limit = self.server.max_body_bytes
        if length > limit:
            return self._refuse(413, f"Request body of {length} bytes exceeds the limit of {limit} bytes "
                                     "(--rest_api_max_body_bytes)")
        return self.rfile.read(length)

    def _refuse(self, status: int, message: str) -> None:
        log.info("%s %s -> %d: %s", self.command, self.path, status, message)
        self._discard_body()
        self._reply(status, json_codec.dumps({"error": message}), JSON)
        return None

    def _discard_body(self) -> None:
        """Read and drop the body (Content-Length or chunked); a connection whose framing breaks is closed."""
        if self.close_connection:
            return
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                while True:
                    size = int(self.rfile.readline(1024).split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline(1024).strip():  # trailers, then the blank line
                            pass
                        return
                    _skip(self.rfile, size + 2)  # the chunk and its CRLF
            remaining = int(self.headers.get("Content-Length") or 0)
            _skip(self.rfile, remaining)
        except (ValueError, OSError):
            self.close_connection = True

    def _page(self, path: str) -> tuple[int, bytes, str]:
        """A page handler's answer, TF Serving-style 404 when none owns the path, 500 if one breaks."""
        try:
            answer = serve_page(self.server.pages, self.command, path)
        except Exception as error:  # noqa: BLE001 - a broken page must cost one request, not the server
            log.exception("%s %s failed", self.command, path)
            return 500, json_codec.dumps({"error": f"Internal error: {error}"}), JSON
        if answer is None:
            return 404, json_codec.dumps({"error": f"Not found: {self.command} {path}"}), JSON
        status, content_type, body = answer
        return status, body, content_type

    def _reply(self, status: int, payload: bytes, content_type: str) -> None:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:  # e.g. 499 has no standard phrase
            reason = ""
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\n")
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("latin-1") + b"\r\n" + payload)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server signature
        log.debug("%s " + format, self.address_string(), *args)


def _skip(stream, size: int) -> None:
    while size > 0:
        chunk = stream.read(min(size, _DRAIN_CHUNK))
        if not chunk:
            raise OSError("connection closed inside the body")
        size -= len(chunk)
