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
import re
import struct
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
from serving import data_types
from serving.data_types import dtype_name
from serving.errors import Code, ServingError, invalid_argument

if TYPE_CHECKING:
    from tensorflow.core.example import example_pb2, feature_pb2

ROW = "row"
COLUMNAR = "columnar"

# Integer dtypes TF Serving's AddValueToTensor accepts, and the JSON integer range each takes
# (IsInt, IsInt64, IsUint, IsUint64). Narrow types take any int32 and wrap, as its TensorProto does.
_INT_RANGES = {
    data_types.DT_INT8: (-2**31, 2**31 - 1),
    data_types.DT_UINT8: (-2**31, 2**31 - 1),
    data_types.DT_INT16: (-2**31, 2**31 - 1),
    data_types.DT_INT32: (-2**31, 2**31 - 1),
    data_types.DT_INT64: (-2**63, 2**63 - 1),
    data_types.DT_UINT32: (0, 2**32 - 1),
    data_types.DT_UINT64: (0, 2**64 - 1),
}
_NUMPY_TYPES = {
    data_types.DT_FLOAT: np.float32, data_types.DT_DOUBLE: np.float64,
    data_types.DT_INT8: np.int8, data_types.DT_UINT8: np.uint8, data_types.DT_INT16: np.int16,
    data_types.DT_INT32: np.int32, data_types.DT_UINT32: np.uint32,
    data_types.DT_INT64: np.int64, data_types.DT_UINT64: np.uint64, data_types.DT_BOOL: np.bool_,
    data_types.DT_STRING: object,
}
_WRAPPED = {data_types.DT_INT8, data_types.DT_UINT8, data_types.DT_INT16}
MAX_RANK = 32  # numpy's limit; TF Serving's TensorShape allows 254
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT32 = struct.Struct("f")


# -- request parsing --------------------------------------------------------------

def parse_body(body: bytes) -> dict:
    """Decode a request body that must be a JSON object (TF Serving's ParseJson)."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    doc = loads(body)
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
    tensors = _scalar_instances(instances, _plan(infos))
    if tensors is not None:
        return tensors
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


class _Plan:
    """A signature's inputs as the row-format fast path needs them: sorted names and their dtypes."""

    __slots__ = ("infos", "names", "keys", "groups")

    def __init__(self, infos: Mapping):
        self.infos = infos  # held, so the id this plan is cached under cannot be reused while cached
        self.names = tuple(sorted(infos))
        self.keys = frozenset(self.names)
        by_dtype: dict[int, list[int]] = {}
        for index, name in enumerate(self.names):
            by_dtype.setdefault(infos[name].dtype, []).append(index)
        # Inputs of one dtype are checked and converted together: one array, one row per input.
        self.groups = tuple((dtype, tuple(indices)) for dtype, indices in by_dtype.items())


_PLANS: dict[int, _Plan] = {}
_MAX_PLANS = 64


def _plan(infos: Mapping) -> _Plan:
    """The cached `_Plan` of a signature's input map (reading protobuf maps per request is slow)."""
    plan = _PLANS.get(id(infos))
    if plan is None or plan.infos is not infos:
        plan = _Plan(infos)
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        _PLANS[id(infos)] = plan
    return plan


def _scalar_instances(instances: list, plan: _Plan) -> dict[str, np.ndarray] | None:
    """Tensors for the common row format (every instance one scalar per input), or None to take the
    general path, which also finds and words every error."""
    names = plan.names
    if type(instances[0]) is dict:
        if plan.keys == {"b64"}:
            return None  # {"b64": ...} is a binary value, not an object: the general path decides
        keys = plan.keys
        columns: list[list] = [[] for _ in names]
        for element in instances:
            if type(element) is not dict or element.keys() != keys:
                return None
            for column, name in zip(columns, names):
                column.append(element[name])
    elif len(names) == 1:
        columns = [instances]
    else:
        return None
    tensors = {}
    for dtype, indices in plan.groups:
        flat = [value for index in indices for value in columns[index]]
        if not _scalars_of(flat, dtype):
            return None
        if dtype == data_types.DT_STRING:
            flat = [value.encode("utf-8") for value in flat]
        rows = _array(flat, [len(indices), len(instances)], dtype)
        for row, index in enumerate(indices):
            tensors[names[index]] = rows[row]
    return tensors


def _scalars_of(column: list, dtype: int) -> bool:
    """Whether every value is a scalar `dtype` takes as it is (what `_converter` would pass unchanged)."""
    types = set(map(type, column))
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        return types == {int} and low <= min(column) and max(column) <= high
    if dtype in (data_types.DT_FLOAT, data_types.DT_DOUBLE):
        return types <= {int, float}
    if dtype == data_types.DT_STRING:
        return types == {str}
    if dtype == data_types.DT_BOOL:
        return types == {bool}
    return False


