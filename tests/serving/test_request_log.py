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
    """The writer process encodes without the proto classes: every number it uses is checked here."""
    from google.protobuf import wrappers_pb2
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import input_pb2, logging_pb2, model_pb2
    from tensorflow_serving.config import logging_config_pb2

    from serving import prediction_log_wire as wire

    modules = [prediction_log_pb2, predict_pb2, classification_pb2, regression_pb2, input_pb2, model_pb2,
               logging_pb2, logging_config_pb2, tensor_pb2, tensor_shape_pb2, wrappers_pb2]
    classes = {name: getattr(module, name) for module in modules for name in dir(module)
               if hasattr(getattr(module, name), "DESCRIPTOR")}
    classes["Dim"] = tensor_shape_pb2.TensorShapeProto.Dim
    for message, fields in wire.FIELDS.items():
        descriptor = classes[message].DESCRIPTOR
        assert {name: descriptor.fields_by_name[name].number for name in fields} == fields, message
    for dtype, enum in wire.DATA_TYPES.items():
        assert tf.dtypes.as_dtype(dtype).as_datatype_enum == enum, dtype
    assert wire.DT_STRING == types_pb2.DT_STRING


def shipped(calls: list[tuple]) -> list[prediction_log_pb2.PredictionLog]:
    """Calls as the server queues them, through the shipping format and the writer's encoding."""
    import pickle

    from serving.prediction_log_writer import records
    from serving.request_log import pack

    groups = pickle.loads(pickle.dumps(pack(calls)))
    return [prediction_log_pb2.PredictionLog.FromString(data) for group in groups for _, data in records(group)]


def test_stacked_predicts_decode_with_tf_serving_protos_call_by_call():
    """Calls of one signature travel stacked; each comes back as its own PredictLog with its own arrays."""
    def call(rows: int, seed: int) -> tuple[dict, dict]:
        rng = np.random.default_rng(seed)
        inputs = {"image": rng.random((rows, 3, 4), dtype=np.float32),
                  "ids": rng.integers(-2**40, 2**40, rows, dtype=np.int64),
                  "text": np.array([f"caf\u00e9 {seed}" if i % 2 else b"\x00\xff" for i in range(rows)], dtype=object),
                  "flags": rng.random((rows, 1)) > 0.5}
        outputs = {"scores": np.array([[0.25, np.inf]] * rows, dtype=np.float32) * (seed + 1),
                   "labels": np.array([[b"a", b""]] * rows, dtype=object)}
        return inputs, outputs

    meta = ("m", 7, "", 0.5, "/unused")
    calls = [("predict", meta, ("scores", "labels"), *call(rows, seed), 1_700_000_000.9 + seed)
             for seed, rows in enumerate([2, 1, 3])]
    scalar = {"image": np.float32(1.5), "ids": np.array([1, 2]), "text": np.array(["x"], dtype=object),
              "flags": np.array([[True]])}
    calls.append(("predict", meta, ("scores", "labels"), scalar, call(1, 9)[1], 1_700_000_100.0))
    entries = shipped(calls)
    assert len(entries) == len(calls)
    for entry, (_, _, output_filter, inputs, outputs, timestamp) in zip(entries, calls):
        request, response = entry.predict_log.request, entry.predict_log.response
        assert (request.model_spec.name, request.model_spec.version.value, request.model_spec.signature_name) == \
            ("m", 7, "")
        assert response.model_spec.signature_name == "serving_default"
        assert tuple(request.output_filter) == output_filter
        for name, value in inputs.items():
            value = np.asarray(value)
            logged = tf.make_ndarray(request.inputs[name])
            expected = np.array([v.encode() if isinstance(v, str) else v for v in value.flat],
                                dtype=value.dtype).reshape(value.shape) if value.dtype == object else value
            assert logged.shape == value.shape and logged.tolist() == expected.tolist(), name
        for name, value in outputs.items():
            assert tf.make_ndarray(response.outputs[name]).tolist() == value.tolist(), name
        metadata = entry.log_metadata
        assert (metadata.model_spec.name, metadata.model_spec.signature_name) == ("m", "serving_default")
        assert (metadata.sampling_config.sampling_rate, metadata.timestamp_secs) == (0.5, int(timestamp))
        assert list(metadata.saved_model_tags) == ["serve"]


