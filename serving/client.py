"""REST client for TF Serving's API v1: works against this server and the real one alike.

Standard library only (no TensorFlow import), so querying a model starts instantly.
One client holds one keep-alive connection: use one client per thread.
"""
from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import quote


class ServingHTTPError(Exception):
    """A non-200 answer; `message` is the server's {"error": ...} text."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class RestClient:
    """Calls /v1/models/... on one server over a persistent HTTP/1.1 connection."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8501, timeout: float = 30.0):
        self.host = host
        self.port = port
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    # -- API ---------------------------------------------------------------------

    def model_status(self, model: str, version: int | None = None, label: str | None = None) -> dict:
        return self._request("GET", _model_path(model, version, label))

    def model_metadata(self, model: str, version: int | None = None, label: str | None = None) -> dict:
        return self._request("GET", _model_path(model, version, label) + "/metadata")

    def predict(self, model: str, instances: list | None = None, inputs: Any = None,
                signature_name: str | None = None, version: int | None = None,
                label: str | None = None) -> dict:
        """Row format with `instances`, columnar with `inputs` (exactly one of them)."""
        if (instances is None) == (inputs is None):
            raise ValueError("give exactly one of instances or inputs")
        body: dict[str, Any] = {"instances": instances} if instances is not None else {"inputs": inputs}
        if signature_name:
            body["signature_name"] = signature_name
        return self._request("POST", _model_path(model, version, label) + ":predict", body)

    def classify(self, model: str, examples: list[dict], context: dict | None = None,
                 signature_name: str | None = None, version: int | None = None,
                 label: str | None = None) -> dict:
        return self._request("POST", _model_path(model, version, label) + ":classify",
                             _examples_body(examples, context, signature_name))

    def regress(self, model: str, examples: list[dict], context: dict | None = None,
                signature_name: str | None = None, version: int | None = None,
                label: str | None = None) -> dict:
        return self._request("POST", _model_path(model, version, label) + ":regress",
                             _examples_body(examples, context, signature_name))

    def wait_until_available(self, model: str, timeout: float = 120.0) -> dict:
        """Poll the status until a version is AVAILABLE; raises TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                status = self.model_status(model)
                if any(v["state"] == "AVAILABLE" for v in status["model_version_status"]):
                    return status
            except (OSError, http.client.HTTPException, ServingHTTPError) as error:
                last_error = error
            time.sleep(0.2)
        raise TimeoutError(f"model {model} not available at {self.host}:{self.port} "
                           f"after {timeout:.0f} s (last error: {last_error})")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> "RestClient":
        return self

    def __exit__(self, *_) -> None:
        self.close()

    # -- transport -----------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        payload = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        for attempt in (1, 2):  # a kept-alive connection the server closed is retried once
            connection = self._connect()
            try:
                connection.request(method, path, body=payload, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except (ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 2:
                    raise
                continue
            except (OSError, http.client.HTTPException):
                self.close()  # the connection is in an unknown state: never reuse it
                raise
            if response.will_close:
                self.close()
            break
        try:
            answer = json.loads(data) if data else {}
        except json.JSONDecodeError:
            answer = {"error": data.decode("utf-8", errors="replace")}
        if response.status != 200:
            message = answer.get("error", "") if isinstance(answer, dict) else str(answer)
            raise ServingHTTPError(response.status, message)
        return answer

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._connection


def _model_path(model: str, version: int | None, label: str | None) -> str:
    if version is not None and label is not None:
        raise ValueError("give a version or a label, not both")
    path = f"/v1/models/{quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label is not None:
        path += f"/labels/{quote(label, safe='')}"
    return path


def _examples_body(examples: list[dict], context: dict | None, signature_name: str | None) -> dict:
    body: dict[str, Any] = {"examples": examples}
    if context:
        body["context"] = context
    if signature_name:
        body["signature_name"] = signature_name
    return body
