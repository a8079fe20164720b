"""Predict, classify and regress with TF Serving's semantics, shared by REST and gRPC.

Classify and regress only run signatures whose method_name says so, with the
`inputs` (serialized tf.Example) input and `classes`/`scores` or `outputs`
outputs, exactly as TF Serving's classifier.cc and regressor.cc require.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
from serving.batching import Batcher
from serving.errors import failed_precondition, invalid_argument
from serving.servable import CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD, Servable


class InferenceService:
    """The model-facing half of the server; transports only translate formats."""

    def __init__(self, batcher: Batcher | None = None):
        self._batcher = batcher

    def predict(self, servable: Servable, signature_name: str, inputs: Mapping[str, np.ndarray],
                output_filter: Iterable[str] = ()) -> dict[str, np.ndarray]:
        signature = servable.signature_def(signature_name)
        wanted = list(output_filter)
        unknown = [name for name in wanted if name not in signature.outputs]
        if unknown:
            raise invalid_argument(
                f"output tensor alias not found in signature: {unknown[0]} Outputs expected to be in the "
                f"set {{{','.join(sorted(signature.outputs))}}}.")
        if self._batcher is not None:
            outputs = self._batcher.run(servable, signature_name, inputs)
        else:
            outputs = servable.run(signature_name, inputs)
        return {name: outputs[name] for name in wanted} if wanted else outputs

    def classify(self, servable: Servable, signature_name: str,
                 examples: list[bytes]) -> list[list[tuple[str, float]]]:
        """Per example, (label, score) pairs; a missing classes/scores output gives ""/0.0."""
        signature = _method_signature(servable, signature_name, CLASSIFY_METHOD, "classification")
        if len(signature.inputs) != 1:
            raise invalid_argument("Expected one input Tensor.")
        if len(signature.outputs) not in (1, 2):
            raise invalid_argument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
        if "inputs" not in signature.inputs:
            raise failed_precondition("No classification inputs found in SignatureDef")
        if "classes" not in signature.outputs and "scores" not in signature.outputs:
            raise failed_precondition(
                'Expected classification signature outputs to contain at least one of "classes" or "scores".')
        if not examples:
            raise invalid_argument("ClassificationRequest::input is empty.")
        outputs = servable.run(signature_name, {"inputs": np.array(examples, dtype=object)})
        classes, scores = outputs.get("classes"), outputs.get("scores")
        if classes is not None:
            _check_matrix("classes", classes, classes.dtype.kind in "OS", "DT_STRING", len(examples))
        if scores is not None:
            _check_matrix("scores", scores, scores.dtype == np.float32, "DT_FLOAT", len(examples))
        if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
            raise invalid_argument(
                f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. {scores.shape[1]}")
        num_classes = (classes if classes is not None else scores).shape[1]
        return [[(classes[i, c].decode("utf-8", errors="replace") if classes is not None else "",
                  float(scores[i, c]) if scores is not None else 0.0)
                 for c in range(num_classes)] for i in range(len(examples))]

    def regress(self, servable: Servable, signature_name: str, examples: list[bytes]) -> list[float]:
        signature = _method_signature(servable, signature_name, REGRESS_METHOD, "regression")
        if len(signature.inputs) != 1:
            raise invalid_argument("Expected one input Tensor.")
        if len(signature.outputs) != 1:
            raise invalid_argument("Expected one output Tensor.")
        if "inputs" not in signature.inputs:
            raise failed_precondition("No regression inputs found in SignatureDef")
        if "outputs" not in signature.outputs:
            raise failed_precondition("No regression outputs found in SignatureDef")
        if not examples:
            raise invalid_argument("RegressionRequest::input is empty.")
        values = servable.run(signature_name, {"inputs": np.array(examples, dtype=object)})["outputs"]
        if values.dtype != np.float32:
            raise invalid_argument(f"Expected output Tensor of DT_FLOAT. Got: {values.dtype}")
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1 or values.shape[0] != len(examples):
            raise invalid_argument(
                f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
                f"{list(values.shape)}")
        return [float(v) for v in values]


def _check_matrix(name: str, tensor: np.ndarray, dtype_ok: bool, dtype: str, batch: int) -> None:
    if tensor.ndim != 2:
        raise invalid_argument(f"Expected Tensor shape: [batch_size num_classes] but got {list(tensor.shape)}")
    if not dtype_ok:
        raise invalid_argument(f"Expected {name} Tensor of {dtype}. Got: {tensor.dtype}")
    if tensor.shape[0] != batch:
        raise invalid_argument(f"Expected {name} output batch size of {batch}. Got: {tensor.shape[0]}")


def _method_signature(servable: Servable, signature_name: str, method: str, kind: str):
    key = signature_name or DEFAULT_SIGNATURE
    if key not in servable.signature_defs or key.startswith("__"):
        raise invalid_argument(f"No signature was found with the name: {key}")
    signature = servable.signature_defs[key]
    if signature.method_name != method:
        raise invalid_argument(
            f"Expected {kind} signature method_name to be {method}. Was: {signature.method_name}")
    return signature