def test_classify_and_regress_calls_decode_with_tf_serving_protos():
    example = tf.train.Example()
    example.features.feature["x"].float_list.value.append(2.5)
    meta = ("e", 3, "classification", 1.0, "/unused")
    calls = [("classify", meta, (), [example.SerializeToString()] * 2, [[("yes", 0.75), ("no", 0.25)], [("", 0.0)]],
              10.0),
             ("regress", meta[:2] + ("regression",) + meta[3:], (), [example.SerializeToString()], [0.5], 11.0)]
    classify, regress = shipped(calls)
    assert classify.classify_log.request.input.example_list.examples[1] == example
    classes = [[(c.label, c.score) for c in result.classes]
               for result in classify.classify_log.response.result.classifications]
    assert classes == [[("yes", 0.75), ("no", 0.25)], [("", 0.0)]]
    assert classify.classify_log.response.model_spec.signature_name == "classification"
    assert [r.value for r in regress.regress_log.response.result.regressions] == [0.5]
    assert regress.regress_log.request.model_spec.signature_name == "regression"
    assert (regress.log_metadata.timestamp_secs, regress.log_metadata.model_spec.version.value) == (11, 3)


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path, caplog):
    """Offers far faster than the writer can write: the caller never waits, every record is written or counted."""
    from types import SimpleNamespace

    from serving.config import ModelEntry
    from serving.request_log import RequestLogger

    entry = ModelEntry("m", "/unused", logging=RequestLogging(1.0, str(tmp_path / "requests")))
    logger = RequestLogger(lambda: [entry], max_queue=1)
    servable = SimpleNamespace(name="m", version=1)
    rows = {"x": np.arange(64, dtype=np.float32)}
    offered = 5000
    for _ in range(offered):
        logger.predict(servable, "", rows, [], rows)
    dropped = logger.dropped
    logger.close()
    written = sum(1 for path in tmp_path.glob("requests.*.tfrecord") for _ in tf.data.TFRecordDataset(str(path)))
    assert dropped > 0
    assert written + dropped == offered
    assert "records dropped so far" in caplog.text


@pytest.mark.xfail(strict=False, reason="known gap, cause not found: under heavy CPU load one record in about "
                                        "ten runs is neither written nor counted after the writer is killed")
def test_a_killed_writer_process_is_replaced_and_serving_goes_on(tmp_path, caplog):
    """The writer process dies: the next records are counted as dropped, a new writer takes the rest."""
    import os
    import signal
    import time
    from types import SimpleNamespace

    from serving.config import ModelEntry
    from serving.request_log import RequestLogger

    entry = ModelEntry("m", "/unused", logging=RequestLogging(1.0, str(tmp_path / "requests")))
    logger = RequestLogger(lambda: [entry])
    servable = SimpleNamespace(name="m", version=1)
    rows = {"x": np.arange(4, dtype=np.float32)}

    def written() -> int:
        try:
            return sum(1 for path in tmp_path.glob("requests.*.tfrecord") for _ in tf.data.TFRecordDataset(str(path)))
        except tf.errors.DataLossError:  # a record half flushed: not there yet
            return -1

    def wait_for(condition, offer: bool) -> int:
        offered, deadline = 0, time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, "the logger did not get there within 60 s"
            if offer:
                logger.predict(servable, "", rows, [], rows)
                offered += 1
            time.sleep(0.01)
        return offered

    offered = wait_for(lambda: logger.writer_pid is not None, offer=True)
    wait_for(lambda: written() == offered, offer=False)  # nothing in flight when it dies
    first = logger.writer_pid
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: open(f"/proc/{first}/stat").read().rsplit(")", 1)[1].split()[0] == "Z", offer=False)
    offered += wait_for(lambda: logger.writer_pid not in (None, first), offer=True)
    for _ in range(10):
        logger.predict(servable, "", rows, [], rows)
    logger.close()
    assert "writer process exited" in caplog.text
    assert logger.dropped > 0
    assert written() + logger.dropped == offered + 10
