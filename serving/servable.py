"""One loaded model version: its SignatureDefs and callable signatures.

The SignatureDefs are read from saved_model.pb (not rebuilt from the loaded
functions) because metadata, method names (predict/classify/regress) and tensor
names must be reported exactly as TF Serving reads them.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Mapping

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from serving.errors import Code, ServingError, failed_precondition, invalid_argument

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def dtype_name(dtype_enum: int) -> str:
    """TF's DataTypeString: DT_FLOAT -> "float", DT_INT64 -> "int64"."""
    return types_pb2.DataType.Name(dtype_enum)[3:].lower()


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
                 signature_defs: Mapping[str, meta_graph_pb2.SignatureDef], functions: Mapping,
                 loaded: object = None):
        self.name = name
        self.version = version
        self.path = path
        self.signature_defs = signature_defs
        self._functions = functions
        self._loaded = loaded  # keeps the variables and resources the functions use alive
        # Decoded once: per-request proto lookups and dtype conversions cost more than the checks.
        self._input_specs = {key: {name: _InputSpec.of(info) for name, info in signature_defs[key].inputs.items()}
                             for key in functions if key in signature_defs}

    @classmethod
    def load(cls, name: str, version: int, path: str) -> "Servable":
        """Load and check a version; any exception means the version is unusable."""
        meta_graph = read_meta_graph(path)
        loaded = tf.saved_model.load(path, tags=["serve"])
        functions = dict(loaded.signatures)
        runnable = {key for key in meta_graph.signature_def if not key.startswith("__")}
        missing = runnable - functions.keys()
        if missing:
            raise ValueError(f"signatures {sorted(missing)} are in saved_model.pb but could not be loaded")
        if not runnable:
            raise ValueError("SavedModel has no serving signatures")
        return cls(name, version, path, dict(meta_graph.signature_def), functions, loaded)

    def signature_def(self, signature_name: str) -> meta_graph_pb2.SignatureDef:
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self._functions:
            raise failed_precondition(f'Serving signature key "{key}" not found.')
        return self.signature_defs[key]

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call a signature on numpy inputs after checking names, dtypes and shapes."""
        key = signature_name or DEFAULT_SIGNATURE
        self.signature_def(key)
        specs = self._input_specs[key]
        _check_input_names(inputs.keys(), specs.keys())
        tensors = {name: specs[name].tensor(name, value) for name, value in inputs.items()}
        try:
            outputs = self._functions[key](**tensors)
        except tf.errors.OpError as error:
            raise ServingError(_code_of(error), _op_error_message(error.message)) from error
        except (TypeError, ValueError) as error:
            raise invalid_argument(str(error)) from error
        return {name: value.numpy() for name, value in outputs.items()}

    def warm_up(self) -> None:
        """Call each predict signature once so the first real request is not slow.

        Dummy zeros/empty strings are not valid for every model, so a failure here
        is only logged: the real check is that the version loaded.
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


@dataclasses.dataclass(frozen=True)
class _InputSpec:
    """What a signature input accepts: dtype, and shape (-1 = any size, None = any rank)."""

    dtype: tf.DType
    shape: tuple[int, ...] | None

    @classmethod
    def of(cls, info: meta_graph_pb2.TensorInfo) -> "_InputSpec":
        shape = shape_of(info)
        return cls(tf.dtypes.as_dtype(info.dtype), tuple(shape) if shape is not None else None)

    def tensor(self, name: str, value: np.ndarray) -> tf.Tensor:
        """The input as a tensor, or TF Serving's error if its dtype or shape does not fit."""
        is_string = value.dtype.kind in "OSU"
        if is_string != (self.dtype == tf.string) or (not is_string and value.dtype != self.dtype.as_numpy_dtype):
            actual = tf.string if is_string else tf.dtypes.as_dtype(value.dtype)
            raise invalid_argument(
                f"Expects arg[{name}] to be {dtype_name(self.dtype.as_datatype_enum)} but "
                f"{dtype_name(actual.as_datatype_enum)} is provided")
        if self.shape is not None and (
                len(self.shape) != value.ndim
                or any(want >= 0 and want != got for want, got in zip(self.shape, value.shape))):
            raise invalid_argument(
                f"Input {name} has shape {list(value.shape)} but the signature expects "
                f"{[None if d < 0 else d for d in self.shape]}")
        return tf.constant(value, dtype=self.dtype)


def _dummy(info: meta_graph_pb2.TensorInfo) -> np.ndarray:
    shape = [1 if size < 0 else size for size in (shape_of(info) or [1])]
    if info.dtype == types_pb2.DT_STRING:
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
