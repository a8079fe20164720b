"""PredictionLog records in protobuf's wire format, without TensorFlow or the proto classes.

The request-log writer runs in a process of its own (serving/prediction_log_writer.py)
that starts in a fraction of a second because it imports neither TensorFlow nor
tensorflow-serving-api. So the field numbers are written out here (the DataType
values in serving/data_types.py); tests/serving/test_request_log.py checks every
one against the protos' descriptors and parses what this module writes with the real PredictionLog class.
Encoding by hand is also several times faster than building the protos in Python.
"""
from __future__ import annotations

import struct
from functools import lru_cache
from typing import Iterable, Mapping, Sequence

import numpy as np

from serving.data_types import DT_STRING, FROM_NUMPY

# message -> {field: number}, as in tensorflow_serving/apis/*.proto and tensorflow/core/framework/*.proto
FIELDS: dict[str, dict[str, int]] = {
    "PredictionLog": {"log_metadata": 1, "classify_log": 2, "regress_log": 3, "predict_log": 6},
    "PredictLog": {"request": 1, "response": 2},
    "ClassifyLog": {"request": 1, "response": 2},
    "RegressLog": {"request": 1, "response": 2},
    "PredictRequest": {"model_spec": 1, "inputs": 2},
    "PredictResponse": {"outputs": 1, "model_spec": 2},
    "ClassificationRequest": {"model_spec": 1, "input": 2},
    "ClassificationResponse": {"result": 1, "model_spec": 2},
    "ClassificationResult": {"classifications": 1},
    "Classifications": {"classes": 1},
    "Class": {"label": 1, "score": 2},
    "RegressionRequest": {"model_spec": 1, "input": 2},
    "RegressionResponse": {"result": 1, "model_spec": 2},
    "RegressionResult": {"regressions": 1},
    "Regression": {"value": 1},
    "Input": {"example_list": 1},
    "ExampleList": {"examples": 1},
    "ModelSpec": {"name": 1, "version": 2, "signature_name": 3},
    "Int64Value": {"value": 1},
    "LogMetadata": {"model_spec": 1, "sampling_config": 2, "saved_model_tags": 3, "timestamp_secs": 4},
    "SamplingConfig": {"sampling_rate": 1},
    "TensorProto": {"dtype": 1, "tensor_shape": 2, "tensor_content": 4, "string_val": 8},
    "TensorShapeProto": {"dim": 2},
    "Dim": {"size": 1},
}

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
SERVE_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64: two's complement, ten bytes, as protobuf does
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = [_encode_varint(value) for value in range(1 << 14)]


def varint(value: int) -> bytes:
    return _SMALL_VARINTS[value] if 0 <= value < len(_SMALL_VARINTS) else _encode_varint(value)


@lru_cache(maxsize=None)
def _key(message: str, field: str, wire_type: int) -> bytes:
    return varint(FIELDS[message][field] << 3 | wire_type)


def field(message: str, name: str, payload: bytes) -> bytes:
    """A length-delimited field (message, bytes or string) of `message`."""
    return _key(message, name, _BYTES) + varint(len(payload)) + payload


def _int_field(message: str, name: str, value: int) -> bytes:
    return _key(message, name, _VARINT) + varint(value)


def _float_field(message: str, name: str, value: float) -> bytes:
    return _key(message, name, _FIXED32) + struct.pack("<f", value)


@lru_cache(maxsize=1024)
def model_spec(name: str, version: int, signature_name: str) -> bytes:
    return (field("ModelSpec", "name", name.encode())
            + field("ModelSpec", "version", _int_field("Int64Value", "value", version))
            + field("ModelSpec", "signature_name", signature_name.encode()))


@lru_cache(maxsize=1024)
def _metadata_head(name: str, version: int, signature_name: str, sampling_rate: float) -> bytes:
    """LogMetadata without its timestamp (appended per record)."""
    return (field("LogMetadata", "model_spec", model_spec(name, version, signature_name))
            + field("LogMetadata", "sampling_config",
                    _key("SamplingConfig", "sampling_rate", _FIXED64) + struct.pack("<d", sampling_rate))
            + field("LogMetadata", "saved_model_tags", SERVE_TAG.encode()))


def log_metadata(name: str, version: int, signature_name: str, sampling_rate: float, timestamp: float) -> bytes:
    return field("PredictionLog", "log_metadata",
                 _metadata_head(name, version, signature_name or DEFAULT_SIGNATURE, sampling_rate)
                 + _int_field("LogMetadata", "timestamp_secs", int(timestamp)))


