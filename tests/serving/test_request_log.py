"""Request logging (TF Serving's logging_config) through a real server process, over REST and gRPC.

The server logs `churn` and `estimator` at sampling rate 1.0 and `quiet` at 0.0.
After it shuts down, the TFRecord files are read back with tensorflow-serving-api's
PredictionLog proto and compared with what was sent and what was answered.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, predict_pb2, prediction_log_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from serving.config import RequestLogging, parse_model_config
from serving.demo import stop_process
from tests.serving.serving_test_support import (UNSEEN_CUSTOMER, logged_models_config, predict_request,
                                                 start_server)

OTHER_CUSTOMER = {"CreditScore": 720, "Geography": "Spain", "Balance": 120000.5}


@pytest.fixture(scope="module")
def logged_run(exports, tmp_path_factory):
    """Serve, send a known set of requests, stop the server; yield (answers, log records by model)."""
    root = tmp_path_factory.mktemp("request_log")
    logs = root / "logs"
    base = exports.models
    config = root / "models.config"
    config.write_text(logged_models_config([("churn", base / "churn", logs / "churn" / "requests", 1.0),
                                            ("estimator", base / "estimator", logs / "estimator" / "requests", 1.0),
                                            ("quiet", base / "churn", logs / "quiet" / "requests", 0.0)]))
    server = start_server([f"--model_config_file={config}", "--enable_batching",
                           "--file_system_poll_wait_seconds=0"],
                          root / "server.log", wait_for=["churn", "estimator", "quiet"])
    answers = {}
    try:
        with server.rest() as rest:
            answers["rest_predict"] = rest.predict("churn", instances=[UNSEEN_CUSTOMER, OTHER_CUSTOMER])
            answers["rest_classify"] = rest.classify("estimator", examples=[{"x": 1.0}, {"x": -2.5}])
            answers["rest_regress"] = rest.regress("estimator", examples=[{"x": 3.0}], signature_name="regression")
            for _ in range(5):
                rest.predict("quiet", instances=[UNSEEN_CUSTOMER])
        with server.channel() as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            answers["grpc_predict"] = stub.Predict(predict_request("churn", [OTHER_CUSTOMER]), timeout=30)
            classify = classification_pb2.ClassificationRequest()
            classify.model_spec.name = "estimator"
            classify.input.example_list.examples.add().features.feature["x"].float_list.value.append(0.5)
            answers["grpc_classify"] = stub.Classify(classify, timeout=30)
            stub.Predict(predict_request("quiet", [OTHER_CUSTOMER]), timeout=30)
    finally:
        stop_process(server.process)  # SIGTERM: the logger writes its queue and closes the files
    assert server.process.returncode == 0, server.log()
    yield answers, logs, server.log()


def read_records(folder: Path) -> list[prediction_log_pb2.PredictionLog]:
    records = []
    for path in sorted(folder.glob("requests.*.tfrecord")):
        for data in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            records.append(prediction_log_pb2.PredictionLog.FromString(data))
    return records


def test_rest_and_grpc_predicts_round_trip_through_the_protos(logged_run):
    answers, logs, _ = logged_run
    records = read_records(logs / "churn")
    assert [record.WhichOneof("log_type") for record in records] == ["predict_log", "predict_log"]
    rest_log, grpc_log = (record.predict_log for record in records)

    sent = {name: [row[name] for row in (UNSEEN_CUSTOMER, OTHER_CUSTOMER)] for name in UNSEEN_CUSTOMER}
    logged = {name: tf.make_ndarray(tensor) for name, tensor in rest_log.request.inputs.items()}
    assert logged.keys() == sent.keys()
    assert logged["CreditScore"].tolist() == sent["CreditScore"]
    assert logged["Geography"].tolist() == [value.encode() for value in sent["Geography"]]
    assert logged["Balance"].tolist() == np.float32(sent["Balance"]).tolist()
    answered = answers["rest_predict"]["predictions"]
    probability = tf.make_ndarray(rest_log.response.outputs["probability"])
    assert probability.reshape(-1).tolist() == [np.float32(row["probability"]) for row in answered]
    assert rest_log.response.model_spec.name == "churn"
    assert rest_log.response.model_spec.version.value == 1
    assert rest_log.response.model_spec.signature_name == "serving_default"

    grpc_request = predict_request("churn", [OTHER_CUSTOMER])
    for name, tensor in grpc_log.request.inputs.items():
        assert tf.make_ndarray(tensor).tolist() == tf.make_ndarray(grpc_request.inputs[name]).tolist()
    grpc_answer: predict_pb2.PredictResponse = answers["grpc_predict"]
    assert set(grpc_log.response.outputs) == set(grpc_answer.outputs)
    for name, tensor in grpc_answer.outputs.items():
        np.testing.assert_array_equal(tf.make_ndarray(grpc_log.response.outputs[name]), tf.make_ndarray(tensor))


def test_log_metadata_names_the_model_and_the_sampling(logged_run):
    _, logs, _ = logged_run
    for record in read_records(logs / "churn"):
        metadata = record.log_metadata
        assert metadata.model_spec.name == "churn"
        assert metadata.model_spec.version.value == 1
        assert metadata.sampling_config.sampling_rate == 1.0
        assert list(metadata.saved_model_tags) == ["serve"]
        assert metadata.timestamp_secs > 0


def test_classify_and_regress_are_logged_with_their_examples_and_results(logged_run):
    answers, logs, _ = logged_run
    records = read_records(logs / "estimator")
    assert [record.WhichOneof("log_type") for record in records] == ["classify_log", "regress_log", "classify_log"]
    rest_classify, rest_regress, grpc_classify = records

    examples = rest_classify.classify_log.request.input.example_list.examples
    assert [example.features.feature["x"].float_list.value[0] for example in examples] == [1.0, -2.5]
    logged = [[(c.label, c.score) for c in item.classes]
              for item in rest_classify.classify_log.response.result.classifications]
    answered = answers["rest_classify"]["results"]
    assert [[label for label, _ in item] for item in logged] == [[label for label, _ in item] for item in answered]
    assert np.float32([[s for _, s in item] for item in logged]).tolist() == \
        np.float32([[s for _, s in item] for item in answered]).tolist()

    request = rest_regress.regress_log.request
    assert request.model_spec.signature_name == "regression"
    assert request.input.example_list.examples[0].features.feature["x"].float_list.value[0] == 3.0
    assert [r.value for r in rest_regress.regress_log.response.result.regressions] == \
        pytest.approx(answers["rest_regress"]["results"], rel=1e-6)

    assert grpc_classify.classify_log.response.result == answers["grpc_classify"].result


def test_sampling_rate_zero_writes_nothing(logged_run):
    _, logs, _ = logged_run
    assert not (logs / "quiet").exists() or not any((logs / "quiet").iterdir())


def test_logging_config_is_read_from_the_model_config():
    entries = parse_model_config("""
        model_config_list { config {
          name: "m" base_path: "/models/m"
          logging_config { log_collector_config { type: "" filename_prefix: "/logs/m" }
                           sampling_config { sampling_rate: 0.25 } }
        } }""")
    assert entries[0].logging == RequestLogging(0.25, "/logs/m")


@pytest.mark.parametrize("logging_config, words", [
    ('log_collector_config { filename_prefix: "/l" } sampling_config { sampling_rate: 1.5 }',
     "Invalid sampling rate: 1.5"),
    ("sampling_config { sampling_rate: 0.5 }", "filename_prefix"),
])
def test_a_bad_logging_config_is_refused(logging_config, words):
    with pytest.raises(ValueError, match=words):
        parse_model_config(f'model_config_list {{ config {{ name: "m" base_path: "/m" '
                           f"logging_config {{ {logging_config} }} }} }}")


def test_wire_field_numbers_and_data_types_are_the_protos_own():
    """The writer process encodes without the proto classes, and the JSON codec reads DataTypes without
    TensorFlow: every number they use is checked here."""
    from google.protobuf import wrappers_pb2
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import input_pb2, logging_pb2, model_pb2
    from tensorflow_serving.config import logging_config_pb2

    from serving import data_types
    from serving import prediction_log_wire as wire

    modules = [prediction_log_pb2, predict_pb2, classification_pb2, regression_pb2, input_pb2, model_pb2,
               logging_pb2, logging_config_pb2, tensor_pb2, tensor_shape_pb2, wrappers_pb2]
    classes = {name: getattr(module, name) for module in modules for name in dir(module)
               if hasattr(getattr(module, name), "DESCRIPTOR")}
    classes["Dim"] = tensor_shape_pb2.TensorShapeProto.Dim
    for message, fields in wire.FIELDS.items():
        descriptor = classes[message].DESCRIPTOR
        assert {name: descriptor.fields_by_name[name].number for name in fields} == fields, message
    for dtype, enum in data_types.FROM_NUMPY.items():
        assert tf.dtypes.as_dtype(dtype).as_datatype_enum == enum, dtype
    for name, enum in types_pb2.DataType.items():
        assert data_types.dtype_name(enum) == name[3:].lower()
        if hasattr(data_types, name):
            assert getattr(data_types, name) == enum, name
    assert set(data_types.NAMES) == set(types_pb2.DataType.values())


def logged(kind: str, meta: tuple, request: bytes, response: bytes, timestamp: float
           ) -> prediction_log_pb2.PredictionLog:
    """One record as the writer process encodes it."""
    from serving import prediction_log_writer as writer

    return prediction_log_pb2.PredictionLog.FromString(
        writer.record(getattr(writer, kind.upper()), meta, request, response, timestamp)[1])


def signature_def(inputs: dict, outputs: dict):
    """A SignatureDef with these input and output dtypes, as a servable hands it out."""
    from tensorflow.core.protobuf import meta_graph_pb2

    signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    for tensors, dtypes in ((signature.inputs, inputs), (signature.outputs, outputs)):
        for name, dtype in dtypes.items():
            tensors[name].CopyFrom(meta_graph_pb2.TensorInfo(name=f"{name}:0", dtype=dtype.as_datatype_enum))
    return signature


REST_INPUTS = {"image": tf.float32, "ids": tf.int64, "text": tf.string, "flags": tf.bool}
REST_OUTPUTS = {"scores": tf.float32, "labels": tf.string, "label_bytes": tf.string, "count": tf.int32}


REST_BODIES = [  # row format, one and two instances; columnar; other shapes: read together where they can be
    {"instances": [{"image": [[0.1, 1e-8], [3.4028234663852886e38, -0.0]], "ids": 2**62, "text": "caf\u00e9",
                    "flags": [True]},
                   {"image": [[1.5, 2.5], [3.5, 4.5]], "ids": -7, "text": {"b64": "AP8="}, "flags": [False]}]},
    {"instances": [{"image": [[0.5, 0.25], [1, 2]], "ids": 3, "text": "x", "flags": [True]}]},
    {"signature_name": "serving_default",
     "inputs": {"image": [[[0.25, 0.5]]], "ids": [1], "text": ["x"], "flags": [[True]]}},
    {"instances": [{"image": [[0.5, 0.25, 9.0]], "ids": 3, "text": "", "flags": [True, False]}]},
    {"instances": [{"image": [[7.0, 8.0], [9.0, 10.0]], "ids": 4, "text": "y", "flags": [False]}] * 3},
]


@pytest.mark.parametrize("bodies", [[REST_BODIES[i] for i in (0, 1, 4)], REST_BODIES], ids=["rows", "mixed"])
def test_rest_predicts_are_logged_as_the_tensors_the_server_read_and_answered(bodies, tmp_path):
    """Through a real logger and writer process: the writer reads the JSON bodies and answers again (a run
    of calls together where their shapes agree), and each call's logged tensors are exactly the ones the
    server read and answered."""
    import json
    import time
    from types import SimpleNamespace

    from serving import json_codec
    from serving.request_log import RequestLogger

    signature = signature_def(REST_INPUTS, REST_OUTPUTS)
    logger = RequestLogger({"m": RequestLogging(1.0, str(tmp_path / "requests"))}.get)
    servable = SimpleNamespace(name="m", version=7, signature_def={"": signature}.__getitem__)
    began, calls = time.time(), []
    for body in bodies:
        raw = json.dumps(body).encode()
        inputs, fmt = json_codec.predict_inputs(json_codec.parse_body(raw), signature.inputs)
        rows = len(inputs["ids"])
        outputs = {"scores": np.array([[0.1, np.float32(1) / 3]] * rows, dtype=np.float32) * rows,
                   "labels": np.array([[b"yes", b"no"]] * rows, dtype=object),
                   "label_bytes": np.array([b"\x00\xff"] * rows, dtype=object),
                   "count": np.arange(rows, dtype=np.int32)}
        logger.rest_predict(servable, "", raw, json_codec.dumps(json_codec.predict_response(outputs, fmt)))
        calls.append((inputs, outputs))
    logger.close()
    entries = read_records(tmp_path)
    assert len(entries) == len(calls) and logger.dropped == 0
    for entry, (inputs, outputs) in zip(entries, calls):
        request, response = entry.predict_log.request, entry.predict_log.response
        assert (request.model_spec.name, request.model_spec.version.value, request.model_spec.signature_name) == \
            ("m", 7, "")
        assert response.model_spec.signature_name == "serving_default"
        for name, value in inputs.items():
            assert tf.as_dtype(request.inputs[name].dtype) == REST_INPUTS[name]
            np.testing.assert_array_equal(tf.make_ndarray(request.inputs[name]), value, err_msg=name)
        for name, value in outputs.items():
            assert tf.as_dtype(response.outputs[name].dtype) == REST_OUTPUTS[name]
            np.testing.assert_array_equal(tf.make_ndarray(response.outputs[name]), value, err_msg=name)
        metadata = entry.log_metadata
        assert (metadata.model_spec.name, metadata.model_spec.signature_name) == ("m", "serving_default")
        assert (metadata.sampling_config.sampling_rate, list(metadata.saved_model_tags)) == (1.0, ["serve"])
        assert int(began) <= metadata.timestamp_secs <= time.time()


def test_grpc_calls_are_logged_as_sent_with_the_version_that_answered():
    """The request as the client sent it (here by version label), its model spec naming the version that ran."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.version_label = "m", "stable"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.5, -2.0], dtype=tf.float32))
    request.output_filter.append("y")
    response = predict_pb2.PredictResponse()
    response.outputs["y"].CopyFrom(tf.make_tensor_proto([[3.0], [-4.0]], dtype=tf.float32))
    response.model_spec.name, response.model_spec.signature_name = "m", "serving_default"
    response.model_spec.version.value = 4
    entry = logged("grpc_predict", ("m", 4, "", 1.0, "/unused"), request.SerializeToString(),
                   response.SerializeToString(), 5.0)
    spec = entry.predict_log.request.model_spec
    assert (spec.name, spec.WhichOneof("version_choice"), spec.version.value) == ("m", "version", 4)
    assert entry.predict_log.request.inputs == request.inputs
    assert list(entry.predict_log.request.output_filter) == ["y"]
    assert entry.predict_log.response == response


