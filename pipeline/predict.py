"""Local predictions from a pushed model: what `python -m pipeline predict` prints.

The model is loaded and called exactly as the model server does (serving.servable),
and instances are read with the server's JSON codec (TF Serving's rules: dtypes,
{"b64": ...} strings, error wording), so a row that works here works over REST.
"""
from __future__ import annotations

import pathlib
from types import SimpleNamespace
from typing import Any, Mapping

import tensorflow as tf

from components.pusher import latest_version_dir
from serving import custom_ops
from serving import json_codec
from serving.errors import ServingError
from serving.servable import DEFAULT_SIGNATURE, Servable


def latest_version(base: pathlib.Path) -> pathlib.Path:
    """Newest complete version dir under a TF Serving model base path."""
    latest = latest_version_dir(str(base))
    if latest is None:
        raise FileNotFoundError(f"no pushed model under {base}; run `python -m pipeline run` first")
    return pathlib.Path(latest)


def binary_value(value: Any) -> Any:
    """TF Serving's REST form of binary strings (e.g. encoded images): {"b64": "<base64>"}."""
    if isinstance(value, Mapping) and set(value) == {"b64"}:
        try:
            return json_codec.decode_b64(dict(value))
        except ServingError as e:
            raise ValueError(f"invalid base64 in {{'b64': ...}}: {e.message}") from e
    return value


def to_inputs(signature: Any, instances: list[Mapping[str, Any]]) -> dict[str, tf.Tensor]:
    """Typed tensors for a signature function from row-format instances, read by the server's codec."""
    specs = signature.structured_input_signature[1]
    infos = {name: SimpleNamespace(dtype=spec.dtype.as_datatype_enum) for name, spec in specs.items()}
    try:
        arrays, _ = json_codec.predict_inputs({"instances": list(instances)}, infos)
    except ServingError as e:
        raise ValueError(e.message) from e
    return {name: tf.constant(array, dtype=specs[name].dtype) for name, array in arrays.items()}


def predict(model_dir: pathlib.Path, instances: list[Mapping[str, Any]],
            signature_name: str = DEFAULT_SIGNATURE) -> list[dict[str, Any]]:
    """One {output: value} object per instance, values written as TF Serving's REST API writes them."""
    custom_ops.register_ops_for(str(model_dir))  # a TF-DF model (trainer tfdf) needs TF-DF's ops to load
    servable = Servable.load("predict", 0, str(model_dir))
    try:
        inputs, _ = json_codec.predict_inputs({"instances": list(instances)},
                                              servable.signature_def(signature_name).inputs)
        outputs = servable.run(signature_name, inputs)
    except ServingError as e:
        raise ValueError(e.message) from e
    finally:
        servable.close()
    columns = {name: json_codec.predict_response({name: value}, json_codec.COLUMNAR)["outputs"]
               for name, value in outputs.items()}
    return [{name: columns[name][i] for name in sorted(columns)} for i in range(len(instances))]