@lru_cache(maxsize=4096)
def _tensor_head(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A TensorProto's dtype and shape fields."""
    enum = DT_STRING if dtype.kind in "OSU" else FROM_NUMPY.get(dtype)
    if enum is None:
        raise ValueError(f"no TensorFlow DataType for numpy dtype {dtype}")
    dims = b"".join(field("TensorShapeProto", "dim", _int_field("Dim", "size", size)) for size in shape)
    return _int_field("TensorProto", "dtype", enum) + field("TensorProto", "tensor_shape", dims)


def tensor(value: np.ndarray) -> bytes:
    """`value` as a serialized TensorProto: numbers as tensor_content, strings as string_val."""
    head = _tensor_head(value.dtype, value.shape)
    if value.dtype.kind not in "OSU":
        return head + field("TensorProto", "tensor_content", np.ascontiguousarray(value).tobytes())
    return head + b"".join(field("TensorProto", "string_val",
                                 item.encode() if isinstance(item, str) else bytes(item)) for item in value.flat)


@lru_cache(maxsize=4096)
def _map_key(name: str) -> bytes:
    return varint(1 << 3 | _BYTES) + varint(len(name.encode())) + name.encode()


_MAP_VALUE_KEY = varint(2 << 3 | _BYTES)


def tensor_maps(message: str, field_name: str, columns: Mapping[str, Sequence[np.ndarray]]) -> list[bytes]:
    """Per call, the map<string, TensorProto> field `field_name` of `message` (a request's inputs, a
    response's outputs), from each tensor's arrays in call order.

    Numbers of one dtype and shape (the usual run of one-instance calls) share
    every byte but their contents, so those bytes are encoded once per tensor.
    """
    entries: list[list[bytes]] = []
    for key, values in columns.items():
        first = values[0]
        if first.dtype.kind in "OSU" or any(value.shape != first.shape or value.dtype != first.dtype
                                            for value in values):
            entries.append([field(message, field_name, _map_entry(key, tensor(value))) for value in values])
            continue
        head = (_tensor_head(first.dtype, first.shape) + _key("TensorProto", "tensor_content", _BYTES)
                + varint(first.nbytes))
        prefix = field(message, field_name, _map_entry(key, head + bytes(first.nbytes)))[:-first.nbytes]
        entries.append([prefix + np.ascontiguousarray(value).tobytes() for value in values])
    return [b"".join(call) for call in zip(*entries)]


def _map_entry(key: str, value: bytes) -> bytes:
    return _map_key(key) + _MAP_VALUE_KEY + varint(len(value)) + value


# kind of call -> (PredictionLog field, log message, request message, response message)
_LOGS = {"predict": ("predict_log", "PredictLog", "PredictRequest", "PredictResponse"),
         "classify": ("classify_log", "ClassifyLog", "ClassificationRequest", "ClassificationResponse"),
         "regress": ("regress_log", "RegressLog", "RegressionRequest", "RegressionResponse")}


def call_log(kind: str, name: str, version: int, signature_name: str, request: bytes, response: bytes) -> bytes:
    """PredictionLog's predict_log, classify_log or regress_log of a serialized request and response.

    The request's model spec is completed with the version that answered: a
    message field repeated in the wire format merges into the first, and version
    is a oneof with version_label, so the version given here is the one read back.
    """
    log_field, log_message, request_message, _ = _LOGS[kind]
    request += field(request_message, "model_spec", model_spec(name, version, signature_name))
    return field("PredictionLog", log_field,
                 field(log_message, "request", request) + field(log_message, "response", response))


def _response_spec(kind: str, name: str, version: int, signature_name: str) -> bytes:
    return field(_LOGS[kind][3], "model_spec", model_spec(name, version, signature_name or DEFAULT_SIGNATURE))


def predict_logs(name: str, version: int, signature_name: str, inputs: Mapping[str, Sequence[np.ndarray]],
                 outputs: Mapping[str, Sequence[np.ndarray]]) -> list[bytes]:
    """Predicts of one signature from arrays (per tensor, each call's array): per call, the request as
    gRPC would send it and the response as answered."""
    spec = _response_spec("predict", name, version, signature_name)
    return [call_log("predict", name, version, signature_name, request, response + spec)
            for request, response in zip(tensor_maps("PredictRequest", "inputs", inputs),
                                          tensor_maps("PredictResponse", "outputs", outputs))]


def _examples(examples: Iterable[bytes]) -> bytes:
    """Serialized tf.Examples as an Input's example_list (a REST context is already merged into each)."""
    return field("Input", "example_list", b"".join(field("ExampleList", "examples", example) for example in examples))


def _class(label: str | bytes, score: float) -> bytes:
    label_bytes = label.encode() if isinstance(label, str) else label
    return field("Class", "label", label_bytes) + _float_field("Class", "score", score)


def classify_log(name: str, version: int, signature_name: str, examples: Iterable[bytes],
                 results: Iterable[Iterable[tuple[str, float]]]) -> bytes:
    """A classify from the examples asked about and the (label, score) pairs answered."""
    classifications = b"".join(
        field("ClassificationResult", "classifications",
              b"".join(field("Classifications", "classes", _class(label, score)) for label, score in classes))
        for classes in results)
    response = (field("ClassificationResponse", "result", classifications)
                + _response_spec("classify", name, version, signature_name))
    return call_log("classify", name, version, signature_name, field("ClassificationRequest", "input",
                                                                     _examples(examples)), response)


def regress_log(name: str, version: int, signature_name: str, examples: Iterable[bytes],
                values: Iterable[float]) -> bytes:
    """A regress from the examples asked about and the values answered."""
    regressions = b"".join(field("RegressionResult", "regressions", _float_field("Regression", "value", value))
                           for value in values)
    response = field("RegressionResponse", "result", regressions) + _response_spec("regress", name, version,
                                                                                   signature_name)
    return call_log("regress", name, version, signature_name, field("RegressionRequest", "input",
                                                                    _examples(examples)), response)