def test_rest_classify_and_regress_calls_decode_with_tf_serving_protos():
    import pickle

    example = tf.train.Example()
    example.features.feature["x"].float_list.value.append(2.5)
    meta = ("e", 3, "classification", 1.0, "/unused")
    classify = logged("rest_classify", meta, pickle.dumps(([example.SerializeToString()] * 2,
                                                           [[("yes", 0.75), ("no", 0.25)], [("", 0.0)]])), b"", 10.0)
    regress = logged("rest_regress", meta[:2] + ("regression",) + meta[3:],
                     pickle.dumps(([example.SerializeToString()], [0.5])), b"", 11.0)
    assert classify.classify_log.request.input.example_list.examples[1] == example
    classes = [[(c.label, c.score) for c in result.classes]
               for result in classify.classify_log.response.result.classifications]
    assert classes == [[("yes", 0.75), ("no", 0.25)], [("", 0.0)]]
    assert classify.classify_log.response.model_spec.signature_name == "classification"
    assert [r.value for r in regress.regress_log.response.result.regressions] == [0.5]
    assert regress.regress_log.request.model_spec.signature_name == "regression"
    assert (regress.log_metadata.timestamp_secs, regress.log_metadata.model_spec.version.value) == (11, 3)


def written_records(folder: Path) -> int:
    """Records in the log files; -1 while a record is only half flushed."""
    try:
        return sum(1 for path in folder.glob("requests.*.tfrecord") for _ in tf.data.TFRecordDataset(str(path)))
    except tf.errors.DataLossError:
        return -1


