"""TensorFlow's DataType enum (tensorflow/core/framework/types.proto) without importing TensorFlow.

The JSON codec and the request-log writer process both need the enum values; the
writer must start in a fraction of a second, so neither may import TensorFlow for
them. tests/serving/test_request_log.py checks every value against types_pb2.
"""
from __future__ import annotations

import numpy as np

DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 1, 2, 3, 4, 5, 6, 7
DT_COMPLEX64, DT_INT64, DT_BOOL = 8, 9, 10
DT_UINT16, DT_COMPLEX128, DT_HALF, DT_UINT32, DT_UINT64 = 17, 18, 19, 22, 23

# Every DataType's name; a reference type is its base type + 100, named with "_ref".
_BASE_NAMES = {0: "invalid", 1: "float", 2: "double", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
               8: "complex64", 9: "int64", 10: "bool", 11: "qint8", 12: "quint8", 13: "qint32", 14: "bfloat16",
               15: "qint16", 16: "quint16", 17: "uint16", 18: "complex128", 19: "half", 20: "resource",
               21: "variant", 22: "uint32", 23: "uint64", 24: "float8_e5m2", 25: "float8_e4m3fn", 29: "int4",
               30: "uint4"}
NAMES: dict[int, str] = {**_BASE_NAMES, **{value + 100: f"{name}_ref" for value, name in _BASE_NAMES.items() if value}}

# numpy dtype -> DataType, for the numeric types a TensorProto carries as tensor_content
FROM_NUMPY: dict[np.dtype, int] = {np.dtype(name): value for name, value in [
    ("float32", DT_FLOAT), ("float64", DT_DOUBLE), ("int32", DT_INT32), ("uint8", DT_UINT8), ("int16", DT_INT16),
    ("int8", DT_INT8), ("complex64", DT_COMPLEX64), ("int64", DT_INT64), ("bool", DT_BOOL), ("uint16", DT_UINT16),
    ("complex128", DT_COMPLEX128), ("float16", DT_HALF), ("uint32", DT_UINT32), ("uint64", DT_UINT64)]}


def dtype_name(dtype_enum: int) -> str:
    """TF's DataTypeString: DT_FLOAT -> "float", DT_INT64 -> "int64"."""
    return NAMES.get(dtype_enum, f"unknown dtype enum ({dtype_enum})")
