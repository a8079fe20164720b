"""gRPC PredictionService and ModelService against the real server, with the official stubs."""
from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, prediction_service_pb2_grpc,
                                     regression_pb2)

from tests.serving.serving_test_support import UNSEEN_CUSTOMER, predict_request, run_in_process

@pytest.fixture(scope="module")
def predictions(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def models(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


def test_predict_matches_the_in_process_call(predictions, keras_model):
    response = predictions.Predict(predict_request("churn", [UNSEEN_CUSTOMER]), timeout=30)
    assert response.model_spec.name == "churn"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
    expected = run_in_process(keras_model, [UNSEEN_CUSTOMER])
    assert set(outputs) == set(expected)
    for name in expected:
        assert np.array_equal(outputs[name], expected[name]), name


def test_predict_output_filter_and_label(predictions):
    request = predict_request("multi", [UNSEEN_CUSTOMER], version_label="canary")
    request.output_filter.append("probability")
    response = predictions.Predict(request, timeout=30)
    assert list(response.outputs) == ["probability"]
    assert response.model_spec.version.value == 2


def test_classify_and_regress(predictions):
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "estimator"
    classify.input.example_list.examples.add().features.feature["x"].float_list.value.append(1.0)
    classes = predictions.Classify(classify, timeout=30).result.classifications[0].classes
    assert [c.label for c in classes] == ["neg", "pos"]
    assert classes[1].score == pytest.approx(1 / (1 + np.exp(-3.0)), rel=1e-6)

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "estimator"
    regress.model_spec.signature_name = "regression"
    context = regress.input.example_list_with_context
    context.context.features.feature["x"].float_list.value.append(2.0)
    context.examples.add()
    response = predictions.Regress(regress, timeout=30)
    assert [r.value for r in response.result.regressions] == [5.0]
    assert response.model_spec.signature_name == "regression"


def test_metadata_packs_the_signature_def_map(predictions):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "estimator"
    request.metadata_field.append("signature_def")
    response = predictions.GetModelMetadata(request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    assert signatures.signature_def["regression"].method_name == "tensorflow/serving/regress"
    assert signatures.signature_def["serving_default"].method_name == "tensorflow/serving/classify"


def test_model_status(models):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "multi"
    response = models.GetModelStatus(request, timeout=30)
    assert sorted(s.version for s in response.model_version_status) == [1, 2]
    assert {s.state for s in response.model_version_status} == {get_model_status_pb2.ModelVersionStatus.AVAILABLE}


@pytest.mark.parametrize("mutate,code,words", [
    (lambda r: setattr(r.model_spec, "name", "nosuchmodel"), grpc.StatusCode.NOT_FOUND, "Servable not found"),
    (lambda r: r.model_spec.version.__setattr__("value", 42), grpc.StatusCode.NOT_FOUND, "Specific(churn, 42)"),
    (lambda r: setattr(r.model_spec, "signature_name", "nope"), grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "nope" not found'),
    (lambda r: r.inputs.pop("Balance"), grpc.StatusCode.INVALID_ARGUMENT, "Missing but required: {Balance}"),
    (lambda r: r.inputs["Balance"].CopyFrom(tf.make_tensor_proto([1], dtype=tf.int64)),
     grpc.StatusCode.INVALID_ARGUMENT, "Expects arg[Balance] to be float but int64 is provided"),
    (lambda r: r.output_filter.append("nope"), grpc.StatusCode.INVALID_ARGUMENT, "output tensor alias not found"),
])
def test_predict_errors_carry_tf_serving_status_codes(predictions, mutate, code, words):
    request = predict_request("churn", [UNSEEN_CUSTOMER])
    mutate(request)
    with pytest.raises(grpc.RpcError) as error:
        predictions.Predict(request, timeout=30)
    assert error.value.code() == code
    assert words in error.value.details()
    predictions.Predict(predict_request("churn", [UNSEEN_CUSTOMER]), timeout=30)  # still serving


def test_classify_on_a_predict_only_model_is_invalid_argument(predictions):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "churn"
    request.input.example_list.examples.add()
    with pytest.raises(grpc.RpcError) as error:
        predictions.Classify(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == "Expected one input Tensor."


def test_reload_config_adds_a_model_and_keeps_the_others(server, exports, predictions, models):
    from google.protobuf import text_format
    from tensorflow_serving.apis import model_management_pb2
    from tensorflow_serving.config import model_server_config_pb2

    config_path = next(arg.split("=", 1)[1] for arg in server.process.args if arg.startswith("--model_config_file="))
    config = text_format.Parse(open(config_path).read(), model_server_config_pb2.ModelServerConfig())
    added = config.model_config_list.config.add()
    added.name, added.base_path = "reloaded", str(exports.models / "estimator")
    request = model_management_pb2.ReloadConfigRequest(config=config)
    models.HandleReloadConfigRequest(request, timeout=60)
    with server.rest() as client:
        assert client.model_status("reloaded")["model_version_status"][0]["state"] == "AVAILABLE"
        assert client.predict("churn", instances=[UNSEEN_CUSTOMER])["predictions"]
    predictions.Predict(predict_request("churn", [UNSEEN_CUSTOMER]), timeout=30)
