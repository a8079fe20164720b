"""The REST transport in-process: page handlers beside /v1/, and HTTP framing rules.

No model is needed for these: the server runs over an empty model manager, so
/v1/ calls answer TF Serving's "not found" and the HTTP layer is what is tested.
"""
from __future__ import annotations

import http.client
import json
import threading

import pytest

from serving.demo import free_port
from serving.inference import InferenceService
from serving.manager import ModelManager
from serving.rest import RestApi, RestServer


class HelloPage:
    """Owns /hello; the transport must ask it, and pass its answer through unchanged."""

    def __init__(self):
        self.seen: list[tuple[str, str]] = []

    def handle(self, method: str, path: str):
        self.seen.append((method, path))
        if path == "/hello":
            return 200, "text/plain; charset=utf-8", b"hello"
        return None


class BrokenPage:
    def handle(self, method: str, path: str):
        if path == "/broken":
            raise RuntimeError("page bug")
        return None


@pytest.fixture()
def transport():
    page = HelloPage()
    port = free_port()
    server = RestServer("127.0.0.1", port, RestApi(ModelManager([], 0), InferenceService()), 1000,
                        [BrokenPage(), page])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield port, page
    server.shutdown()
    server.server_close()


def request(port: int, method: str, path: str, body: bytes | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def test_a_page_handler_answers_its_path_with_its_content_type(transport):
    port, page = transport
    assert request(port, "GET", "/hello?x=1") == (200, "text/plain; charset=utf-8", b"hello")
    assert ("GET", "/hello") in page.seen  # the query string is not part of the path


def test_a_path_no_page_claims_is_404(transport):
    port, page = transport
    status, content_type, body = request(port, "GET", "/nothing/here")
    assert (status, content_type) == (404, "application/json")
    assert json.loads(body) == {"error": "Not found: GET /nothing/here"}
    assert ("GET", "/nothing/here") in page.seen


def test_a_failing_page_costs_one_request(transport):
    port, _ = transport
    status, _, body = request(port, "GET", "/broken")
    assert status == 500 and "page bug" in json.loads(body)["error"]
    assert request(port, "GET", "/hello")[0] == 200


def test_v1_paths_never_reach_the_pages(transport):
    port, page = transport
    status, _, body = request(port, "GET", "/v1/models/none")
    assert status == 404 and "none" in json.loads(body)["error"]
    assert not any(path.startswith("/v1/") for _, path in page.seen)
