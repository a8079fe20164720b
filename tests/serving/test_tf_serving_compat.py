"""TF Serving's own tests, ported: its test models, its expected answers, over a real server process.

Expectations come from tensorflow/serving's model_servers/http_rest_api_handler_test.cc,
model_servers/tensorflow_model_server_test.py and util/json_tensor_test.cc; the models and
configs are its testdata files, byte-exact (tests/serving/testdata/tf_serving/README.md).
"""
from __future__ import annotations

import http.client
import json
import shutil
import socket
import textwrap
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from serving.demo import stop_process
from tests.serving.serving_test_support import ServerProcess, start_server

TESTDATA = Path(__file__).parent / "testdata" / "tf_serving"
HALF_PLUS_TWO = TESTDATA / "saved_model_half_plus_two_cpu"
TWO_VERSIONS = TESTDATA / "saved_model_half_plus_two_2_versions"
HALF_PLUS_THREE = TESTDATA / "saved_model_half_plus_three"
TF2 = TESTDATA / "saved_model_half_plus_two_tf2_cpu"
LABEL = "Version_Label"  # http_rest_api_handler_test.cc's kTestModelVersionLabel


@pytest.fixture(scope="module")
def tfs(tmp_path_factory) -> ServerProcess:
    root = tmp_path_factory.mktemp("tf_serving")
    default = root / "half_plus_two"
    shutil.copytree(HALF_PLUS_TWO, default)
    for junk in ["²", "1e3", "0x7", "notes"]:  # not versions by TF Serving's rule: ignored, no crash
        (default / junk).mkdir()
    config = root / "models.config"
    config.write_text(textwrap.dedent(f"""\
        model_config_list {{
          config {{ name: "default" base_path: "{default}" model_platform: "tensorflow" }}
          config {{
            name: "saved_model_half_plus_two_2_versions" base_path: "{TWO_VERSIONS}"
            model_platform: "tensorflow"
            model_version_policy {{ specific {{ versions: 123 }} }}
            version_labels {{ key: "{LABEL}" value: 123 }}
          }}
          config {{ name: "half_plus_three" base_path: "{HALF_PLUS_THREE}" model_platform: "tensorflow" }}
          config {{ name: "tf2" base_path: "{TF2}" model_platform: "tensorflow" }}
        }}
        """))
    server = start_server(
        [f"--model_config_file={config}", f"--monitoring_config_file={TESTDATA / 'monitoring_config.txt'}",
         "--grpc_channel_arguments=grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb",
         "--tensorflow_intra_op_parallelism=2", "--tensorflow_inter_op_parallelism=2",
         "--file_system_poll_wait_seconds=0.5"],
        root / "server.log", wait_for=["default", "saved_model_half_plus_two_2_versions", "half_plus_three", "tf2"])
    yield server
    stop_process(server.process)
    assert server.process.returncode == 0, server.log()


def call(server: ServerProcess, method: str, path: str, body: bytes | str | None = None,
         headers: dict | None = None) -> tuple[int, dict | str]:
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    try:
        connection.request(method, path, body=body.encode() if isinstance(body, str) else body,
                           headers=headers or {})
        response = connection.getresponse()
        raw = response.read().decode()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except json.JSONDecodeError:
        return response.status, raw


def post(server, path: str, body) -> tuple[int, dict]:
    return call(server, "POST", path, body if isinstance(body, (str, bytes)) else json.dumps(body))


@pytest.fixture(scope="module")
def stub(tfs):
    with tfs.channel() as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def model_stub(tfs):
    with tfs.channel() as channel:
        yield model_service_pb2_grpc.ModelServiceStub(channel)


# -- REST: http_rest_api_handler_test.cc ---------------------------------------------------

M = "/v1/models/saved_model_half_plus_two_2_versions"


@pytest.mark.parametrize("method, path, words", [
    ("GET", "/v1/foo", "Malformed request"),
    ("POST", "/v1/foo", "Malformed request"),
    ("GET", "/v1/models", "Missing model name"),
    ("GET", "/v1/models/debug/model_name", "Malformed request"),
    ("POST", "/v1/models", "Malformed request"),
    ("GET", "/v1/models/foo:predict", "Malformed request"),
    ("GET", "/v1/models/foo/version/50:predict", "Malformed request"),
    ("POST", "/v1/models/foo/version/50:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/HELLO:regress", "Malformed request"),
    ("POST", f"/v1/models/foo/versions/{2**64 - 1}:regress", "Failed to convert version"),
    ("POST", "/v1/models/foo/metadata", "Malformed request"),
    ("POST", "/v1/models/foo/label/some_label:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/some_label:regress", "Malformed request"),
])
def test_unsupported_api_calls(tfs, method, path, words):
    status, answer = call(tfs, method, path, b"" if method == "POST" else None)
    assert status == 400
    assert words in answer["error"]


