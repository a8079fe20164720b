"""TF Serving's REST API v1 over the standard library's threading HTTP server.

`RestApi` maps (method, path, body) to (HTTP status, JSON) with TF Serving's URL
patterns and error statuses; `RestServer` is only the HTTP plumbing around it
(keep-alive, body size limit, one write per response so Nagle never stalls it).
"""
from __future__ import annotations

import http
import logging
import re
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Sequence
from urllib.parse import unquote

from serving import json_codec
from serving.errors import ServingError, invalid_argument
from serving.inference import InferenceService
from serving.manager import ModelManager
from serving.pages import PageHandler, serve_page
from serving.protos import model_spec, model_status_response, signature_def_map, to_json_dict

log = logging.getLogger(__name__)

_VERSION_OR_LABEL = r"(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
PREDICTION_PATH = re.compile(rf"/v1/models/([^/:]+){_VERSION_OR_LABEL}:(classify|regress|predict)", re.I)
STATUS_PATH = re.compile(rf"/v1/models(?:/([^/:]+))?{_VERSION_OR_LABEL}(?:/(metadata))?", re.I)


class RestApi:
    """Routes one REST call to the model manager and inference service."""

    def __init__(self, manager: ModelManager, service: InferenceService):
        self._manager = manager
        self._service = service

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            payload = self._dispatch(method, path, body)
        except ServingError as error:
            log.info("%s %s -> %d: %s", method, path, error.http_status, error.message)
            return error.http_status, json_codec.dumps({"error": error.message})
        except Exception as error:  # noqa: BLE001 - a bug must cost one request, not the server
            log.exception("%s %s failed", method, path)
            return 500, json_codec.dumps({"error": f"Internal error: {error}"})
        return 200, json_codec.dumps(payload)

    def _dispatch(self, method: str, path: str, body: bytes) -> dict:
        match = PREDICTION_PATH.fullmatch(path) if method == "POST" else None
        if match:
            name, version, label, verb = match.groups()
            return self._predict_like(unquote(name), _version(version), _label(label), verb.lower(), body)
        match = STATUS_PATH.fullmatch(path) if method == "GET" else None
        if match:
            name, version, label, metadata = match.groups()
            if not name:
                raise invalid_argument("Missing model name in request.")
            if metadata:
                return self._metadata(unquote(name), _version(version), _label(label))
            statuses = self._manager.statuses(unquote(name), _version(version), _label(label))
            return to_json_dict(model_status_response(statuses))
        raise invalid_argument(f"Malformed request: {method} {path}")

    def _predict_like(self, name: str, version: int | None, label: str | None, verb: str, body: bytes) -> dict:
        doc = json_codec.parse_body(body)
        signature = json_codec.signature_name(doc)
        if verb == "predict":
            servable = self._manager.resolve(name, version, label)
            inputs, fmt = json_codec.predict_inputs(doc, servable.signature_def(signature).inputs)
            return json_codec.predict_response(self._service.predict(servable, signature, inputs), fmt)
        examples = json_codec.serialized_examples(doc, verb)
        servable = self._manager.resolve(name, version, label)
        if verb == "classify":
            return json_codec.classify_response(self._service.classify(servable, signature, examples))
        return json_codec.regress_response(self._service.regress(servable, signature, examples))

    def _metadata(self, name: str, version: int | None, label: str | None) -> dict:
        servable = self._manager.resolve(name, version, label)
        return {
            "model_spec": to_json_dict(model_spec(servable)),
            "metadata": {"signature_def": to_json_dict(signature_def_map(servable))},
        }


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    version = int(text)
    if version >= 2**63:
        raise invalid_argument(f"Failed to convert version: {text} to numeric.")
    return version


def _label(text: str | None) -> str | None:
    return unquote(text) if text is not None else None


def _page_or_404(pages: Sequence[PageHandler], method: str, path: str) -> tuple[int, bytes, str]:
    """A page handler's answer for a non-/v1/ path, else TF Serving-style 404."""
    try:
        answer = serve_page(pages, method, path)
    except Exception as error:  # noqa: BLE001 - a broken page must cost one request, not the server
        log.exception("%s %s failed", method, path)
        return 500, json_codec.dumps({"error": f"Internal error: {error}"}), "application/json"
    if answer is None:
        return 404, json_codec.dumps({"error": f"Not found: {method} {path}"}), "application/json"
    status, content_type, body = answer
    return status, body, content_type


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection
    timeout = 120  # seconds an idle keep-alive connection may hold a thread
    server: "RestServer"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815 - others get "Malformed request"

    def _serve(self) -> None:
        path = self.path.split("?", 1)[0]
        if not path.lower().startswith("/v1/"):
            self._reply(*_page_or_404(self.server.pages, self.command, path))
            return
        body = self._read_body()
        if body is not None:
            self._reply(*self.server.api.handle(self.command, path, body))

    def _read_body(self) -> bytes | None:
        """The request body, or None after replying with why it cannot be read."""
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
            return self._refuse(400, f"Invalid Content-Length: {length_header}")
        limit = self.server.max_body_bytes
        if length < 0 or length > limit:
            return self._refuse(413, f"Request body of {length} bytes exceeds the limit of {limit} bytes "
                                     "(--rest_api_max_body_bytes)")
        return self.rfile.read(length)

    def _refuse(self, status: int, message: str) -> None:
        log.info("%s %s -> %d: %s", self.command, self.path, status, message)
        self.close_connection = True  # the unread body would corrupt the next request
        self._reply(status, json_codec.dumps({"error": message}))
        return None

    def _reply(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:  # 499 (client closed request) has no standard phrase
            reason = ""
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\n")
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("latin-1") + b"\r\n" + payload)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server signature
        log.debug("%s " + format, self.address_string(), *args)


class RestServer(ThreadingHTTPServer):
    """A thread per connection; requests on one connection are served in order."""

    daemon_threads = True
    request_queue_size = 128  # bursts of new connections must not be dropped

    def __init__(self, host: str, port: int, api: RestApi, max_body_bytes: int,
                 pages: Sequence[PageHandler] = ()):
        self.api = api
        self.max_body_bytes = max_body_bytes
        self.pages = tuple(pages)
        super().__init__((host, port), _Handler)
