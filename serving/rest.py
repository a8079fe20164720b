"""TF Serving's REST API v1: (method, path, body) to (HTTP status, JSON).

`RestApi` follows TF Serving's URL patterns and error statuses; the HTTP layer
around it is serving/http_server.py.
"""
from __future__ import annotations

import functools
import logging
import re
import time
from typing import TYPE_CHECKING
from urllib.parse import unquote

from serving import json_codec
from serving.errors import Code, ServingError, invalid_argument
from serving.inference import InferenceService
from serving.manager import ModelManager
from serving.monitoring import Metrics
from serving.protos import model_spec, model_status_response, signature_def_map, to_json_dict

if TYPE_CHECKING:
    from serving.request_log import RequestLogger

log = logging.getLogger(__name__)

_VERSION_OR_LABEL = r"(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
PREDICTION_PATH = re.compile(rf"/v1/models/([^/:]+){_VERSION_OR_LABEL}:(classify|regress|predict)", re.I)
STATUS_PATH = re.compile(rf"/v1/models(?:/([^/:]+))?{_VERSION_OR_LABEL}(?:/(metadata))?", re.I)


class RestApi:
    """Routes one REST call to the model manager and inference service."""

    def __init__(self, manager: ModelManager, service: InferenceService, metrics: Metrics | None = None,
                 request_logger: RequestLogger | None = None):
        self._manager = manager
        self._service = service
        self._metrics = metrics
        self._request_logger = request_logger  # sees every successful predict, classify and regress

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        started, code = time.perf_counter(), None
        try:
            answer = 200, self._dispatch(method, path, body)
        except ServingError as error:
            code = error.code
            log.info("%s %s -> %d: %s", method, path, error.http_status, error.message)
            answer = error.http_status, json_codec.dumps({"error": error.message})
        except Exception as error:  # noqa: BLE001 - a bug must cost one request, not the server
            code = Code.INTERNAL
            log.exception("%s %s failed", method, path)
            answer = 500, json_codec.dumps({"error": f"Internal error: {error}"})
        if self._metrics is not None:
            self._metrics.record(*_metric_labels(method, path), "REST", code, time.perf_counter() - started)
        return answer

    def _dispatch(self, method: str, path: str, body: bytes) -> bytes:
        route = _prediction_route(path) if method == "POST" else None
        if route:
            name, version, label, verb = route
            return self._predict_like(name, _version(version), label, verb, body)
        match = STATUS_PATH.fullmatch(path) if method == "GET" else None
        if match:
            name, version, label, metadata = match.groups()
            if not name:
                raise invalid_argument("Missing model name in request.")
            if metadata:
                return json_codec.dumps(self._metadata(unquote(name), _version(version), _label(label)))
            statuses = self._manager.statuses(unquote(name), _version(version), _label(label))
            return json_codec.dumps(to_json_dict(model_status_response(statuses)))
        raise invalid_argument(f"Malformed request: {method} {path}")

    def _predict_like(self, name: str, version: int | None, label: str | None, verb: str, body: bytes) -> bytes:
        doc = json_codec.parse_body(body)
        signature = json_codec.signature_name(doc)
        logger = self._request_logger
        if verb == "predict":
            servable = self._manager.resolve(name, version, label)
            inputs, fmt = json_codec.predict_inputs(doc, servable.signature_def(signature).inputs)
            answer = json_codec.dumps(json_codec.predict_response(self._service.predict(servable, signature, inputs),
                                                                  fmt))
            if logger is not None:
                logger.rest_predict(servable, signature, body, answer)
            return answer
        examples = json_codec.serialized_examples(doc, verb)
        servable = self._manager.resolve(name, version, label)
        if verb == "classify":
            results = self._service.classify(servable, signature, examples)
            if logger is not None:
                logger.rest_classify(servable, signature, examples, results)
            return json_codec.dumps(json_codec.classify_response(results))
        values = self._service.regress(servable, signature, examples)
        if logger is not None:
            logger.rest_regress(servable, signature, examples, values)
        return json_codec.dumps(json_codec.regress_response(values))

    def _metadata(self, name: str, version: int | None, label: str | None) -> dict:
        servable = self._manager.resolve(name, version, label)
        return {
            "model_spec": to_json_dict(model_spec(servable)),
            "metadata": {"signature_def": to_json_dict(signature_def_map(servable))},
        }


@functools.lru_cache(maxsize=1024)  # clients use few distinct URLs; matching them again costs per request
def _prediction_route(path: str) -> tuple[str, str | None, str | None, str] | None:
    """(model name, version text, label, verb) of a classify/regress/predict URL, or None."""
    match = PREDICTION_PATH.fullmatch(path)
    if match is None:
        return None
    name, version, label, verb = match.groups()
    return unquote(name), version, _label(label), verb.lower()


@functools.lru_cache(maxsize=1024)
def _metric_labels(method: str, path: str) -> tuple[str, str]:
    """(model name, API) as TF Serving's REST handler reports them: the URL's model and verb."""
    match = PREDICTION_PATH.fullmatch(path) if method == "POST" else None
    if match:
        return unquote(match.group(1)), match.group(4).lower()
    match = STATUS_PATH.fullmatch(path) if method == "GET" else None
    if match:
        return unquote(match.group(1) or ""), "metadata" if match.group(4) else ""
    return "", ""


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    version = int(text)
    if version >= 2**63:
        raise invalid_argument(f"Failed to convert version: {text} to numeric.")
    return version


def _label(text: str | None) -> str | None:
    return unquote(text) if text is not None else None
