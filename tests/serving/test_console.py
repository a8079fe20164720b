"""The console's own URLs on a real server process, over plain HTTP (the page itself: test_console_browser.py).

Served here: TF Serving's own half_plus_two test model (two versions, no
assets.extra, so no schema): the console must still list it, and link a version
to its run report only when `<base_path>/reports/<version>.html` exists.
"""
from __future__ import annotations

import http.client
import json
import shutil
import textwrap
from pathlib import Path

import pytest

from serving.demo import stop_process
from tests.serving.serving_test_support import ServerProcess, start_server

TESTDATA = Path(__file__).parent / "testdata" / "tf_serving"
REPORT = "<!doctype html><title>run report</title><h1>Run report of version 123</h1>"


@pytest.fixture(scope="module")
def console_server(tmp_path_factory) -> ServerProcess:
    root = tmp_path_factory.mktemp("console")
    base = root / "half_plus_two"
    shutil.copytree(TESTDATA / "saved_model_half_plus_two_2_versions", base)
    (base / "reports").mkdir()
    (base / "reports" / "123.html").write_text(REPORT)  # what `pipeline report` leaves beside the versions
    config = root / "models.config"
    config.write_text(textwrap.dedent(f"""\
        model_config_list {{
          config {{ name: "half_plus_two" base_path: "{base}" model_version_policy {{ all {{}} }} }}
          config {{ name: "nothing_yet" base_path: "{root / 'empty'}" }}
        }}
        """))
    server = start_server([f"--model_config_file={config}", "--rest_api_max_body_bytes=5000"],
                          root / "server.log", wait_for=["half_plus_two"])
    yield server
    stop_process(server.process)


def get(server: ServerProcess, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    try:
        connection.request(method, path, body=b"" if method != "GET" else None)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def test_page_and_its_files_are_served(console_server):
    status, content_type, body = get(console_server, "/")
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert b'<script src="/console/static/console.js">' in body
    status, content_type, body = get(console_server, "/console/static/console.js")
    assert (status, content_type) == (200, "text/javascript; charset=utf-8")
    assert b":predict" in body
    assert get(console_server, "/console/static/console.css")[0] == 200
    assert get(console_server, "/console/static/missing.js")[0] == 404


def test_model_listing_has_served_versions_reports_and_the_body_limit(console_server):
    status, _, body = get(console_server, "/console/api/models")
    assert status == 200
    listing = json.loads(body)
    assert listing["max_body_bytes"] == 5000
    models = {model["name"]: model["versions"] for model in listing["models"]}
    assert models["nothing_yet"] == []
    assert models["half_plus_two"] == [{"version": 124, "report": None},
                                       {"version": 123, "report": "/console/reports/half_plus_two/123"}]


def test_report_is_served_only_where_it_exists(console_server):
    assert get(console_server, "/console/reports/half_plus_two/123") == (200, "text/html; charset=utf-8",
                                                                         REPORT.encode())
    status, content_type, body = get(console_server, "/console/reports/half_plus_two/124")
    assert (status, content_type) == (404, "text/html; charset=utf-8")
    assert b"No run report for model half_plus_two version 124" in body
    assert get(console_server, "/console/reports/unknown/1")[0] == 404


def test_a_model_without_assets_extra_has_an_empty_schema(console_server):
    status, _, body = get(console_server, "/console/api/models/half_plus_two/versions/123/schema")
    assert status == 200
    assert json.loads(body) == {"features": {}, "label_names": []}


def test_schema_of_an_unserved_version_is_tf_servings_not_found(console_server):
    status, _, body = get(console_server, "/console/api/models/half_plus_two/versions/7/schema")
    assert status == 404
    assert json.loads(body) == {"error": "Servable not found for request: Specific(half_plus_two, 7)"}


def test_console_answers_only_get_and_leaves_other_paths_and_the_api_alone(console_server):
    status, _, body = get(console_server, "/", method="POST")
    assert status == 405
    assert "only answers GET" in json.loads(body)["error"]
    assert get(console_server, "/elsewhere")[0] == 404
    status, _, body = get(console_server, "/v1/models/half_plus_two/versions/123")
    assert status == 200 and json.loads(body)["model_version_status"][0]["state"] == "AVAILABLE"


def test_web_console_false_turns_the_page_off(tmp_path):
    server = start_server([f"--model_base_path={TESTDATA / 'saved_model_half_plus_two_tf2_cpu'}",
                           "--model_name=half_plus_two", "--web_console=false"],
                          tmp_path / "server.log", wait_for=["half_plus_two"])
    try:
        assert get(server, "/")[0] == 404
        assert get(server, "/console/api/models")[0] == 404
        assert get(server, "/v1/models/half_plus_two")[0] == 200
    finally:
        stop_process(server.process)


@pytest.mark.parametrize("dataset", ["churn", "digits_images"])
def test_exports_carry_the_curated_schema_and_class_names(dataset, tmp_path):
    """The export half: what models/assets_extra.py writes is what the console's schema endpoint reads."""
    import tensorflow_transform as tft

    from models.assets_extra import write_assets_extra
    from serving.console import _feature_domains, _label_names
    from specs.dataset import load_spec

    spec = load_spec(dataset)
    transform_output = tmp_path / "transform"  # the layout Transform writes its raw (input) schema in
    (transform_output / tft.TFTransformOutput.RAW_METADATA_DIR).mkdir(parents=True)
    shutil.copy(spec.schema_path, transform_output / tft.TFTransformOutput.RAW_METADATA_DIR / "schema.pbtxt")
    export = tmp_path / "export"
    write_assets_extra(str(export), spec, tft.TFTransformOutput(str(transform_output)))

    features = _feature_domains(str(export / "assets.extra" / "schema.pbtxt"))
    assert _label_names(str(export / "assets.extra" / "label_names.txt")) == list(spec.label_names)
    if dataset == "churn":
        assert features["Geography"] == {"type": "BYTES", "values": ["France", "Germany", "Spain"]}
        assert features["Age"] == {"type": "INT", "min": 18, "max": 120}
    else:
        assert features["image"] == {"type": "BYTES", "image": True}  # marked, so the page offers an upload
        assert features["label"] == {"type": "INT", "min": 0, "max": 9}