def unit_logger(folder: Path, **options):
    """A RequestLogger for one model `m` logged at rate 1.0, and a regress call to offer it."""
    from types import SimpleNamespace

    from serving.request_log import RequestLogger

    settings = RequestLogging(1.0, str(folder / "requests"))
    logger = RequestLogger({"m": settings}.get, **options)
    servable = SimpleNamespace(name="m", version=1)
    example = tf.train.Example()
    example.features.feature["x"].float_list.value.extend([0.5] * 16)
    examples = [example.SerializeToString()]
    return logger, lambda: logger.rest_regress(servable, "", examples, [0.25])


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path, caplog):
    """Offers far faster than the writer can write: the caller never waits, every record is written or counted."""
    logger, offer = unit_logger(tmp_path, max_queue_bytes=1)
    offered = 5000
    for _ in range(offered):
        offer()
    dropped = logger.dropped
    logger.close()
    assert dropped > 0
    assert written_records(tmp_path) + logger.dropped == offered
    assert "records dropped so far" in caplog.text


def test_a_killed_writer_process_is_replaced_and_its_unwritten_records_are_counted(tmp_path, caplog):
    """The writer dies with records sent to it and not yet written: they are counted as dropped, and a new
    writer takes the next ones. Every offered record is written or counted, exactly once."""
    import os
    import signal
    import time

    logger, offer = unit_logger(tmp_path)

    def wait_for(condition, offering: bool) -> int:
        offered, deadline = 0, time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, "the logger did not get there within 60 s"
            if offering:
                offer()
                offered += 1
            time.sleep(0.01)
        return offered

    offered = wait_for(lambda: logger.writer_pid is not None, offering=True)
    first = logger.writer_pid
    os.kill(first, signal.SIGSTOP)  # it reads nothing more: what is sent now is in flight when it dies
    for _ in range(20):
        offer()
    offered += 20
    time.sleep(0.2)  # the shipper sends them into the stopped writer's pipe
    os.kill(first, signal.SIGKILL)
    offered += wait_for(lambda: logger.writer_pid not in (None, first), offering=True)
    for _ in range(10):
        offer()
    logger.close()
    assert "writer process exited" in caplog.text
    assert logger.dropped >= 20
    assert written_records(tmp_path) + logger.dropped == offered + 10