def _add_item(item: Any, name: str, dtype: int, shapes: dict, out: list) -> None:
    if not isinstance(item, list) and shapes.get(name) == []:
        out.append(_converter(dtype)(item))  # fast path: the usual scalar feature value
        return
    shape = _dense_shape(item, MAX_RANK - 1)  # the instances list adds one dimension
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
    tensors = {}  # keys the signature does not name are ignored, as TF Serving does
    for name in sorted(infos):
        if name not in inputs:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = _tensor(inputs[name], infos[name].dtype)
    return tensors


def _tensor(value: Any, dtype: int) -> np.ndarray:
    shape = _dense_shape(value, MAX_RANK)
    flat: list = []
    _fill(value, 0, shape, _converter(dtype), flat)
    return _array(flat, shape, dtype)


def _array(flat: list, shape: list[int], dtype: int) -> np.ndarray:
    if dtype == data_types.DT_STRING:
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
    elif dtype in _WRAPPED:
        array = np.asarray(flat, dtype=np.int64).astype(_NUMPY_TYPES[dtype])
    elif dtype == data_types.DT_FLOAT and flat and not (-_FLOAT32_MAX <= min(flat) and max(flat) <= _FLOAT32_MAX):
        # Out of float32's range (or NaN, which hides the range): overflow becomes +/-inf quietly.
        # min/max only ever return NaN or the true extreme of the other values, so no overflow slips by.
        with np.errstate(over="ignore"):
            array = np.asarray(flat, dtype=np.float32)
    else:  # converters range-checked integers, and a double never overflows: no numpy error possible
        array = np.asarray(flat, dtype=_NUMPY_TYPES[dtype])
    return array.reshape(shape)


def _dense_shape(value: Any, max_rank: int) -> list[int]:
    """The shape the first elements imply (TF Serving's GetDenseTensorShape), checked before any recursion."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if len(shape) > max_rank:
            raise invalid_argument(f"Shape {_shape_str(shape)}... has too many dimensions "
                                   f"(at most {max_rank} here)")
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
    if dtype == data_types.DT_STRING:
        def to_bytes(value):
            if isinstance(value, str):
                return value.encode("utf-8")
            if isinstance(value, dict):
                return decode_b64(value)
            raise _type_error(value, dtype)
        return to_bytes
    if dtype == data_types.DT_BOOL:
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
    if dtype in (data_types.DT_FLOAT, data_types.DT_DOUBLE):
        def to_float(value):  # any number; float32 overflow becomes +/-inf, as RapidJSON's GetFloat
            if type(value) is int or type(value) is float:
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


def decode_b64(value: dict) -> bytes:
    if not _is_b64(value):
        raise invalid_argument(f"JSON Value: {_show(value)} not formatted correctly for base64 data")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("Unable to base64 decode") from None


def _type_error(value: Any, dtype: int) -> ServingError:
    return invalid_argument(
        f"JSON Value: {_show(value)} Type: {_json_type(value)} is not of expected type: {dtype_name(dtype)}")


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return "Number"
    return {str: "String", list: "Array", dict: "Object"}[type(value)]


def _show(value: Any) -> str:
    return debug_string(value)


def _shape_str(shape: list[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


# -- RapidJSON-compatible parsing -----------------------------------------------------

class _NumberTooBig(ValueError):
    """A JSON number no double holds: json.loads hands over to the exact parser, which says where."""


def _parse_int(text: str) -> int | float:
    """RapidJSON keeps integers that fit int64/uint64 and makes the rest doubles."""
    value = int(text)
    if -2**63 <= value < 2**64:
        return value
    return _parse_float(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NumberTooBig(text)
    return value


def loads(body: bytes | str) -> Any:
    """JSON as TF Serving's RapidJSON reads it (iterative, NaN/Inf tokens, stops after the first value).

    The C parser handles the common case; anything it refuses (deep nesting, `Inf`,
    trailing data, errors) goes to `_RapidJsonParser`, which answers like RapidJSON.
    """
    try:
        return _json_loads(body)
    except (ValueError, RecursionError):
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        return _RapidJsonParser(text).parse()


_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float)


def _json_loads(body: bytes | str) -> Any:
    """json.loads(body, parse_int=_parse_int, parse_float=_parse_float), without a new decoder per call."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode(json.detect_encoding(body), "surrogatepass")
    elif body.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", body, 0)
    return _DECODER.decode(body)


