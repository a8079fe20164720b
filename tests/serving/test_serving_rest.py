"""REST API v1 against the real server process: formats, verbs, versions and every bad input."""
from __future__ import annotations

import base64
import http.client
import json

import numpy as np
import pytest

from serving.client import ServingHTTPError
from tests.serving.serving_test_support import (MAX_BODY_BYTES, UNSEEN_CUSTOMER, assert_server_alive, example_bytes,
                                  run_in_process)

OTHER_CUSTOMER = {"CreditScore": 720, "Geography": "Spain", "Balance": 120000.5}


def raw_request(server, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, dict]:
    """A request the client library would never send (bad JSON, odd headers)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


# -- status and metadata -----------------------------------------------------------------

def test_status_lists_the_available_version(rest):
    assert rest.model_status("churn") == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}


def test_status_of_one_version_and_of_a_label(rest):
    assert [v["version"] for v in rest.model_status("multi")["model_version_status"]] == ["2", "1"]
    assert rest.model_status("multi", version=1)["model_version_status"][0]["version"] == "1"
    assert rest.model_status("multi", label="canary")["model_version_status"][0]["version"] == "2"


def test_metadata_reports_the_saved_signatures(rest):
    metadata = rest.model_metadata("churn")
    assert metadata["model_spec"] == {"name": "churn", "signature_name": "", "version": "1"}
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    default = signatures["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["CreditScore"]["dtype"] == "DT_INT64"
    assert default["inputs"]["Geography"]["dtype"] == "DT_STRING"
    assert default["inputs"]["Balance"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    assert set(default["outputs"]) == {"probabilities", "class_ids", "classes", "probability"}
    assert signatures["serving_tf_example"]["inputs"]["examples"]["dtype"] == "DT_STRING"


def test_metadata_of_a_label(rest):
    assert rest.model_metadata("multi", label="stable")["model_spec"]["version"] == "1"


# -- predict ---------------------------------------------------------------------------------

def test_predict_row_format_matches_the_in_process_call(rest, keras_model):
    answer = rest.predict("churn", instances=[UNSEEN_CUSTOMER, OTHER_CUSTOMER])
    expected = run_in_process(keras_model, [UNSEEN_CUSTOMER, OTHER_CUSTOMER])
    rows = answer["predictions"]
    assert len(rows) == 2
    for i, row in enumerate(rows):
        assert set(row) == {"probabilities", "class_ids", "classes", "probability"}
        assert np.float32(row["probability"]) == expected["probability"][i]
        assert np.array_equal(np.float32(row["probabilities"]), expected["probabilities"][i])
        assert row["class_ids"] == int(expected["class_ids"][i])
        assert row["classes"] == expected["classes"][i].decode()


def test_predict_columnar_format_returns_outputs_by_name(rest, keras_model):
    columns = {name: [UNSEEN_CUSTOMER[name], OTHER_CUSTOMER[name]] for name in UNSEEN_CUSTOMER}
    answer = rest.predict("churn", inputs=columns)
    expected = run_in_process(keras_model, [UNSEEN_CUSTOMER, OTHER_CUSTOMER])
    outputs = answer["outputs"]
    assert np.array_equal(np.float32(outputs["probabilities"]), expected["probabilities"])
    assert outputs["class_ids"] == expected["class_ids"].tolist()


def test_columnar_keys_the_signature_does_not_name_are_ignored_as_tf_serving_does(rest):
    columns = {**{name: [value] for name, value in UNSEEN_CUSTOMER.items()}, "Age": [22]}
    assert len(rest.predict("churn", inputs=columns)["outputs"]["probability"]) == 1


def test_float32_outputs_use_tf_servings_digits(rest):
    # TF Serving's WriteDecimal: six significant digits when they round-trip as float32, else nine.
    probability = rest.predict("churn", instances=[UNSEEN_CUSTOMER])["predictions"][0]["probability"]
    value = np.float32(probability)
    six = "%g" % value
    assert probability == float(six if np.float32(six) == value else "%.9g" % value)


def test_predict_on_a_version_and_a_label(rest):
    by_version = rest.predict("multi", instances=[UNSEEN_CUSTOMER], version=2)
    by_label = rest.predict("multi", instances=[UNSEEN_CUSTOMER], label="canary")
    assert by_version == by_label


def test_specific_policy_serves_only_the_pinned_version(rest):
    assert [v["version"] for v in rest.model_status("pinned")["model_version_status"]] == ["1"]
    with pytest.raises(ServingHTTPError) as error:
        rest.predict("pinned", instances=[UNSEEN_CUSTOMER], version=2)
    assert error.value.status == 404


def test_b64_string_input_equals_the_plain_string(rest):
    plain = rest.predict("churn", instances=[UNSEEN_CUSTOMER])
    encoded = dict(UNSEEN_CUSTOMER, Geography={"b64": base64.b64encode(b"France").decode()})
    assert rest.predict("churn", instances=[encoded]) == plain


def test_serialized_examples_as_b64_through_the_tf_example_signature(rest):
    serialized = base64.b64encode(example_bytes(UNSEEN_CUSTOMER)).decode()
    by_example = rest.predict("churn", instances=[{"b64": serialized}], signature_name="serving_tf_example")
    assert by_example == rest.predict("churn", instances=[UNSEEN_CUSTOMER])


def test_single_output_signature_answers_a_plain_list(rest):
    assert rest.predict("estimator", instances=[1.0, 2.5], signature_name="predict_raw") == {
        "predictions": [3.0, 6.0]}
    assert rest.predict("estimator", inputs=[1.0, 2.5], signature_name="predict_raw") == {"outputs": [3.0, 6.0]}


def test_bytes_outputs_are_b64_encoded(rest):
    answer = rest.predict("estimator", instances=[{"b64": "AP8="}, "hi"], signature_name="echo")
    assert answer == {"predictions": [{"length": 2, "payload_bytes": {"b64": "AP8="}},
                                      {"length": 2, "payload_bytes": {"b64": "aGk="}}]}


# -- classify and regress --------------------------------------------------------------------

def test_classify_returns_label_score_pairs(rest):
    answer = rest.classify("estimator", examples=[{"x": 1.0}, {"x": -2.5}])
    first, second = answer["results"]
    assert [label for label, _ in first] == ["neg", "pos"]
    assert first[1][1] == pytest.approx(1 / (1 + np.exp(-3.0)), rel=1e-6)
    assert second[1][1] == pytest.approx(1 / (1 + np.exp(4.0)), rel=1e-6)


def test_classify_merges_the_context_into_every_example(rest):
    answer = rest.classify("estimator", examples=[{}, {}], context={"x": 0.5})
    assert answer["results"][0] == answer["results"][1]
    assert answer["results"][0][1][1] == pytest.approx(1 / (1 + np.exp(-2.0)), rel=1e-6)


def test_regress_computes_the_regression_signature(rest):
    answer = rest.regress("estimator", examples=[{"x": 1.0}, {"x": 3.5}], signature_name="regression")
    assert answer == {"results": [3.0, 8.0]}


def test_classify_on_a_three_input_signature_is_refused_like_tf_serving(rest):
    # TF Serving's default (no --enable_signature_method_name_check) checks the signature's shape only.
    with pytest.raises(ServingHTTPError) as error:
        rest.classify("churn", examples=[UNSEEN_CUSTOMER])
    assert error.value.status == 400
    assert error.value.message == "Expected one input Tensor."


def test_regress_on_a_two_output_classify_signature_is_refused(rest):
    with pytest.raises(ServingHTTPError) as error:
        rest.regress("estimator", examples=[{"x": 1.0}])
    assert error.value.status == 400
    assert error.value.message == "Expected one output Tensor."


# -- bad input ----------------------------------------------------------------------------------

GOOD_ROW = json.dumps(UNSEEN_CUSTOMER)
BAD_REQUESTS = [
    # (id, path, body, expected status, words the error must contain)
    ("malformed json", "/v1/models/churn:predict", b'{"instances": [', 400, "JSON Parse error"),
    ("empty body", "/v1/models/churn:predict", b"", 400, "document is empty"),
    ("body not an object", "/v1/models/churn:predict", b"[1, 2]", 400, "Is not object"),
    ("both instances and inputs", "/v1/models/churn:predict",
     f'{{"instances": [{GOOD_ROW}], "inputs": {{}}}}'.encode(), 400, "only one of 'inputs' or 'instances'"),
    ("neither instances nor inputs", "/v1/models/churn:predict", b'{"rows": []}', 400,
     "Missing 'inputs' or 'instances' key"),
    ("unknown input name", "/v1/models/churn:predict",
     json.dumps({"instances": [dict(UNSEEN_CUSTOMER, Surname="Smith")]}).encode(), 400,
     "does not have named input: Surname"),
    ("missing input", "/v1/models/churn:predict",
     json.dumps({"instances": [{"CreditScore": 615, "Geography": "France"}]}).encode(), 400,
     "keys must be equal to: Balance,CreditScore,Geography"),
    ("missing columnar input", "/v1/models/churn:predict",
     json.dumps({"inputs": {"CreditScore": [615], "Geography": ["France"]}}).encode(), 400,
     "Missing named input: Balance"),
    ("string for int64", "/v1/models/churn:predict",
     json.dumps({"instances": [dict(UNSEEN_CUSTOMER, CreditScore="615")]}).encode(), 400,
     "is not of expected type: int64"),
    ("float for int64", "/v1/models/churn:predict",
     json.dumps({"instances": [dict(UNSEEN_CUSTOMER, CreditScore=615.5)]}).encode(), 400,
     "is not of expected type: int64"),
    ("number for string", "/v1/models/churn:predict",
     json.dumps({"instances": [dict(UNSEEN_CUSTOMER, Geography=3)]}).encode(), 400,
     "is not of expected type: string"),
    ("ragged rows", "/v1/models/churn:predict",
     json.dumps({"instances": [dict(UNSEEN_CUSTOMER, CreditScore=[615, 620]), UNSEEN_CUSTOMER]}).encode(), 400,
     "Expecting tensor size: 2 but got: 1"),
    ("ragged nested list", "/v1/models/estimator:predict",
     b'{"signature_name": "predict_raw", "inputs": [[1.0, 2.0], [3.0]]}', 400,
     "Encountered list at unexpected size"),
    ("wrong rank", "/v1/models/churn:predict",
     json.dumps({"inputs": {k: [[v]] for k, v in UNSEEN_CUSTOMER.items()}}).encode(), 400,
     "Shape must be at most rank 2 but is rank 3"),  # the graph's own check, as in TF Serving
    ("empty instances", "/v1/models/churn:predict", b'{"instances": []}', 400, "No values in 'instances'"),
    ("bad b64", "/v1/models/churn:predict",
     json.dumps({"instances": [dict(UNSEEN_CUSTOMER, Geography={"b64": "not base64!"})]}).encode(), 400,
     "Unable to base64 decode"),
    ("unknown model", "/v1/models/nosuchmodel:predict", f'{{"instances": [{GOOD_ROW}]}}'.encode(), 404,
     "Servable not found for request: Latest(nosuchmodel)"),
    ("unknown version", "/v1/models/churn/versions/42:predict", f'{{"instances": [{GOOD_ROW}]}}'.encode(), 404,
     "Servable not found for request: Specific(churn, 42)"),
    ("unknown label", "/v1/models/multi/labels/nightly:predict", f'{{"instances": [{GOOD_ROW}]}}'.encode(), 400,
     "Unrecognized servable version label: nightly"),
    ("unknown signature", "/v1/models/churn:predict",
     f'{{"signature_name": "nope", "instances": [{GOOD_ROW}]}}'.encode(), 400,
     'Serving signature key "nope" not found'),
    ("signature name not a string", "/v1/models/churn:predict",
     f'{{"signature_name": 7, "instances": [{GOOD_ROW}]}}'.encode(), 400, "'signature_name' key must be a string"),
    ("classify without examples", "/v1/models/estimator:classify", b'{"instances": []}', 400,
     "key 'examples' is expected"),
    ("classify empty examples", "/v1/models/estimator:classify", b'{"examples": []}', 400,
     "'examples' value is an empty array"),
    ("classify example not an object", "/v1/models/estimator:classify", b'{"examples": [[1.0]]}', 400,
     "Example must be JSON object"),
    ("classify mixed feature kinds", "/v1/models/estimator:classify", b'{"examples": [{"x": [1.0, "a"]}]}', 400,
     "Unexpected element type in feature: x"),
    ("regress wrong feature type", "/v1/models/estimator:regress",
     b'{"signature_name": "regression", "examples": [{"x": "one"}]}', 400, "Data types don't match"),
    ("unknown verb path", "/v1/models/churn:explain", b"{}", 400, "Malformed request"),
]


@pytest.mark.parametrize("path,body,status,words", [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_input_gets_4xx_with_an_error_message(server, rest, path, body, status, words):
    got_status, answer = raw_request(server, "POST", path, body, {"Content-Type": "application/json"})
    assert got_status == status, answer
    assert set(answer) == {"error"}
    assert words in answer["error"]
    assert_server_alive(rest)


@pytest.mark.parametrize("path,status,words", [
    ("/v1/models/nosuchmodel", 404, "Could not find any versions of model nosuchmodel"),
    ("/v1/models/churn/versions/42", 404, "Could not find version 42 of model churn"),
    ("/v1/models/multi/labels/nightly", 400, "Unrecognized servable version label: nightly"),
    ("/v1/models/nosuchmodel/metadata", 404, "Servable not found"),
    ("/v1/models", 400, "Missing model name"),
])
def test_bad_status_and_metadata_requests(server, rest, path, status, words):
    got_status, answer = raw_request(server, "GET", path)
    assert got_status == status
    assert words in answer["error"]
    assert_server_alive(rest)


def test_oversized_body_is_refused_with_413(server, rest):
    huge = json.dumps({"instances": [UNSEEN_CUSTOMER] * (MAX_BODY_BYTES // 40)}).encode()
    assert len(huge) > MAX_BODY_BYTES
    status, answer = raw_request(server, "POST", "/v1/models/churn:predict", huge)
    assert status == 413
    assert "exceeds the limit" in answer["error"]
    assert_server_alive(rest)


def test_body_without_content_length_is_refused(server, rest):
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    try:  # a well-formed chunked body: http.client frames the chunks
        connection.request("POST", "/v1/models/churn:predict", body=iter([b"{}"]), encode_chunked=True)
        response = connection.getresponse()
        status, answer = response.status, json.loads(response.read())
    finally:
        connection.close()
    assert status == 411
    assert "Content-Length" in answer["error"]
    assert_server_alive(rest)


def test_many_rows_in_one_request(rest, keras_model):
    rows = [dict(UNSEEN_CUSTOMER, CreditScore=400 + i) for i in range(300)]
    predictions = rest.predict("churn", instances=rows)["predictions"]
    expected = run_in_process(keras_model, rows)["probability"]
    assert np.array_equal(np.float32([row["probability"] for row in predictions]), expected)
