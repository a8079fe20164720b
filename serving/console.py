"""The web console on the REST port: a page to try any served model from a browser.

The page (plain files in serving/console/, no build step) asks the same REST API
a client would (`GET /v1/models/NAME/metadata`, `POST ...:predict`) and shows the
request and response JSON beside the answer. This handler serves only what TF
Serving's API has no URL for, under `/console/`:

- `/` and `/console/`: the page; `/console/static/FILE`: its script and style;
- `/console/api/models`: every configured model, its served versions, whether
  each has a run report, and the REST body limit;
- `/console/api/models/NAME/versions/V/schema`: the feature domains and class
  names the pipeline's export put in `assets.extra/` ({} when a model has none,
  e.g. one not trained here; the page then builds its form from the signature);
- `/console/reports/NAME/V`: `<base_path>/reports/V.html`, the run report of the
  pipeline run that pushed version V.
"""
from __future__ import annotations

import json
import os
import re
from importlib import resources
from urllib.parse import unquote

from serving.errors import ServingError
from serving.manager import ModelManager

ASSETS_EXTRA = "assets.extra"  # what models/assets_extra.py writes into each export
SCHEMA_FILE = "schema.pbtxt"
LABEL_NAMES_FILE = "label_names.txt"
REPORTS_DIR = "reports"  # <base_path>/reports/<version>.html, written by `python -m pipeline report`

HTML = "text/html; charset=utf-8"
JSON = "application/json"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".html": HTML, ".svg": "image/svg+xml"}
_STATIC = re.compile(r"/console/static/([A-Za-z0-9_-]+\.[a-z]+)")
_SCHEMA = re.compile(r"/console/api/models/([^/]+)/versions/(\d{1,19})/schema")
_REPORT = re.compile(r"/console/reports/([^/]+)/(\d{1,19})")

Answer = tuple[int, str, bytes]


class Console:
    """Page handler (serving.pages.PageHandler) for the console's page, files and JSON."""

    def __init__(self, manager: ModelManager, max_body_bytes: int):
        self._manager = manager
        self._max_body_bytes = max_body_bytes  # the page checks a request's size against it before sending
        self._files = resources.files("serving") / "console"

    def handle(self, method: str, path: str) -> Answer | None:
        if path not in ("/", "/console", "/console/") and not path.startswith("/console/"):
            return None
        if method != "GET":
            return _json(405, {"error": f"{method} is not supported on {path}; the console only answers GET"})
        if path in ("/", "/console", "/console/"):
            return self._static("index.html")
        if path == "/console/api/models":
            return _json(200, {"models": self._models(), "max_body_bytes": self._max_body_bytes})
        for pattern, answer in ((_STATIC, self._static), (_SCHEMA, self._schema), (_REPORT, self._report)):
            match = pattern.fullmatch(path)
            if match:
                name, *rest = match.groups()
                return answer(unquote(name), *rest)
        return _json(404, {"error": f"Not found: {path}"})

    def _static(self, name: str) -> Answer:
        content_type = STATIC_TYPES.get(os.path.splitext(name)[1])
        resource = self._files / name
        if content_type is None or not resource.is_file():
            return _json(404, {"error": f"Not found: console file {name}"})
        return 200, content_type, resource.read_bytes()

    def _models(self) -> list[dict]:
        models = []
        for entry in self._manager.entries():
            try:
                statuses = self._manager.statuses(entry.name)
            except ServingError:  # nothing loaded (yet): listed without versions
                statuses = []
            versions = [{"version": status.version,
                         "report": _report_url(entry.name, status.version)
                         if os.path.isfile(_report_path(entry.base_path, status.version)) else None}
                        for status in statuses if status.state == "AVAILABLE"]
            models.append({"name": entry.name, "versions": versions})
        return models

    def _schema(self, name: str, version: str) -> Answer:
        try:
            servable = self._manager.resolve(name, int(version))
        except ServingError as error:
            return _json(error.http_status, {"error": error.message})
        extra = os.path.join(servable.path, ASSETS_EXTRA)
        return _json(200, {"features": _feature_domains(os.path.join(extra, SCHEMA_FILE)),
                           "label_names": _label_names(os.path.join(extra, LABEL_NAMES_FILE))})

    def _report(self, name: str, version: str) -> Answer:
        entry = next((entry for entry in self._manager.entries() if entry.name == name), None)
        path = _report_path(entry.base_path, int(version)) if entry is not None else None
        if path is None or not os.path.isfile(path):
            return 404, HTML, (f"<!doctype html><title>No report</title><p>No run report for model "
                               f"{_escape(name)} version {version}.</p>").encode()
        with open(path, "rb") as handle:
            return 200, HTML, handle.read()


def _report_path(base_path: str, version: int) -> str:
    return os.path.join(base_path, REPORTS_DIR, f"{version}.html")


def _report_url(name: str, version: int) -> str:
    return f"/console/reports/{name}/{version}"


def _feature_domains(schema_path: str) -> dict[str, dict]:
    """Feature name -> {type, and min/max, values or image} from a schema.pbtxt; {} if absent."""
    if not os.path.isfile(schema_path):
        return {}
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    with open(schema_path, encoding="utf-8") as handle:
        schema = text_format.Parse(handle.read(), schema_pb2.Schema())
    named = {domain.name: list(domain.value) for domain in schema.string_domain}
    features = {}
    for feature in schema.feature:
        info: dict = {"type": schema_pb2.FeatureType.Name(feature.type)}
        kind = feature.WhichOneof("domain_info")
        if kind in ("int_domain", "float_domain"):
            domain = getattr(feature, kind)
            info.update({bound: getattr(domain, bound) for bound in ("min", "max") if domain.HasField(bound)})
        elif kind == "string_domain":
            info["values"] = list(feature.string_domain.value)
        elif kind == "domain" and feature.domain in named:
            info["values"] = named[feature.domain]
        elif kind == "image_domain":
            info["image"] = True
        features[feature.name] = info
    return features


def _label_names(path: str) -> list[str]:
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]


def _json(status: int, payload: dict) -> Answer:
    return status, JSON, json.dumps(payload).encode()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