_ERRORS = {
    "empty": "The document is empty.",
    "value": "Invalid value.",
    "name": "Missing a name for object member.",
    "colon": "Missing a colon after a name of object member.",
    "object": "Missing a comma or '}' after an object member.",
    "array": "Missing a comma or ']' after an array element.",
    "hex": "Incorrect hex digit after \\u escape in string.",
    "surrogate": "The surrogate pair in string is invalid.",
    "escape": "Invalid escape character in string.",
    "quote": "Missing a closing quotation mark in string.",
    "encoding": "Invalid encoding in string.",
    "big": "Number too big to be stored in double.",
    "fraction": "Miss fraction part in number.",
    "exponent": "Miss exponent in number.",
}
_WHITESPACE = " \t\n\r"
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)")


class _RapidJsonParser:
    """An iterative JSON parser with RapidJSON's flags (Iterative | NanAndInf | StopWhenDone) and errors."""

    def __init__(self, text: str):
        self._text = text
        self._pos = 0

    def _fail(self, kind: str, offset: int | None = None) -> ServingError:
        return invalid_argument(
            f"JSON Parse error: {_ERRORS[kind]} at offset: {self._pos if offset is None else offset}")

    def _skip(self) -> None:
        text, pos = self._text, self._pos
        while pos < len(text) and text[pos] in _WHITESPACE:
            pos += 1
        self._pos = pos

    def _peek(self) -> str:
        return self._text[self._pos] if self._pos < len(self._text) else ""

    def parse(self) -> Any:
        self._skip()
        if not self._peek():
            raise self._fail("empty")
        stack: list[tuple[Any, str | None]] = []  # (container, pending object key)
        while True:
            char = self._peek()
            if char == "{" or char == "[":
                self._pos += 1
                self._skip()
                container: Any = {} if char == "{" else []
                close = "}" if char == "{" else "]"
                if self._peek() == close:
                    self._pos += 1
                    value = container
                else:
                    key = self._key() if char == "{" else None
                    stack.append((container, key))
                    continue
            else:
                value = self._scalar()
            while True:  # attach the finished value, closing containers as they end
                if not stack:
                    return value  # kParseStopWhenDoneFlag: whatever follows is not read
                container, key = stack[-1]
                if isinstance(container, dict):
                    container[key] = value
                else:
                    container.append(value)
                self._skip()
                char = self._peek()
                if char == ",":
                    self._pos += 1
                    self._skip()
                    if isinstance(container, dict):
                        stack[-1] = (container, self._key())
                    break
                if char == ("}" if isinstance(container, dict) else "]"):
                    self._pos += 1
                    stack.pop()
                    value = container
                    continue
                raise self._fail("object" if isinstance(container, dict) else "array")

    def _key(self) -> str:
        if self._peek() != '"':
            raise self._fail("name")
        key = self._string()
        self._skip()
        if self._peek() != ":":
            raise self._fail("colon")
        self._pos += 1
        self._skip()
        return key

    def _scalar(self) -> Any:
        text, pos = self._text, self._pos
        char = self._peek()
        if char == '"':
            return self._string()
        for literal, value in (("true", True), ("false", False), ("null", None), ("NaN", math.nan),
                               ("Infinity", math.inf), ("-Infinity", -math.inf), ("Inf", math.inf),
                               ("-Inf", -math.inf)):
            if text.startswith(literal, pos):
                self._pos += len(literal)
                return value
        match = _NUMBER.match(text, pos)
        if match is None:
            raise self._fail("value")
        end, is_float = match.end(), False
        if text.startswith(".", end):
            is_float = True
            digits = re.match(r"[0-9]+", text[end + 1:end + 2])
            if digits is None:
                raise self._fail("fraction", end + 1)
            end = re.compile(r"\.[0-9]+").match(text, end).end()
        if end < len(text) and text[end] in "eE":
            is_float = True
            exponent = re.compile(r"[eE][+-]?[0-9]+").match(text, end)
            if exponent is None:
                raise self._fail("exponent", end + 1)
            end = exponent.end()
        self._pos = end
        try:
            return _parse_float(text[pos:end]) if is_float else _parse_int(text[pos:end])
        except _NumberTooBig:
            raise self._fail("big", pos) from None

    def _string(self) -> str:
        text, start = self._text, self._pos + 1
        parts, pos = [], start
        while True:
            end = pos
            while end < len(text) and text[end] not in '"\\' and text[end] >= " ":
                end += 1
            parts.append(text[pos:end])
            if end >= len(text) or text[end] == "\0":
                raise self._fail("quote", end)
            char = text[end]
            if char == '"':
                self._pos = end + 1
                return "".join(parts)
            if char < " ":
                raise self._fail("encoding", end)
            escape = text[end + 1:end + 2]
            if escape in _ESCAPES:
                parts.append(_ESCAPES[escape])
                pos = end + 2
            elif escape == "u":
                code, pos = self._hex4(end + 2)
                if 0xD800 <= code <= 0xDBFF:
                    if text[pos:pos + 2] != "\\u":
                        raise self._fail("surrogate", pos)
                    low, pos = self._hex4(pos + 2)
                    if not 0xDC00 <= low <= 0xDFFF:
                        raise self._fail("surrogate", pos - 4)
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                parts.append(chr(code))
            else:
                raise self._fail("escape", end + 1)

    def _hex4(self, pos: int) -> tuple[int, int]:
        digits = self._text[pos:pos + 4]
        if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise self._fail("hex", pos)
        return int(digits, 16), pos + 4


