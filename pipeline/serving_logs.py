"""Logged serving requests back into rows of raw feature values, for monitoring.

Reads the TFRecord files of `PredictionLog` protos that TF Serving's request
logger writes (and this project's model server writes the same way): predict
requests carry one tensor per input with the batch as the first dimension;
classify, regress and multi-inference requests carry tf.Examples. Each logged
instance becomes one row {feature: value}.
"""
from __future__ import annotations

import datetime as dt
import pathlib
from typing import Any, Iterable, Iterator

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import input_pb2, prediction_log_pb2

Row = dict[str, Any]


def log_files(logs: pathlib.Path, since: dt.datetime | None = None) -> list[pathlib.Path]:
    """The request log files under `logs` (a file or a folder, searched recursively), oldest first.

    `since` keeps files written (modified) at or after that time: a file's
    records are appended while it is open, so its modification time is its newest record's.
    """
    if not logs.exists():
        raise FileNotFoundError(f"no request logs at {logs}; give the folder of the server's logging_config "
                                "(log_collector_config.filename_prefix)")
    files = [logs] if logs.is_file() else sorted(p for p in logs.rglob("*") if p.is_file())
    if since is not None:
        files = [p for p in files if dt.datetime.fromtimestamp(p.stat().st_mtime, dt.timezone.utc) >= since]
    return sorted(files, key=lambda p: (p.stat().st_mtime, str(p)))


def read_logs(files: Iterable[pathlib.Path]) -> Iterator[prediction_log_pb2.PredictionLog]:
    """Every record of `files`; a file the server is still writing ends at its last complete record."""
    for path in files:
        try:
            for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
                log = prediction_log_pb2.PredictionLog()
                log.ParseFromString(record)
                yield log
        except tf.errors.DataLossError as error:
            if "truncated record" not in error.message:
                raise ValueError(f"{path} is not a TFRecord file of PredictionLog protos ({error.message})") from None


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value.item() if isinstance(value, np.generic) else value


def _predict_rows(request) -> list[Row]:
    """Columns of a predict request's inputs, one row per instance; non-scalar inputs (images) are skipped."""
    columns = {name: tf.make_ndarray(tensor) for name, tensor in request.inputs.items()}
    columns = {name: array.reshape(len(array), -1) for name, array in columns.items() if array.ndim >= 1}
    scalar = {name: array[:, 0] for name, array in columns.items() if array.shape[1] == 1}
    sizes = {len(array) for array in scalar.values()}
    if len(sizes) != 1:
        return []
    return [{name: _plain(array[i]) for name, array in scalar.items()} for i in range(sizes.pop())]


def _example_row(example: tf.train.Example, context: tf.train.Example | None = None) -> Row:
    row: Row = {}
    for source in (context, example):
        if source is None:
            continue
        for name, feature in source.features.feature.items():
            kind = feature.WhichOneof("kind")
            values = list(getattr(feature, kind).value) if kind else []
            if len(values) == 1:
                row[name] = _plain(values[0])
    return row


def _input_rows(model_input: input_pb2.Input) -> list[Row]:
    kind = model_input.WhichOneof("kind")
    if kind == "example_list":
        return [_example_row(e) for e in model_input.example_list.examples]
    if kind == "example_list_with_context":
        with_context = model_input.example_list_with_context
        return [_example_row(e, with_context.context) for e in with_context.examples]
    return []


def rows_of(log: prediction_log_pb2.PredictionLog) -> list[Row]:
    """The instances one logged request carried."""
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        return _predict_rows(log.predict_log.request)
    if kind in ("classify_log", "regress_log", "multi_inference_log"):
        return _input_rows(getattr(log, kind).request.input)
    return []


def logged_rows(files: Iterable[pathlib.Path], model_name: str | None = None) -> list[Row]:
    """Every logged instance, optionally only those sent to `model_name`."""
    rows: list[Row] = []
    for log in read_logs(files):
        if model_name and log.log_metadata.model_spec.name not in ("", model_name):
            continue
        rows.extend(rows_of(log))
    return rows
