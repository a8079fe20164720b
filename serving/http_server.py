"""The REST port's HTTP layer: a lean HTTP/1.1 server, one thread per connection, around `RestApi`.

Each connection gets a thread that reads a request, runs it (model calls block
this thread only, and the dynamic batcher merges concurrent ones) and writes the
answer in one write, so Nagle never stalls it. The request head is read and
split here rather than by `http.server`, whose per-request header parsing (the
`email` package) was one of the largest Python costs of a request
(serving/README.md, Performance); why not an event-loop server (uvicorn,
aiohttp): same section.

Transport rules the tests hold: keep-alive (HTTP/1.1 by default, HTTP/1.0 only
with `Connection: keep-alive`, echoed in the answer; `Connection: close` closes
after the answer); a POST needs Content-Length (411 otherwise, and for chunked
bodies); bodies over the limit get 413; a malformed Content-Length gets 400 and
closes; a request line or head that cannot be parsed gets 400 (431 when over
64 KiB or 100 header lines, 505 for HTTP/2+) and closes; `Expect: 100-continue`
is answered before the body is read; methods other than GET/POST/PUT/DELETE/PATCH
get 501 (HEAD: without a body); paths outside `/v1/` go to the page handlers,
else 404. A refused body is read and dropped, never kept, before the answer: a
client still sending it would otherwise get a connection reset instead of the
error. A body cut short by the client's hang-up is owed no answer.
"""
from __future__ import annotations

import http
import logging
import re
import socket
import socketserver
import struct
import threading
from typing import Sequence

from serving import json_codec
from serving.pages import PageHandler, serve_page
from serving.rest import RestApi

log = logging.getLogger(__name__)

JSON = "application/json"
IDLE_KEEP_ALIVE_SECONDS = 120  # how long an idle keep-alive connection may hold its thread
MAX_HEAD_BYTES = 1 << 16  # request line plus headers, as http.server's line limit
MAX_HEADERS = 100  # as http.server
LINGER_SECONDS = 1.0  # after answering on a connection that must close, how long its input is drained
MAX_LINGER_BYTES = 1 << 20
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})  # RestApi answers what it does not route
_RECV = 1 << 16
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(r"\r?\n")


class RestServer:
    """Serves `RestApi` and the page handlers on host:port until `stop()`."""

    def __init__(self, host: str, port: int, api: RestApi, max_body_bytes: int,
                 pages: Sequence[PageHandler] = ()):
        # Bound here, so a port in use fails now with OSError.
        self._server = _TcpServer((host, port), _Connection)
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


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # bursts of new connections must not be dropped
    api: RestApi
    max_body_bytes: int
    pages: tuple[PageHandler, ...]