def debug_string(value: Any, limit: int = 256) -> str:
    """TF Serving's JsonValueToDebugString: compact JSON cut off once it reaches `limit` bytes.

    Iterative, so a document nested thousands deep costs no recursion.
    """
    out: list[str] = []
    size = 0
    stack: list[Any] = [value]
    while stack and size < limit:
        item = stack.pop()
        if isinstance(item, _Token):
            piece = item.text
        elif isinstance(item, dict):
            piece = "{"
            stack.append(_Token("}"))
            for index, (key, member) in reversed(list(enumerate(item.items()))):
                stack.append(member)
                stack.append(_Token(("," if index else "") + json.dumps(key) + ":"))
        elif isinstance(item, list):
            piece = "["
            stack.append(_Token("]"))
            for index, member in reversed(list(enumerate(item))):
                stack.append(member)
                if index:
                    stack.append(_Token(","))
        else:
            piece = _scalar_text(item)
        out.append(piece)
        size += len(piece.encode("utf-8"))
    return "".join(out)


class _Token:
    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def _scalar_text(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
    return json.dumps(value)


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
    from tensorflow.core.example import example_pb2  # imports TensorFlow: only classify/regress bodies need it
    example = example_pb2.Example()
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            _add_to_feature(item, name, feature)
    return example


def _add_to_feature(value: Any, name: str, feature: feature_pb2.Feature) -> None:
    """TF Serving's AddValueToFeature: bools and integers to int64_list, other numbers to float_list."""
    if isinstance(value, bool):
        _feature_list(feature, "int64_list", name).value.append(int(value))
    elif isinstance(value, int):  # the JSON parser made integers beyond uint64 doubles
        if value > 2**63 - 1:
            raise invalid_argument(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        _feature_list(feature, "int64_list", name).value.append(value)
    elif isinstance(value, float):
        with np.errstate(over="ignore"):  # float32 overflow becomes +/-inf, as RapidJSON's GetFloat
            _feature_list(feature, "float_list", name).value.append(float(np.float32(value)))
    elif isinstance(value, str):
        _feature_list(feature, "bytes_list", name).value.append(value.encode("utf-8"))
    elif _is_b64(value):
        _feature_list(feature, "bytes_list", name).value.append(decode_b64(value))
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
    columns = [_to_json(name, outputs[name]) for name in names]  # each a list of `batch` values
    if len(names) == 1:
        return {"predictions": columns[0]}
    return {"predictions": [dict(zip(names, row)) for row in zip(*columns)]}


def _to_json(name: str, array: np.ndarray) -> Any:
    char = array.dtype.char
    if char in "OSU":
        as_b64 = name.endswith("_bytes")
        return _nest([_string_out(value, as_b64) for value in array.ravel().tolist()], array.shape)
    if char in "efd":  # float16, float32, float64
        narrow = char != "d"
        return _nest([_tf_decimal(value, narrow) for value in array.ravel().tolist()], array.shape)
    return array.tolist()


def _nest(flat: list, shape: tuple[int, ...]) -> Any:
    """Row-major values as nested lists of `shape`, as ndarray.tolist() would give them."""
    if not shape:
        return flat[0]
    if 0 in shape:
        return np.zeros(shape).tolist()  # no values: only the empty lists' structure
    for size in reversed(shape[1:]):
        flat = [flat[start:start + size] for start in range(0, len(flat), size)]
    return flat


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
    return _tf_decimal(float(np.float32(value)), narrow=True)


def _tf_decimal(value: float, narrow: bool) -> float:
    """The number TF Serving's WriteDecimal prints: 6 significant digits ("%g") when they
    round-trip in the value's own precision, else 9 (float) or 17 (double) digits."""
    if not math.isfinite(value):
        return value  # written as NaN / Infinity / -Infinity
    back = float("%g" % value)
    if back == value or (narrow and _to_float32(back) == value):
        return back
    return float(("%.9g" if narrow else "%.17g") % value)


def _to_float32(value: float) -> float:
    """`value` rounded to float32 (as float(np.float32(value)), without a numpy scalar per number)."""
    try:
        return _FLOAT32.unpack(_FLOAT32.pack(value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)


_ENCODER = json.JSONEncoder(separators=(",", ":"))


def dumps(payload: Any) -> bytes:
    """JSON bytes; NaN/Infinity are written as TF Serving does (not strict JSON)."""
    return _ENCODER.encode(payload).encode("utf-8")
