"""TF Serving's REST JSON mapping: request bodies to tensors/Examples, results to JSON.

Follows TF Serving's json_tensor.cc: row ("instances") and columnar ("inputs")
formats, {"b64": ...} binary strings, lossless number conversion, "_bytes"
outputs encoded as b64, float32 written with the shortest round-trip digits, and
the same error wording so clients see the same messages from both servers.
"""
from __future__ import annotations

import base64
import binascii
import functools
import json
import math
from typing import Any, Callable, Mapping

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import types_pb2

from serving.errors import Code, ServingError, invalid_argument
from serving.servable import dtype_name

ROW = "row"
COLUMNAR = "columnar"

_INT_RANGES = {
    types_pb2.DT_INT8: (-2**7, 2**7 - 1),
    types_pb2.DT_UINT8: (0, 2**8 - 1),
    types_pb2.DT_INT16: (-2**15, 2**15 - 1),
    types_pb2.DT_UINT16: (0, 2**16 - 1),
    types_pb2.DT_INT32: (-2**31, 2**31 - 1),
    types_pb2.DT_UINT32: (0, 2**32 - 1),
    types_pb2.DT_INT64: (-2**63, 2**63 - 1),
    types_pb2.DT_UINT64: (0, 2**64 - 1),
}
_NUMPY_TYPES = {
    types_pb2.DT_FLOAT: np.float32, types_pb2.DT_DOUBLE: np.float64, types_pb2.DT_HALF: np.float16,
    types_pb2.DT_INT8: np.int8, types_pb2.DT_UINT8: np.uint8, types_pb2.DT_INT16: np.int16,
    types_pb2.DT_UINT16: np.uint16, types_pb2.DT_INT32: np.int32, types_pb2.DT_UINT32: np.uint32,
    types_pb2.DT_INT64: np.int64, types_pb2.DT_UINT64: np.uint64, types_pb2.DT_BOOL: np.bool_,
    types_pb2.DT_STRING: object,
}
# Largest integers a float type holds exactly (TF Serving's IsLosslessDecimal).
_MAX_EXACT_INT = {types_pb2.DT_FLOAT: 2**24 - 1, types_pb2.DT_HALF: 2**11 - 1, types_pb2.DT_DOUBLE: 2**53 - 1}
_MAX_FLOAT = {types_pb2.DT_FLOAT: float(np.finfo(np.float32).max),
              types_pb2.DT_HALF: float(np.finfo(np.float16).max),
              types_pb2.DT_DOUBLE: math.inf}


# -- request parsing --------------------------------------------------------------

