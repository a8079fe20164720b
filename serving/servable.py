"""One loaded model version: its SignatureDefs, run in a TF Session as TF Serving runs them.

TF Serving loads every SavedModel (TF1 or TF2) into a Session and runs a
signature by feeding and fetching the tensor names in its SignatureDef. Doing the
same here means: TF1 session-based models load (their signature shapes are not
re-checked, only the graph decides what it accepts), and a request is run on the
graph, not on a re-traced function. The SignatureDefs are read from
saved_model.pb so metadata is reported exactly as TF Serving reads it.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, saved_model_pb2

from serving import custom_ops
from serving.data_types import DT_STRING, dtype_name
from serving.errors import Code, ServingError, failed_precondition, invalid_argument

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def shape_of(info: meta_graph_pb2.TensorInfo) -> list[int] | None:
    """Signature shape as a list (-1 = any size), or None for unknown rank."""
    if info.tensor_shape.unknown_rank:
        return None
    return [dim.size for dim in info.tensor_shape.dim]


def read_meta_graph(path: str) -> meta_graph_pb2.MetaGraphDef:
    """The `serve` MetaGraphDef of a SavedModel directory; raises if absent or unreadable."""
    pb_path = os.path.join(path, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    if os.path.exists(pb_path):
        with open(pb_path, "rb") as handle:
            saved_model.ParseFromString(handle.read())
    else:
        with open(os.path.join(path, "saved_model.pbtxt"), encoding="utf-8") as handle:
            text_format.Parse(handle.read(), saved_model)
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == {"serve"}:
            return meta_graph
    raise ValueError(f"SavedModel at {path} has no MetaGraphDef with tags {{serve}}")


class Servable:
    """A loaded, immutable model version that many threads may call at once."""

    def __init__(self, name: str, version: int, path: str,
                 signature_defs: Mapping[str, meta_graph_pb2.SignatureDef], session: tf.compat.v1.Session):
        self.name = name
        self.version = version
        self.path = path
        self.signature_defs = signature_defs
        self._session = session
        self._callables: dict[tuple, object] = {}
        self._callables_lock = threading.Lock()

    @classmethod
    def load(cls, name: str, version: int, path: str,
             session_config: config_pb2.ConfigProto | None = None) -> "Servable":
        """Load a version into its own Session; any exception means the version is unusable."""
        meta_graph = read_meta_graph(path)
        if not any(not key.startswith("__") for key in meta_graph.signature_def):
            raise ValueError("SavedModel has no serving signatures")
        custom_ops.register_ops_for(path)
        graph = tf.Graph()
        session = tf.compat.v1.Session(graph=graph, config=session_config)
        with graph.as_default():
            tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        return cls(name, version, path, dict(meta_graph.signature_def), session)

    def signature_def(self, signature_name: str) -> meta_graph_pb2.SignatureDef:
        key = signature_name or DEFAULT_SIGNATURE
        if key.startswith("__") or key not in self.signature_defs:
            raise failed_precondition(f'Serving signature key "{key}" not found.')
        return self.signature_defs[key]

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray],
            output_names: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Run a signature on numpy inputs (all outputs, or `output_names`) as TF Serving's Predict does."""
        signature = self.signature_def(signature_name)
        _check_input_names(inputs.keys(), signature.inputs.keys())
        names = sorted(inputs)
        for name in names:
            _check_dtype(name, signature.inputs[name].dtype, inputs[name])
        outputs = list(output_names) or sorted(signature.outputs)
        values = self.run_tensors({signature.inputs[name].name: inputs[name] for name in names},
                                  [signature.outputs[name].name for name in outputs])
        return dict(zip(outputs, values))

    def run_tensors(self, feeds: Mapping[str, np.ndarray], fetches: Sequence[str]) -> list[np.ndarray]:
        """Feed and fetch graph tensors by name: TF Serving's session->Run."""
        names = sorted(feeds)
        call = self._callable(tuple(names), tuple(fetches))
        try:
            return call(*[_feedable(feeds[name]) for name in names])
        except tf.errors.OpError as error:
            raise ServingError(_code_of(error), _op_error_message(error.message)) from error

    def _callable(self, feeds: tuple[str, ...], fetches: tuple[str, ...]):
        """A compiled Session callable per (feeds, fetches), made once (Session::MakeCallable)."""
        key = (feeds, fetches)
        call = self._callables.get(key)
        if call is None:
            with self._callables_lock:
                call = self._callables.get(key)
                if call is None:
                    options = config_pb2.CallableOptions(feed=list(feeds), fetch=list(fetches))
                    try:
                        call = self._session._make_callable_from_options(options)  # noqa: SLF001 - no public C++ callable API
                    except tf.errors.OpError as error:
                        raise ServingError(_code_of(error), _op_error_message(error.message)) from error
                    self._callables[key] = call
        return call

    def close(self) -> None:
        """Release the Session now (at shutdown), not in interpreter finalization, where TF aborts."""
        with self._callables_lock:
            self._callables.clear()
        self._session.close()

    def warm_up(self) -> None:
        """Call each predict signature once so the first real request is not slow.

        Used when the version has no warm-up requests of its own. Dummy zeros or
        empty strings are not valid for every model, so a failure is only logged.
        """
        for key, signature in self.signature_defs.items():
            if key.startswith("__") or signature.method_name != PREDICT_METHOD:
                continue
            try:
                self.run(key, {name: _dummy(info) for name, info in signature.inputs.items()})
            except Exception as error:  # noqa: BLE001 - any failure only skips the warm-up
                log.debug("warm-up of %s/%s signature %s skipped: %s", self.name, self.version, key, error)


def _check_input_names(sent, expected) -> None:
    sent, expected = set(sent), set(expected)
    if sent != expected:
        raise invalid_argument(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
            f"Missing but required: {{{','.join(sorted(expected - sent))}}}.")


def _check_dtype(name: str, dtype_enum: int, value: np.ndarray) -> None:
    """TF Serving's (TF runtime's) wording for a tensor of the wrong type; shapes are the graph's business."""
    want = tf.dtypes.as_dtype(dtype_enum)
    is_string = value.dtype.kind in "OSU"
    if is_string != (want == tf.string) or (not is_string and value.dtype != want.as_numpy_dtype):
        actual = tf.string if is_string else tf.dtypes.as_dtype(value.dtype)
        raise invalid_argument(
            f"Expects arg[{name}] to be {dtype_name(dtype_enum)} but {dtype_name(actual.as_datatype_enum)} is provided")


def _feedable(value: np.ndarray) -> np.ndarray:
    return value.astype(object) if value.dtype.kind in "SU" else value


def signature_text(signature: meta_graph_pb2.SignatureDef) -> str:
    """A SignatureDef as TF Serving's error messages print it (proto DebugString)."""
    return text_format.MessageToString(signature)


def _dummy(info: meta_graph_pb2.TensorInfo) -> np.ndarray:
    shape = [1 if size < 0 else size for size in (shape_of(info) or [1])]
    if info.dtype == DT_STRING:
        return np.full(shape, b"", dtype=object)
    return np.zeros(shape, dtype=tf.dtypes.as_dtype(info.dtype).as_numpy_dtype)


def _op_error_message(message: str) -> str:
    """Drop the Python traceback TF prepends in graph mode ("Detected at node ... defined at")."""
    if "Detected at node" in message:
        message = message.rstrip().rsplit("\n\n", 1)[-1]
    return re.sub(r"\s*\[Op:[^\]]*\]$", "", message.strip())


def _code_of(error: tf.errors.OpError) -> Code:
    try:
        return Code(error.error_code)
    except ValueError:
        return Code.UNKNOWN
