"""TF Serving's request logger: sampled requests and responses as PredictionLog TFRecords.

A model's `logging_config` (ModelServerConfig) sets a sampling rate and a file
name prefix. Successful predict, classify and regress calls are sampled at the
inference layer, so REST and gRPC are logged alike: REST requests appear as the
request protos gRPC would have sent. The request path only draws a random number
and queues references to the arrays; a writer thread builds the protos and
writes `<filename_prefix>.<start time>.<pid>.<n>.tfrecord` files. When the queue
is full, records are dropped and counted (with a warning) rather than slowing
requests. Files are flushed every second and rotated by size and age.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import queue
import random
import threading
import time
from typing import Callable, Iterable, Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import logging_pb2, model_pb2, predict_pb2, prediction_log_pb2

from serving.config import ModelEntry, RequestLogging
from serving.servable import DEFAULT_SIGNATURE, Servable

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class _Record:
    """What the request path hands over: references only, protos are built by the writer."""

    kind: str  # "predict" | "classify" | "regress"
    settings: RequestLogging
    servable: Servable
    signature_name: str
    request: object  # predict: (inputs, output_filter); classify/regress: serialized examples
    response: object  # predict: outputs; classify: (label, score) lists; regress: values
    timestamp: float


class RequestLogger:
    """Samples calls per model and writes them on a background thread.

    `entries` gives the current model config (it changes on config reloads, by
    file polling or over gRPC); each model's `logging` field says whether and how.
    """

    def __init__(self, entries: Callable[[], Iterable[ModelEntry]], max_queue: int = 10_000,
                 max_file_bytes: int = 64 << 20, max_file_seconds: float = 3600):
        self._entries = entries
        self._queue: queue.Queue[_Record | None] = queue.Queue(max_queue)
        self._max_file_bytes = max_file_bytes
        self._max_file_seconds = max_file_seconds
        self._files: dict[str, _LogFile] = {}  # by filename prefix; writer thread only
        self._dropped = 0
        self._dropped_lock = threading.Lock()
        self._thread = threading.Thread(target=self._write_loop, name="request-logger", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Records dropped because the writer could not keep up."""
        return self._dropped

    def predict(self, servable: Servable, signature_name: str, inputs: Mapping[str, np.ndarray],
                output_filter: Iterable[str], outputs: Mapping[str, np.ndarray]) -> None:
        self._offer("predict", servable, signature_name, (inputs, list(output_filter)), outputs)

    def classify(self, servable: Servable, signature_name: str, examples: list[bytes],
                 results: list[list[tuple[str, float]]]) -> None:
        self._offer("classify", servable, signature_name, examples, results)

    def regress(self, servable: Servable, signature_name: str, examples: list[bytes], values: list[float]) -> None:
        self._offer("regress", servable, signature_name, examples, values)

    def _offer(self, kind: str, servable: Servable, signature_name: str, request: object, response: object) -> None:
        settings = next((entry.logging for entry in self._entries() if entry.name == servable.name), None)
        if settings is None or random.random() >= settings.sampling_rate:
            return
        try:
            self._queue.put_nowait(_Record(kind, settings, servable, signature_name, request, response, time.time()))
        except queue.Full:
            with self._dropped_lock:
                self._dropped += 1
                dropped = self._dropped
            if dropped == 1 or dropped % 1000 == 0:
                log.warning("request log queue full: %d records dropped so far (writes are slower than requests)",
                            dropped)

    def close(self) -> None:
        """Write what is queued, then close every file (at shutdown)."""
        self._queue.put(None)
        self._thread.join()

    # -- writer thread -----------------------------------------------------------------

    def _write_loop(self) -> None:
        last_flush, failed = time.monotonic(), 0
        while True:
            try:
                record = self._queue.get(timeout=FLUSH_SECONDS)
            except queue.Empty:
                record = False  # nothing new: a chance to flush
            if record is None:
                break
            if record:
                try:
                    self._write(record)
                except Exception:  # noqa: BLE001 - a bad record or a full disk must not stop the logger
                    failed += 1
                    if failed == 1 or failed % 1000 == 0:  # a lasting cause (full disk) must not flood the log
                        log.exception("request log: %d records not written so far; the latest was for model %s",
                                      failed, record.servable.name)
            if time.monotonic() - last_flush >= FLUSH_SECONDS:
                for file in self._files.values():
                    file.flush()
                last_flush = time.monotonic()
        for file in self._files.values():
            file.close()
        self._files.clear()

    def _write(self, record: _Record) -> None:
        data = encode(record)
        prefix = record.settings.filename_prefix
        file = self._files.get(prefix)
        if file is not None and (file.size >= self._max_file_bytes
                                 or time.monotonic() - file.opened > self._max_file_seconds):
            file.close()
            file = None
        if file is None:
            file = self._files[prefix] = _LogFile(prefix)
        file.write(data)