def parse_body(body: bytes) -> dict:
    """Decode a request body that must be a JSON object."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as error:
        raise invalid_argument(f"JSON Parse error: {error.msg} at offset: {error.pos}") from error
    except (UnicodeDecodeError, RecursionError) as error:
        raise invalid_argument(f"JSON Parse error: {error}") from error
    if not isinstance(doc, dict):
        raise invalid_argument(f"JSON Value: {_show(doc)} Is not object")
    return doc


def signature_name(doc: dict) -> str:
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid_argument(
            f"JSON Value: {_show(doc)} not formatted correctly. 'signature_name' key must be a string value.")
    return name


def predict_inputs(doc: dict, input_infos: Mapping) -> tuple[dict[str, np.ndarray], str]:
    """Tensors for a predict request, and whether it used the row or columnar format."""
    if not input_infos:
        raise invalid_argument("Failed to get input map for signature")
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise invalid_argument(
            f"JSON Value: {_show(doc)} Not formatted correctly expecting only one of 'inputs' or "
            "'instances' keys to exist ")
    if has_instances:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise invalid_argument(f"JSON Value: {_show(doc)} Expecting 'instances' to be an list/array")
        if not instances:
            raise invalid_argument(f"JSON Value: {_show(doc)} No values in 'instances' array")
        return _from_instances(instances, input_infos), ROW
    if has_inputs:
        return _from_inputs(doc["inputs"], input_infos), COLUMNAR
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def _from_instances(instances: list, infos: Mapping) -> dict[str, np.ndarray]:
    first = instances[0]
    as_objects = _is_object(first)
    if not as_objects and len(infos) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map")
    names = sorted(infos)
    values: dict[str, list] = {name: [] for name in names}
    shapes: dict[str, list[int]] = {}
    for index, element in enumerate(instances):
        if as_objects:
            if not _is_object(element):
                raise invalid_argument(f"Expecting object but got list at item {index} of input list")
            for key, item in element.items():
                try:
                    if key not in infos:
                        raise invalid_argument(f"JSON object: does not have named input: {key}")
                    _add_item(item, key, infos[key].dtype, shapes, values[key])
                except ServingError as error:
                    raise invalid_argument(
                        f"Failed to process element: {index} key: {key} of 'instances' list. "
                        f"Error: {error.message}") from None
            if set(element) != set(names):
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{_show(element)} keys must be equal to: {','.join(names)}")
        else:
            if _is_object(element):
                raise invalid_argument(f"Expecting value/list but got object at item {index} of input list")
            try:
                _add_item(element, names[0], infos[names[0]].dtype, shapes, values[names[0]])
            except ServingError as error:
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. Error: {error.message}") from None
    return {name: _array(values[name], [len(instances)] + shapes[name], infos[name].dtype)
            for name in names if name in shapes}


def _add_item(item: Any, name: str, dtype: int, shapes: dict, out: list) -> None:
    if not isinstance(item, list) and shapes.get(name) == []:
        out.append(_converter(dtype)(item))  # fast path: the usual scalar feature value
        return
    shape = _dense_shape(item)
    if name in shapes and shapes[name] != shape:
        size, expected = math.prod(shape), math.prod(shapes[name])
        if size != expected:
            raise invalid_argument(f"Expecting tensor size: {expected} but got: {size}")
        raise invalid_argument(f"Expecting shape {_shape_str(shapes[name])} but got: {_shape_str(shape)}")
    shapes[name] = shape
    _fill(item, 0, shape, _converter(dtype), out)


def _from_inputs(inputs: Any, infos: Mapping) -> dict[str, np.ndarray]:
    if not _is_object(inputs):
        if len(infos) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map")
        name = next(iter(infos))
        return {name: _tensor(inputs, infos[name].dtype)}
    unknown = sorted(set(inputs) - set(infos))
    if unknown:  # TF Serving ignores these; rejecting them catches misspelt feature names
        raise invalid_argument(
            f"Unknown named input(s): {','.join(unknown)} in 'inputs' object. "
            f"Expected: {','.join(sorted(infos))}")
    tensors = {}
    for name in sorted(infos):
        if name not in inputs:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = _tensor(inputs[name], infos[name].dtype)
    return tensors


def _tensor(value: Any, dtype: int) -> np.ndarray:
    shape = _dense_shape(value)
    flat: list = []
    _fill(value, 0, shape, _converter(dtype), flat)
    return _array(flat, shape, dtype)


def _array(flat: list, shape: list[int], dtype: int) -> np.ndarray:
    array = np.empty(len(flat), dtype=object) if dtype == types_pb2.DT_STRING else None
    if array is not None:
        array[:] = flat
    else:
        array = np.asarray(flat, dtype=_NUMPY_TYPES[dtype])
    return array.reshape(shape)


def _dense_shape(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value: Any, level: int, shape: list[int], convert: Callable, out: list) -> None:
    if not isinstance(value, list):
        if level != len(shape):
            raise invalid_argument(
                f"JSON Value: {_show(value)} found at incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {len(shape)}")
        out.append(convert(value))
        return
    if level >= len(shape):
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
    if len(value) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}")
    for item in value:
        _fill(item, level + 1, shape, convert, out)


@functools.lru_cache(maxsize=None)
def _converter(dtype: int) -> Callable[[Any], Any]:
    """A function turning one JSON leaf into a value of `dtype`, or raising TF Serving's error."""
    if dtype == types_pb2.DT_STRING:
        def to_bytes(value):
            if isinstance(value, str):
                return value.encode("utf-8")
            if isinstance(value, dict):
                return _decode_b64(value)
            raise _type_error(value, dtype)
        return to_bytes
    if dtype == types_pb2.DT_BOOL:
        def to_bool(value):
            if isinstance(value, bool):
                return value
            raise _type_error(value, dtype)
        return to_bool
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]

        def to_int(value):
            if type(value) is int and low <= value <= high:
                return value
            raise _type_error(value, dtype)
        return to_int
    if dtype in _MAX_EXACT_INT:
        max_int, max_float = _MAX_EXACT_INT[dtype], _MAX_FLOAT[dtype]

        def to_float(value):
            if type(value) is int:
                if abs(value) > max_int:
                    raise _lossy(value, dtype)
                return value
            if type(value) is float:
                if math.isfinite(value) and abs(value) > max_float:
                    raise _lossy(value, dtype)
                return value
            raise _type_error(value, dtype)
        return to_float

    def unsupported(value):
        raise ServingError(Code.UNIMPLEMENTED,
                           f"Conversion of JSON Value: {_show(value)} to type: {dtype_name(dtype)}")
    return unsupported


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _decode_b64(value: dict) -> bytes:
    if not _is_b64(value):
        raise invalid_argument(f"JSON Value: {_show(value)} not formatted correctly for base64 data")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("Unable to base64 decode") from None


def _type_error(value: Any, dtype: int) -> ServingError:
    return invalid_argument(
        f"JSON Value: {_show(value)} Type: {_json_type(value)} is not of expected type: {dtype_name(dtype)}")


