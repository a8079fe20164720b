"""Logged requests back into rows: PredictionLog TFRecords as TF Serving's request logger writes them."""
from __future__ import annotations

import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from pipeline.serving_logs import log_files, logged_rows


def predict_log(model: str, columns: dict) -> prediction_log_pb2.PredictionLog:
    log = prediction_log_pb2.PredictionLog()
    log.log_metadata.model_spec.name = model
    for name, values in columns.items():
        log.predict_log.request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
    return log


def classify_log(rows: list[dict], context: dict) -> prediction_log_pb2.PredictionLog:
    log = prediction_log_pb2.PredictionLog()
    log.log_metadata.model_spec.name = "churn"
    with_context = log.classify_log.request.input.example_list_with_context
    for target, values in [(with_context.context, context)] + [(with_context.examples.add(), row) for row in rows]:
        for name, value in values.items():
            feature = target.features.feature[name]
            if isinstance(value, str):
                feature.bytes_list.value.append(value.encode())
            elif isinstance(value, int):
                feature.int64_list.value.append(value)
            else:
                feature.float_list.value.append(value)
    return log


def write(path, logs) -> None:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())


def test_predict_and_classify_logs_become_rows(tmp_path):
    write(tmp_path / "a.tfrecord", [
        predict_log("churn", {"Age": [22, 40], "Geography": [b"France", b"Spain"], "image": [[1, 2], [3, 4]]}),
        predict_log("other", {"Age": [99]}),
        classify_log([{"Age": 31}, {"Age": 57}], {"Geography": "Germany", "Balance": 1.5}),
    ])
    rows = logged_rows(log_files(tmp_path), "churn")
    assert rows == [{"Age": 22, "Geography": "France"}, {"Age": 40, "Geography": "Spain"},
                    {"Geography": "Germany", "Balance": 1.5, "Age": 31},
                    {"Geography": "Germany", "Balance": 1.5, "Age": 57}]


def test_a_file_being_written_is_read_up_to_its_last_whole_record(tmp_path):
    path = tmp_path / "live.tfrecord"
    write(path, [predict_log("churn", {"Age": [30]}), predict_log("churn", {"Age": [31]})])
    path.write_bytes(path.read_bytes()[:-5])  # the second record is half written
    assert logged_rows(log_files(tmp_path), "churn") == [{"Age": 30}]


def test_a_file_that_is_not_a_request_log_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("hello, this is not a TFRecord file at all" * 10)
    with pytest.raises(ValueError, match="notes.txt"):
        logged_rows(log_files(tmp_path))


def test_missing_log_folder_says_what_to_give(tmp_path):
    with pytest.raises(FileNotFoundError, match="logging_config"):
        log_files(tmp_path / "nowhere")