@pytest.mark.parametrize("path", ["/v1/models/foo:predict", "/v1/models/foo/versions/50:predict",
                                  f"{M}99:predict", f"{M}/versions/99:predict"])
def test_predict_unknown_model_or_version_is_not_found(tfs, path):
    assert post(tfs, path, {"instances": [1]})[0] == 404


@pytest.mark.parametrize("body, words", [
    ("", "JSON Parse error: The document is empty"),
    ("instances = [1, 2]", "JSON Parse error: Invalid value"),
    ('{ "instances": ["x", "y"] }', "not of expected type: float"),
    ('{ "signature_name": 100 }', "'signature_name' key must be a string value."),
])
def test_predict_request_errors(tfs, body, words):
    status, answer = post(tfs, f"{M}:predict", body)
    assert status == 400
    assert words in answer["error"]


def test_nonexistent_version_label(tfs):
    status, answer = post(tfs, f"{M}/labels/Version_Nonexistent:predict", '{ "instances": ["x", "y"] }')
    assert status == 400
    assert "Unrecognized servable version label" in answer["error"]


@pytest.mark.parametrize("path, body, expected", [
    (f"{M}:predict", {"instances": [[1.0, 2.0], [3.0, 4.0]]}, {"predictions": [[2.5, 3.0], [3.5, 4.0]]}),
    # The signature says [-1, 1]; TF Serving feeds [2] anyway and the graph accepts it.
    (f"{M}/versions/123:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
    (f"{M}/labels/{LABEL}:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
    (f"{M}/versions/123:predict", {"signature_name": "serving_default", "instances": [3.0, 4.0]},
     {"predictions": [3.5, 4.0]}),
    (f"{M}/versions/123:predict", {"signature_name": "serving_default", "inputs": [3.0, 4.0]},
     {"outputs": [3.5, 4.0]}),
    (f"{M}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}, {"results": [42]}),
    (f"{M}/versions/123:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
     {"results": [42]}),
    (f"{M}/labels/{LABEL}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
     {"results": [42]}),
    (f"{M}:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]},
     {"results": [[["", 12]]]}),
    (f"{M}/labels/{LABEL}:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 10.0}]},
     {"results": [[["", 7]]]}),
    # tensorflow_model_server_test.py's REST tests
    ("/v1/models/default:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]},
     {"results": [[["", 3.0]]]}),
    ("/v1/models/default:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]},
     {"results": [3.0]}),
    ("/v1/models/default:predict", {"instances": [[1.0], [2.0], [5.0]]}, {"predictions": [[2.5], [3.0], [4.5]]}),
    ("/v1/models/default:predict", {"inputs": [[1.0], [2.0], [5.0]]}, {"outputs": [[2.5], [3.0], [4.5]]}),
    # context features are merged into every example (api_rest.md)
    ("/v1/models/default:regress", {"signature_name": "regress_x_to_y", "context": {"x": 4.0},
                                    "examples": [{}, {"x": 2.0}]}, {"results": [4.0, 3.0]}),
    # half_plus_three's signature is keyed by its method name, over a [] declared input
    ("/v1/models/half_plus_three:regress", {"signature_name": "tensorflow/serving/regress",
                                            "examples": [{"x": 2.0}]}, {"results": [4.0]}),
    ("/v1/models/half_plus_three:predict", {"instances": [2.0]}, {"predictions": [4.0]}),
    # TF2: predict method names answer classify and regress (no method-name check by default)
    ("/v1/models/tf2:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]},
     {"results": [[["", 3.0]]]}),
    ("/v1/models/tf2:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]},
     {"results": [3.0]}),
    ("/v1/models/tf2:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
])
def test_rest_answers(tfs, path, body, expected):
    assert post(tfs, path, body) == (200, expected)


def test_get_status(tfs):
    expected = {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    for path in [M, f"{M}/versions/123", f"{M}/labels/{LABEL}", "/v1/models/default"]:
        assert call(tfs, "GET", path) == (200, expected)


def test_get_model_metadata_matches_tf_servings_file(tfs):
    status, answer = call(tfs, "GET", "/v1/models/default/metadata")
    assert status == 200
    assert answer == json.loads((TESTDATA / "half_plus_two_model_metadata.json").read_text())


def test_version_directory_name_is_parsed_not_copied(tfs):
    # 00000123/ is version 123; the junk directories next to it did not stop the poller.
    assert call(tfs, "GET", "/v1/models/default/versions/123")[0] == 200
    assert "model poll failed" not in tfs.log()


def test_truncated_and_mislabelled_bodies_are_client_errors(tfs):
    def raw(request: bytes, hang_up: bool = False) -> bytes:
        with socket.create_connection(("127.0.0.1", tfs.rest_port), timeout=60) as connection:
            connection.sendall(request)
            if hang_up:
                return b""
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
                    length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")]
                    if length and len(body) >= length[0]:
                        break
            return b"".join(chunks)

    path = b"POST /v1/models/default:predict HTTP/1.1\r\nHost: x\r\n"
    body = json.dumps({"instances": [2.0]}).encode()
    # Content-Length shorter than the body: a truncated JSON document, then bytes that are no request.
    answer = raw(path + b"Content-Length: 10\r\n\r\n" + body)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    answer = raw(path + b"Content-Length: 10\r\n\r\n" + body[:10])
    assert answer.startswith(b"HTTP/1.1 400") and b"JSON Parse error" in answer, answer
    # Content-Length longer than the body, then the client gives up: no answer owed, server unharmed.
    raw(path + b"Content-Length: 1000\r\n\r\n" + body, hang_up=True)
    # A body over the limit is refused.
    huge = b'{"instances": [' + b"1.0," * (3 * 2**20) + b"1.0]}"  # > the 10 MiB default limit
    answer = raw(path + f"Content-Length: {len(huge)}\r\n\r\n".encode() + huge)
    assert answer.startswith(b"HTTP/1.1 413")
    # A Content-Length that is not a number: refused (4xx) or the connection dropped, never a 5xx.
    answer = raw(path + b"Content-Length: ten\r\n\r\n" + body)
    assert answer == b"" or answer.split(b" ")[1].startswith(b"4"), answer
    assert post(tfs, "/v1/models/default:predict", {"instances": [2.0]}) == (200, {"predictions": [3.0]})


# -- JSON: json_tensor.cc / json_tensor_test.cc ----------------------------------------------

def test_float32_overflow_is_infinity_and_non_finite_tokens_round_trip(tfs):
    status, text = call(tfs, "POST", "/v1/models/default:predict",
                        '{"instances": [1e39, -1e39, NaN, Infinity, -Infinity, 1.0]}')
    assert status == 200
    assert json.loads(json.dumps(text)) == text  # parsed by json.loads, which reads NaN/Infinity
    assert [str(v) for v in text["predictions"]] == ["inf", "-inf", "nan", "inf", "-inf", "2.5"]


def test_numbers_use_tf_servings_digits(tfs):
    # 1/3 as float32 is written with nine digits, as TF Serving's WriteDecimal does.
    status, answer = post(tfs, "/v1/models/default:predict", '{"instances": [0.6666667]}')
    assert status == 200
    value = np.float32(0.6666667) * np.float32(0.5) + np.float32(2)
    six = "%g" % value
    expected = float(six if np.float32(six) == value else "%.9g" % value)
    assert answer == {"predictions": [expected]}


def test_deep_nesting_in_an_unused_key_is_parsed(tfs):
    deep = "[" * 5000 + "]" * 5000
    assert post(tfs, "/v1/models/default:predict", f'{{"unused": {deep}, "instances": [1.0]}}') == \
        (200, {"predictions": [2.5]})


@pytest.mark.parametrize("depth", [33, 5000])
def test_deep_value_in_a_used_key_is_a_client_error(tfs, depth):
    body = '{"instances": ' + "[" * depth + "1.0" + "]" * depth + "}"
    status, answer = post(tfs, "/v1/models/default:predict", body)
    assert status == 400, answer
    assert call(tfs, "GET", "/v1/models/default")[0] == 200


def test_number_too_big_for_a_double(tfs):
    status, answer = post(tfs, "/v1/models/default:predict", '{"instances": [1e400]}')
    assert (status, answer) == (400, {"error": "JSON Parse error: Number too big to be stored in double. "
                                               "at offset: 15"})


def test_uint64_feature_is_refused_like_tf_serving(tfs):
    status, answer = post(tfs, "/v1/models/default:regress",
                          {"signature_name": "regress_x_to_y", "examples": [{"x": 2**63}]})
    assert (status, answer) == (400, {"error": "Feature: x has uint64_t element. Only int64_t is supported."})


def test_missing_named_input(tfs):
    status, answer = post(tfs, "/v1/models/default:predict", {"inputs": {"y": [1.0]}})
    assert (status, answer) == (400, {"error": "Missing named input: x in 'inputs' object."})


# -- gRPC: tensorflow_model_server_test.py -------------------------------------------------

def test_grpc_model_status(model_stub):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    result = model_stub.GetModelStatus(request, timeout=30)
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == 123
    assert result.model_version_status[0].status.error_code == 0


def test_grpc_model_metadata(stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    result = stub.GetModelMetadata(request, timeout=30)
    assert result.model_spec.name == "default"
    assert result.model_spec.version.value == 123
    assert list(result.metadata) == ["signature_def"]
    signatures = get_model_metadata_pb2.SignatureDefMap()
    result.metadata["signature_def"].Unpack(signatures)
    assert signatures.signature_def["serving_default"].inputs["x"].name == "x:0"


@pytest.mark.parametrize("model", ["default", "tf2"])
def test_grpc_classify(stub, model):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    result = stub.Classify(request, timeout=30)
    assert len(result.result.classifications) == 1
    assert [c.score for c in result.result.classifications[0].classes] == [3.0]
    assert (result.model_spec.name, result.model_spec.signature_name, result.model_spec.version.value) == \
        (model, "classify_x_to_y", 123)


@pytest.mark.parametrize("model", ["default", "tf2"])
def test_grpc_regress(stub, model):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    result = stub.Regress(request, timeout=30)
    assert [r.value for r in result.result.regressions] == [3.0]
    assert result.model_spec.version.value == 123


@pytest.mark.parametrize("model", ["default", "tf2"])
def test_grpc_multi_inference(stub, model):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in [("regress_x_to_y", "tensorflow/serving/regress"),
                              ("classify_x_to_y", "tensorflow/serving/classify")]:
        task = request.tasks.add()
        task.model_spec.name = model
        task.model_spec.signature_name = signature
        task.method_name = method
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    result = stub.MultiInference(request, timeout=30)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for task, entry in zip(request.tasks, result.results):
        assert entry.model_spec.signature_name == task.model_spec.signature_name
        assert entry.model_spec.version.value == 123


def test_grpc_multi_inference_refuses_mixed_models(stub):
    request = inference_pb2.MultiInferenceRequest()
    for model in ["default", "tf2"]:
        task = request.tasks.add()
        task.model_spec.name = model
        task.model_spec.signature_name = "regress_x_to_y"
        task.method_name = "tensorflow/serving/regress"
    request.input.example_list.examples.add()
    with pytest.raises(grpc.RpcError) as error:
        stub.MultiInference(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == "All ModelSpecs in a MultiInferenceRequest must access the same model name."


def _predict(stub, model: str, specify_output: bool, values=(2.0,)):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(list(values), shape=[len(values), 1], dtype=tf.float32))
    if specify_output:
        request.output_filter.append("y")
    return stub.Predict(request, timeout=30)


@pytest.mark.parametrize("model, expected", [("default", 3.0), ("half_plus_three", 4.0), ("tf2", 3.0)])
@pytest.mark.parametrize("specify_output", [True, False])
def test_grpc_predict(stub, model, expected, specify_output):
    result = _predict(stub, model, specify_output)
    assert list(result.outputs) == ["y"]
    assert tf.make_ndarray(result.outputs["y"]).reshape(-1).tolist() == [expected]
    assert result.model_spec.version.value == 123


def test_grpc_predict_unknown_output_filter(stub):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[2.0]], dtype=tf.float32))
    request.output_filter.append("nope")
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output tensor alias not found in signature: nope" in error.value.details()


# -- monitoring ------------------------------------------------------------------------------

def test_prometheus_endpoint_has_tf_servings_metrics(tfs, stub):
    _predict(stub, "default", True)
    post(tfs, "/v1/models/default:predict", {"instances": [1.0]})
    status, text = call(tfs, "GET", "/monitoring/prometheus/metrics")
    assert status == 200
    assert "# TYPE" in text
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert ':tensorflow:serving:request_count{model_name="default",status="OK"}' in text
    assert ':tensorflow:serving:request_latency_bucket{API="predict",entrypoint="REST"' in text
    assert ':tensorflow:serving:request_latency_bucket{API="Predict",entrypoint="GRPC"' in text