class _Refused(Exception):
    """A request head that cannot be served: answered with `status` and the connection closed."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _Request:
    """One parsed request head."""

    __slots__ = ("method", "target", "path", "http11", "headers", "keep_alive")

    def __init__(self, method: str, target: str, http11: bool, headers: dict[str, str], keep_alive: bool):
        self.method = method
        self.http11 = http11  # HTTP/1.1 or a later 1.x
        self.target = target
        self.path = target.split("?", 1)[0]
        self.headers = headers  # lower-case names; repeated headers joined with ","
        self.keep_alive = keep_alive


def parse_head(head: bytes) -> _Request:
    """The request line and headers of one request (without the blank line), or `_Refused`."""
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    if text.count("\n") >= len(lines):  # some lines end in a bare LF
        lines = _LINE_END.split(text)
    words = lines[0].split()
    if len(words) != 3:
        raise _Refused(400, f"Bad request syntax ({lines[0]!r})")
    method, target, version = words
    if not version.startswith("HTTP/"):
        raise _Refused(400, f"Bad request version ({version!r})")
    try:
        major, minor = (int(part) for part in version[5:].split("."))
    except ValueError:
        raise _Refused(400, f"Bad request version ({version!r})") from None
    if major >= 2:
        raise _Refused(505, f"Invalid HTTP version ({version[5:]})")
    if len(lines) > MAX_HEADERS + 1:
        raise _Refused(431, "Too many headers")
    headers: dict[str, str] = {}
    name = None
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and name is not None:  # obsolete line folding: continues the last value
            headers[name] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        name = name.lower()
        if not colon or not name or name != name.strip():
            raise _Refused(400, f"Bad header line ({line!r})")
        value = value.strip()
        headers[name] = headers[name] + "," + value if name in headers else value
    connection = headers.get("connection", "").lower()
    http11 = keep_alive = (major, minor) >= (1, 1)
    if connection == "close":
        keep_alive = False
    elif connection == "keep-alive":
        keep_alive = True
    return _Request(method, target, http11, headers, keep_alive)


class _Connection(socketserver.BaseRequestHandler):
    """Serves the requests of one connection, in order, until it closes or must close."""

    server: _TcpServer
    request: socket.socket

    def handle(self) -> None:
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The idle limit as kernel socket timeouts (a timed-out call raises OSError): a Python-level
        # timeout would add a poll() per recv and send, each one more interpreter-lock hand-off.
        idle = struct.pack("ll", IDLE_KEEP_ALIVE_SECONDS, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, idle)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, idle)
        self._buffer = b""  # bytes received beyond what has been read so far
        self._close = False  # close after the current answer
        self._framing_lost = False  # where the current body ends is unknown
        self._say_keep_alive = False  # an HTTP/1.0 client asked to keep the connection: say it is kept
        try:
            while not self._close and self._serve_one():
                pass
            if self._close:
                self._linger()
        except OSError:  # the peer went away, or stayed idle too long: the connection ends
            pass

    def _linger(self) -> None:
        """Half-close, then drop what the client still sends (briefly): closing a socket with unread
        input resets the connection, and the client could lose the answer it has not read yet."""
        self.request.shutdown(socket.SHUT_WR)
        self.request.settimeout(LINGER_SECONDS)
        dropped = 0
        while dropped < MAX_LINGER_BYTES and (chunk := self.request.recv(_RECV)):
            dropped += len(chunk)

    def _serve_one(self) -> bool:
        """Read and answer one request; False when the connection ended (or was cut) before one came."""
        head = self._read_head()
        if head is None:
            return False
        try:
            request = parse_head(head)
        except _Refused as refused:
            log.info("refused request: %d %s", refused.status, refused.message)
            self._close = True
            self._reply(refused.status, json_codec.dumps({"error": refused.message}), JSON)
            return False
        self._close = not request.keep_alive
        self._say_keep_alive = request.keep_alive and not request.http11
        if request.method not in METHODS:
            self._refuse(request, 501, f"Unsupported method ({request.method!r})")
            return True
        if request.headers.get("expect", "").lower() == "100-continue" and request.http11:
            self.request.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        path = request.path
        if not path.lower().startswith("/v1/"):
            if not self._discard_body(request):
                return False
            self._reply(*self._page(request.method, path))
            return True
        body = self._read_body(request)
        if body is None:
            return False
        if body is not _ANSWERED:
            self._reply(*self.server.api.handle(request.method, path, body), JSON)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %s", self.client_address[0], request.method, request.target)
        return True

    def _read_body(self, request: _Request) -> bytes | object | None:
        """The request body; `_ANSWERED` after answering why it is refused; None if the client hung up."""
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            return self._refuse(request, 411, "Chunked request bodies are not supported; send Content-Length")
        length_header = request.headers.get("content-length")
        if length_header is None:
            if request.method == "POST":
                return self._refuse(request, 411, "Content-Length header is required")
            return b""
        length = int(length_header) if length_header.isascii() and length_header.isdigit() else -1
        if length < 0:
            self._close = self._framing_lost = True  # the body's end is unknown: the connection cannot be reused
            return self._refuse(request, 400, f"Invalid Content-Length: {length_header}")
        limit = self.server.max_body_bytes
        if length > limit:
            return self._refuse(request, 413, f"Request body of {length} bytes exceeds the limit of {limit} "
                                              "bytes (--rest_api_max_body_bytes)")
        return self._read(length)

    def _refuse(self, request: _Request, status: int, message: str) -> object:
        log.info("%s %s -> %d: %s", request.method, request.target, status, message)
        self._discard_body(request)
        self._reply(status, json_codec.dumps({"error": message}), JSON, head_only=request.method == "HEAD")
        return _ANSWERED

    def _discard_body(self, request: _Request) -> bool:
        """Read and drop the body (Content-Length or chunked); a connection whose framing breaks is closed.

        False when the client hung up inside the body (nothing more to answer).
        """
        if self._framing_lost:
            return True
        try:
            if "chunked" in request.headers.get("transfer-encoding", "").lower():
                while True:
                    size = int(self._read_line().split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        while self._read_line().strip():  # trailers, then the blank line
                            pass
                        return True
                    self._skip(size + 2)  # the chunk and its CRLF
            length = request.headers.get("content-length", "0")
            self._skip(int(length) if length.isascii() and length.isdigit() else 0)
            return True
        except ValueError:
            self._close = self._framing_lost = True
            return True
        except _HungUp:
            return False

    def _page(self, method: str, path: str) -> tuple[int, bytes, str]:
        """A page handler's answer, TF Serving-style 404 when none owns the path, 500 if one breaks."""
        try:
            answer = serve_page(self.server.pages, method, path)
        except Exception as error:  # noqa: BLE001 - a broken page must cost one request, not the server
            log.exception("%s %s failed", method, path)
            return 500, json_codec.dumps({"error": f"Internal error: {error}"}), JSON
        if answer is None:
            return 404, json_codec.dumps({"error": f"Not found: {method} {path}"}), JSON
        status, content_type, body = answer
        return status, body, content_type

    def _reply(self, status: int, payload: bytes, content_type: str, head_only: bool = False) -> None:
        connection = (b"Connection: close\r\n" if self._close
                      else b"Connection: keep-alive\r\n" if self._say_keep_alive else b"")
        head = b"%s%s%d\r\n%s\r\n" % (_status_line(status), _content_type(content_type), len(payload), connection)
        self.request.sendall(head if head_only else head + payload)

    # -- reading from the connection ------------------------------------------------

    def _read_head(self) -> bytes | None:
        """The next request's head without its blank line, or None when the client closed between requests."""
        buffer = self._buffer.lstrip(b"\r\n")  # blank lines before a request line are ignored (RFC 9112 2.2)
        searched = 0
        while True:
            end = _HEAD_END.search(buffer, max(0, searched - 3))
            if end is not None and end.start() <= MAX_HEAD_BYTES:
                self._buffer = buffer[end.end():]
                return buffer[:end.start()]
            if len(buffer) > MAX_HEAD_BYTES:
                self._close = True
                self._reply(431, json_codec.dumps({"error": "Request header fields too large"}), JSON)
                return None
            chunk = self.request.recv(_RECV)
            if not chunk:
                return None  # a hang-up, possibly inside a head: nothing to answer
            searched = len(buffer)
            buffer = (buffer + chunk).lstrip(b"\r\n") if not buffer else buffer + chunk

    def _read(self, size: int) -> bytes | None:
        """Exactly `size` body bytes, or None when the client hung up first (the connection then ends)."""
        buffer = self._buffer
        if len(buffer) >= size:
            self._buffer = buffer[size:]
            return buffer[:size]
        parts, have = [buffer], len(buffer)
        while have < size:
            chunk = self.request.recv(min(size - have, 1 << 20))
            if not chunk:
                self._close = True
                return None
            parts.append(chunk)
            have += len(chunk)
        self._buffer = b""
        return b"".join(parts)

    def _skip(self, size: int) -> None:
        while size > 0:
            if not self._buffer:
                self._buffer = self.request.recv(_RECV)
                if not self._buffer:
                    self._close = True
                    raise _HungUp
            taken = min(size, len(self._buffer))
            self._buffer = self._buffer[taken:]
            size -= taken

    def _read_line(self) -> bytes:
        """One line of a chunked body (at most 1 KiB, else ValueError)."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[:end + 1], self._buffer[end + 1:]
                return line
            if len(self._buffer) > 1024:
                raise ValueError("chunk line too long")
            chunk = self.request.recv(_RECV)
            if not chunk:
                self._close = True
                raise _HungUp
            self._buffer += chunk


class _HungUp(Exception):
    """The client closed the connection inside a body."""


_ANSWERED = object()  # `_read_body`'s "already answered" marker


def _status_line(status: int, cache: dict[int, bytes] = {}) -> bytes:  # noqa: B006 - a deliberate memo
    line = cache.get(status)
    if line is None:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:  # e.g. 499 has no standard phrase
            reason = ""
        line = cache[status] = f"HTTP/1.1 {status} {reason}\r\nContent-Type: ".encode("latin-1")
    return line


def _content_type(content_type: str, cache: dict[str, bytes] = {}) -> bytes:  # noqa: B006 - a deliberate memo
    line = cache.get(content_type)
    if line is None:
        line = f"{content_type}\r\nContent-Length: ".encode("latin-1")
        if len(cache) < 64:
            cache[content_type] = line
    return line
