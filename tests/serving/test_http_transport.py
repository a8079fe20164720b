"""The REST transport in-process: page handlers beside /v1/, and HTTP framing rules.

No model is needed for these: the server runs over an empty model manager, so
/v1/ calls answer TF Serving's "not found" and the HTTP layer is what is tested.
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import pytest

from serving.demo import free_port
from serving.inference import InferenceService
from serving.manager import ModelManager
from serving.http_server import RestServer
from serving.rest import RestApi


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
    server.start()
    yield port, page
    server.stop()


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


def raw_exchange(port: int, *requests: bytes) -> list[bytes]:
    """Send raw requests on one connection, one at a time; return each raw answer (head + body)."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        pending = b""
        for data in requests:
            sock.sendall(data)
            while b"\r\n\r\n" not in pending:
                pending += sock.recv(65536)
            head, rest = pending.split(b"\r\n\r\n", 1)
            length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
            while len(rest) < length:
                rest += sock.recv(65536)
            answers.append(head + b"\r\n\r\n" + rest[:length])
            pending = rest[length:]
    return answers


def test_one_keep_alive_connection_serves_many_requests(transport):
    port, _ = transport
    get = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
    answers = raw_exchange(port, get, get, get)
    assert all(answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello") for answer in answers)


def test_post_without_content_length_is_411(transport):
    port, _ = transport
    [answer] = raw_exchange(port, b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411") and b"Content-Length header is required" in answer


def test_chunked_body_is_411_and_the_connection_stays_usable(transport):
    port, _ = transport
    chunked = (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"2\r\n{}\r\n0\r\n\r\n")
    refused, after = raw_exchange(port, chunked, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 411") and b"Chunked request bodies are not supported" in refused
    assert after.startswith(b"HTTP/1.1 200")


def test_body_over_the_limit_is_413(transport):
    port, _ = transport  # the fixture's limit is 1000 bytes
    body = b"{" + b" " * 1000 + b"}"
    [answer] = raw_exchange(port, b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                            % (len(body), body))
    assert answer.startswith(b"HTTP/1.1 413") and b"exceeds the limit of 1000 bytes" in answer


def test_body_at_the_limit_reaches_the_api(transport):
    port, _ = transport
    body = b"{" + b" " * 998 + b"}"
    [answer] = raw_exchange(port, b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                            % (len(body), body))
    assert answer.startswith(b"HTTP/1.1 404") and b"m" in answer  # the model lookup ran: no such model


def test_malformed_content_length_is_400(transport):
    port, _ = transport
    [answer] = raw_exchange(port, b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")


def test_a_truncated_body_costs_only_its_connection(transport):
    port, _ = transport
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inst")
    [answer] = raw_exchange(port, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")


def test_a_malformed_chunked_body_is_411_and_closes_the_connection(transport):
    port, _ = transport
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"zz\r\n{}\r\n")
        answer = b""
        while chunk := sock.recv(65536):  # the server closes after answering
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 411") and b"Connection: close" in answer


def read_until_closed(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def answer_before_close(port: int, request: bytes) -> bytes:
    """Everything the server sends after `request` until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        return read_until_closed(sock)


def test_http_1_0_closes_after_the_answer_unless_asked_to_keep_alive(transport):
    port, _ = transport
    answer = answer_before_close(port, b"GET /hello HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and b"Connection: close" in answer and answer.endswith(b"hello")
    keep = b"GET /hello HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    answers = raw_exchange(port, keep, keep)
    assert all(answer.startswith(b"HTTP/1.1 200") and b"Connection: keep-alive" in answer for answer in answers)


def test_connection_close_is_honoured(transport):
    port, _ = transport
    answer = answer_before_close(port, b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and b"Connection: close" in answer and answer.endswith(b"hello")


def test_pipelined_and_byte_by_byte_requests_are_answered_in_order(transport):
    port, _ = transport
    body = b'{"instances": [1]}'
    post = b"POST /v1/models/m:predict HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    get = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(post + get)  # two requests in one segment
        for byte in get:  # one request split over many segments
            sock.sendall(bytes([byte]))
        sock.sendall(b"GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n")
        answer = read_until_closed(sock)
    statuses = re.findall(rb"HTTP/1.1 (\d+)", answer)
    assert statuses == [b"404", b"200", b"200", b"200"], answer  # 404: the predict reached the API (no model m)


def test_bare_line_feeds_and_a_leading_blank_line_are_accepted(transport):
    port, _ = transport
    [answer] = raw_exchange(port, b"\r\nGET /hello HTTP/1.1\nHost: x\n\n")
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello")


def test_expect_100_continue_is_answered_before_the_body_is_sent(transport):
    port, _ = transport
    body = b'{"instances": [1]}'
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 404")


@pytest.mark.parametrize("head, status", [
    (b"NONSENSE\r\n\r\n", b"400"),
    (b"GET /hello HTTP/1.1 extra\r\n\r\n", b"400"),
    (b"GET /hello FTP/1.1\r\n\r\n", b"400"),
    (b"GET /hello HTTP/one\r\n\r\n", b"400"),
    (b"GET /hello HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
    (b"GET /hello HTTP/2.0\r\n\r\n", b"505"),
    (b"GET /hello HTTP/1.1\r\n" + b"X-Filler: " + b"a" * 70000 + b"\r\n\r\n", b"431"),
    (b"GET /hello HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", b"431"),
])
def test_an_unparsable_head_is_refused_and_the_connection_closed(transport, head, status):
    port, _ = transport
    answer = answer_before_close(port, head)
    assert answer.startswith(b"HTTP/1.1 " + status) and b"Connection: close" in answer, answer
    assert "error" in json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert request(port, "GET", "/hello")[0] == 200


def test_unsupported_methods_get_501_and_head_gets_no_body(transport):
    port, _ = transport
    status, _, body = request(port, "OPTIONS", "/v1/models/m")
    assert status == 501 and json.loads(body) == {"error": "Unsupported method ('OPTIONS')"}
    answer = answer_before_close(port, b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                                       b"GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n")
    head, after = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 501") and after.startswith(b"HTTP/1.1 200") and after.endswith(b"hello")
