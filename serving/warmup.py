"""Loading a version as TF Serving does: Session options, then warm-up before it is served.

TF Serving replays `<version>/assets.extra/tf_serving_warmup_requests` (a TFRecord
file of PredictionLog protos, at most 1000) on load; a failing record fails the
load, so a version never serves requests its own warm-up could not answer. A
version without that file gets one synthetic call per predict signature instead
(only to take the first-call cost off the request path; failures are ignored).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time

import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow_serving.apis import prediction_log_pb2

from serving.errors import Code, ServingError, invalid_argument
from serving.grpc_server import run_classify, run_multi_inference, run_predict, run_regress
from serving.inference import InferenceService
from serving.servable import Servable

log = logging.getLogger(__name__)

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000  # TF Serving's WarmupConsts::kMaxNumRecords


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    """The server flags that shape how a version is loaded."""

    session_config: config_pb2.ConfigProto | None = None
    enable_model_warmup: bool = True
    warmup_iterations: int = 1  # --num_request_iterations_for_warmup
    method_name_check: bool = False


def session_config(intra_op: int, inter_op: int, session_parallelism: int) -> config_pb2.ConfigProto | None:
    """TF Serving's thread-pool flags as a ConfigProto (0 everywhere: TensorFlow's defaults)."""
    if intra_op > 0 and inter_op > 0 and session_parallelism > 0:
        raise ValueError("Either configure server_options.tensorflow_session_parallelism or "
                         "(server_options.tensorflow_intra_op_parallelism, "
                         "server_options.tensorflow_inter_op_parallelism) separately. You cannot configure all.")
    if intra_op > 0 or inter_op > 0:
        return config_pb2.ConfigProto(intra_op_parallelism_threads=intra_op, inter_op_parallelism_threads=inter_op)
    if session_parallelism > 0:
        return config_pb2.ConfigProto(intra_op_parallelism_threads=session_parallelism,
                                      inter_op_parallelism_threads=session_parallelism)
    return None


class VersionLoader:
    """`load(name, version, path)` for the ModelManager: a warmed-up Servable, or an exception."""

    def __init__(self, options: LoadOptions):
        self._options = options
        self._service = InferenceService(method_name_check=options.method_name_check)  # warm-up bypasses batching

    def __call__(self, name: str, version: int, path: str) -> Servable:
        servable = Servable.load(name, version, path, self._options.session_config)
        if not self._options.enable_model_warmup:
            return servable
        warmup_path = os.path.join(path, WARMUP_FILE)
        if os.path.exists(warmup_path):
            self.replay(servable, warmup_path)
        else:
            servable.warm_up()
        return servable

    def replay(self, servable: Servable, warmup_path: str) -> None:
        started, count = time.monotonic(), 0
        log.info("Starting to read warmup data for model at %s with model-warmup-options "
                 "num_request_iterations: %d", warmup_path, self._options.warmup_iterations)
        for record in tf.data.TFRecordDataset(warmup_path).as_numpy_iterator():
            count += 1
            if count > MAX_RECORDS:
                raise invalid_argument(
                    f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {warmup_path}")
            entry = prediction_log_pb2.PredictionLog()
            try:
                entry.ParseFromString(record)
            except Exception:  # noqa: BLE001 - protobuf's DecodeError has no stable import path
                raise invalid_argument(f"Failed to parse warmup record: {record!r} from {warmup_path}") from None
            for _ in range(self._options.warmup_iterations):
                self._run(servable, entry)
        log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d. "
                 "Elapsed time (microseconds): %d.", warmup_path, count, (time.monotonic() - started) * 1e6)

    def _run(self, servable: Servable, entry: prediction_log_pb2.PredictionLog) -> None:
        kind = entry.WhichOneof("log_type")
        if kind == "predict_log":
            run_predict(self._service, servable, entry.predict_log.request)
        elif kind == "classify_log":
            run_classify(self._service, servable, entry.classify_log.request)
        elif kind == "regress_log":
            run_regress(self._service, servable, entry.regress_log.request)
        elif kind == "multi_inference_log":
            run_multi_inference(self._service, servable, entry.multi_inference_log.request)
        else:
            raise ServingError(Code.UNIMPLEMENTED, f"Unsupported log_type for warmup: {kind}")
