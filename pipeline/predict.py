"""Local predictions from a pushed model: what `python -m pipeline predict` prints."""
from __future__ import annotations

import base64
import pathlib
from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from components.pusher import latest_version_dir


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
            return base64.b64decode(value["b64"], validate=True)
        except (TypeError, ValueError) as e:
            raise ValueError(f"invalid base64 in {{'b64': ...}}: {e}") from e
    return value


def to_inputs(signature: Any, instances: list[Mapping[str, Any]]) -> dict[str, tf.Tensor]:
    """Columns of typed tensors from row-format instances; names the bad or missing input."""
    specs = signature.structured_input_signature[1]
    unknown = sorted({k for row in instances for k in row} - set(specs))
    if unknown:
        raise ValueError(f"unknown inputs {unknown}; the model takes {sorted(specs)}")
    inputs = {}
    for name, spec in specs.items():
        missing = [i for i, row in enumerate(instances) if name not in row]
        if missing:
            raise ValueError(f"instance {missing[0]} lacks input {name!r}")
        try:
            inputs[name] = tf.constant([binary_value(row[name]) for row in instances], dtype=spec.dtype)
        except (TypeError, ValueError) as e:
            raise ValueError(f"input {name!r} must be {spec.dtype.name}: {e}") from e
    return inputs


def to_json(outputs: Mapping[str, tf.Tensor]) -> list[dict[str, Any]]:
    """Row format, as TF Serving's REST API answers `instances` requests."""
    columns = {k: v.numpy() for k, v in outputs.items()}
    rows = len(next(iter(columns.values())))

    def plain(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode("utf-8")
        if isinstance(value, np.ndarray):
            return [plain(v) for v in value]
        return value.item() if isinstance(value, np.generic) else value

    return [{k: plain(v[i]) for k, v in columns.items()} for i in range(rows)]


def predict(model_dir: pathlib.Path, instances: list[Mapping[str, Any]],
            signature_name: str = "serving_default") -> list[dict[str, Any]]:
    model = tf.saved_model.load(str(model_dir))
    signature = model.signatures[signature_name]
    return to_json(signature(**to_inputs(signature, instances)))