def _lossy(value: Any, dtype: int) -> ServingError:
    return invalid_argument(
        f"Cannot convert JSON value: {_show(value)} to {dtype_name(dtype)} without loss of precision.")


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return "Number"
    return {str: "String", list: "Array", dict: "Object"}[type(value)]


def _show(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit] + "..."


def _shape_str(shape: list[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


# -- classify / regress requests ---------------------------------------------------

def serialized_examples(doc: dict, verb: str) -> list[bytes]:
    """Serialized tf.Examples of a classify/regress body, with "context" merged into each."""
    context = b""
    if "context" in doc:
        context = _example(doc["context"]).SerializeToString()
    if "examples" not in doc:
        raise invalid_argument(
            f"JSON Value: {_show(doc)} When method is {verb}, key 'examples' is expected and was not found")
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise invalid_argument(f"JSON Value: {_show(doc)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid_argument(f"JSON Value: {_show(doc)} 'examples' value is an empty array")
    # Concatenated serialized protos merge: this is how TF Serving applies the context.
    return [context + _example(item).SerializeToString() for item in examples]


def _example(value: Any) -> example_pb2.Example:
    if not isinstance(value, dict):
        raise invalid_argument(f"Example must be JSON object but got JSON {_json_type(value)}")
    example = example_pb2.Example()
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            _add_to_feature(item, name, feature)
    return example


def _add_to_feature(value: Any, name: str, feature: feature_pb2.Feature) -> None:
    if isinstance(value, bool):
        _feature_list(feature, "int64_list", name).value.append(int(value))
    elif isinstance(value, int):
        if value > 2**63 - 1:
            raise invalid_argument(f"Feature: {name} has uint64 element. Only int64 is supported.")
        if value < -2**63:
            raise invalid_argument(f"Feature: {name} has element with unexpected JSON type: Number")
        _feature_list(feature, "int64_list", name).value.append(value)
    elif isinstance(value, float):
        if math.isfinite(value) and abs(value) > _MAX_FLOAT[types_pb2.DT_FLOAT]:
            raise _lossy(value, types_pb2.DT_FLOAT)
        _feature_list(feature, "float_list", name).value.append(value)
    elif isinstance(value, str):
        _feature_list(feature, "bytes_list", name).value.append(value.encode("utf-8"))
    elif _is_b64(value):
        _feature_list(feature, "bytes_list", name).value.append(_decode_b64(value))
    else:
        raise invalid_argument(f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}")


def _feature_list(feature: feature_pb2.Feature, kind: str, name: str):
    current = feature.WhichOneof("kind")
    if current not in (None, kind):
        raise invalid_argument(
            f"Unexpected element type in feature: {name} expecting type: {current.split('_')[0]}")
    return getattr(feature, kind)


# -- responses ---------------------------------------------------------------------

def predict_response(outputs: Mapping[str, np.ndarray], fmt: str) -> dict:
    """"predictions" (row) or "outputs" (columnar); a lone output is not keyed by name."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if fmt == COLUMNAR:
        if len(names) == 1:
            return {"outputs": _to_json(names[0], outputs[names[0]])}
        return {"outputs": {name: _to_json(name, outputs[name]) for name in names}}
    batch = None
    for name in names:
        if outputs[name].ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        size = outputs[name].shape[0]
        if batch is not None and size != batch:
            raise invalid_argument(f"Tensor name: {name} has inconsistent batch size: {size} expecting: {batch}")
        batch = size
    rows = {name: _to_json(name, outputs[name]) for name in names}
    if len(names) == 1:
        return {"predictions": rows[names[0]]}
    return {"predictions": [{name: rows[name][i] for name in names} for i in range(batch)]}


def _to_json(name: str, array: np.ndarray) -> Any:
    if array.dtype.kind in "OSU":
        as_b64 = name.endswith("_bytes")
        flat = [_string_out(value, as_b64) for value in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist() if array.ndim else flat[0]
    if array.dtype in (np.float32, np.float16):
        # Shortest digits that round-trip in the tensor's own precision, as TF Serving writes them.
        return array.astype(str).astype(np.float64).tolist()
    return array.tolist()


def _string_out(value: Any, as_b64: bool) -> str | dict:
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
    if as_b64:
        return {"b64": base64.b64encode(raw).decode("ascii")}
    return raw.decode("utf-8", errors="replace")


def classify_response(results: list[list[tuple[str, float]]]) -> dict:
    return {"results": [[[label, _float32(score)] for label, score in classes] for classes in results]}


def regress_response(values: list[float]) -> dict:
    return {"results": [_float32(value) for value in values]}


def _float32(value: float) -> float:
    return float(str(np.float32(value)))


def dumps(payload: Any) -> bytes:
    """JSON bytes; NaN/Infinity are written as TF Serving does (not strict JSON)."""
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")