class _LogFile:
    """One TFRecord file being written; its name carries the start time, pid and a counter."""

    _counter = 0

    def __init__(self, prefix: str):
        _LogFile._counter += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.path = f"{prefix}.{stamp}.{os.getpid()}.{_LogFile._counter}.tfrecord"
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._writer = tf.io.TFRecordWriter(self.path)
        self.opened = time.monotonic()
        self.size = 0
        log.info("request log: writing %s", self.path)

    def write(self, data: bytes) -> None:
        self._writer.write(data)
        self.size += len(data) + 16  # TFRecord framing: length, two CRCs

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def encode(record: _Record) -> bytes:
    """The serialized PredictionLog TF Serving writes for one call: request, response, log_metadata."""
    name, version = record.servable.name, record.servable.version
    metadata = _metadata_bytes(name, version, record.signature_name or DEFAULT_SIGNATURE,
                               record.settings.sampling_rate)
    metadata += _TIMESTAMP_KEY + _varint(int(record.timestamp))
    if record.kind == "predict":
        return _field(_LOG_FIELDS["log_metadata"], metadata) + _field(_LOG_FIELDS["predict_log"],
                                                                        _predict_log(record))
    entry = prediction_log_pb2.PredictionLog()
    spec = _spec(name, version, record.signature_name)
    answered_spec = _spec(name, version, record.signature_name or DEFAULT_SIGNATURE)
    if record.kind == "classify":
        entry.classify_log.request.model_spec.CopyFrom(spec)
        _add_examples(entry.classify_log.request.input, record.request)
        response = entry.classify_log.response
        response.model_spec.CopyFrom(answered_spec)
        for classes in record.response:
            classification = response.result.classifications.add()
            for label, score in classes:
                classification.classes.add(label=label, score=score)
    else:
        entry.regress_log.request.model_spec.CopyFrom(spec)
        _add_examples(entry.regress_log.request.input, record.request)
        response = entry.regress_log.response
        response.model_spec.CopyFrom(answered_spec)
        for value in record.response:
            response.result.regressions.add(value=value)
    return _field(_LOG_FIELDS["log_metadata"], metadata) + entry.SerializeToString()


# Predict logs, the bulk of any log, are encoded straight to protobuf's wire format: building
# them through the Python proto API costs several times more CPU, taken from the requests served.
# Field numbers come from the protos' own descriptors; the tests parse the result with them.
def _numbers(message) -> dict[str, int]:
    return {field.name: field.number for field in message.DESCRIPTOR.fields}


_LOG_FIELDS = _numbers(prediction_log_pb2.PredictionLog)
_PREDICT_LOG = _numbers(prediction_log_pb2.PredictLog)
_REQUEST = _numbers(predict_pb2.PredictRequest)
_RESPONSE = _numbers(predict_pb2.PredictResponse)
_TENSOR = _numbers(tensor_pb2.TensorProto)


def _varint(value: int) -> bytes:
    if value < len(_SMALL_VARINTS):
        return _SMALL_VARINTS[value]
    return _encode_varint(value)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = [_encode_varint(value) for value in range(1 << 14)]


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (message, bytes or string)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


_TIMESTAMP_KEY = _varint(logging_pb2.LogMetadata.DESCRIPTOR.fields_by_name["timestamp_secs"].number << 3)


# Cached by model name and version, not by Servable: the cache must not keep unloaded versions alive.
@functools.lru_cache(maxsize=1024)
def _metadata_bytes(name: str, version: int, signature_name: str, sampling_rate: float) -> bytes:
    """LogMetadata without its timestamp (appended per record)."""
    metadata = logging_pb2.LogMetadata(model_spec=_spec(name, version, signature_name), saved_model_tags=["serve"])
    metadata.sampling_config.sampling_rate = sampling_rate
    return metadata.SerializeToString()


@functools.lru_cache(maxsize=1024)
def _spec_bytes(name: str, version: int, signature_name: str) -> bytes:
    return _spec(name, version, signature_name).SerializeToString()


def _spec(name: str, version: int, signature_name: str) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    spec.version.value = version
    return spec


@functools.lru_cache(maxsize=4096)
def _tensor_head(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A TensorProto's dtype and shape fields."""
    enum = types_pb2.DT_STRING if dtype.kind in "OSU" else tf.dtypes.as_dtype(dtype).as_datatype_enum
    proto = tensor_pb2.TensorProto(dtype=enum)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto.SerializeToString()


def _tensor(value: np.ndarray) -> bytes:
    """`value` as a serialized TensorProto: numbers as tensor_content, strings as string_val."""
    head = _tensor_head(value.dtype, value.shape)
    if value.dtype.kind not in "OSU":
        return head + _field(_TENSOR["tensor_content"], value.tobytes())
    number = _TENSOR["string_val"]
    return head + b"".join(_field(number, item.encode() if isinstance(item, str) else bytes(item))
                           for item in value.flat)


def _tensor_map(number: int, tensors: Mapping[str, np.ndarray]) -> bytes:
    """A map<string, TensorProto> field: one (key = 1, value = 2) entry per tensor."""
    return b"".join(_field(number, _map_key(name) + _field(2, _tensor(value))) for name, value in tensors.items())


@functools.lru_cache(maxsize=4096)
def _map_key(name: str) -> bytes:
    return _field(1, name.encode())


def _predict_log(record: _Record) -> bytes:
    inputs, output_filter = record.request
    name, version = record.servable.name, record.servable.version
    request = (_field(_REQUEST["model_spec"], _spec_bytes(name, version, record.signature_name))
               + _tensor_map(_REQUEST["inputs"], inputs)
               + b"".join(_field(_REQUEST["output_filter"], name.encode()) for name in output_filter))
    response = (_tensor_map(_RESPONSE["outputs"], record.response)
                + _field(_RESPONSE["model_spec"],
                         _spec_bytes(name, version, record.signature_name or DEFAULT_SIGNATURE)))
    return _field(_PREDICT_LOG["request"], request) + _field(_PREDICT_LOG["response"], response)


def _add_examples(input_proto, examples: list[bytes]) -> None:
    """Serialized examples as an example_list (a gRPC context is already merged into each)."""
    for serialized in examples:
        input_proto.example_list.examples.add().MergeFromString(serialized)
