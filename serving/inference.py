"""Predict, classify and regress with TF Serving's semantics, shared by REST and gRPC.

Classify and regress run any signature shaped for them (one `inputs` tensor of
serialized tf.Example, `classes`/`scores` or `outputs` outputs), as TF Serving's
classifier.cc and regressor.cc do by default. Its
`--enable_signature_method_name_check` also demands the matching method_name.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import tensorflow as tf

from serving.batching import Batcher
from serving.errors import Code, ServingError, invalid_argument
from serving.servable import (CLASSIFY_METHOD, DEFAULT_SIGNATURE, PREDICT_METHOD, REGRESS_METHOD, Servable,
                              signature_text)


class InferenceService:
    """The model-facing half of the server; transports only translate formats."""

    def __init__(self, batcher: Batcher | None = None, method_name_check: bool = False):
        self._batcher = batcher
        self._method_name_check = method_name_check

    def predict(self, servable: Servable, signature_name: str, inputs: Mapping[str, np.ndarray],
                output_filter: Iterable[str] = ()) -> dict[str, np.ndarray]:
        signature = servable.signature_def(signature_name)
        if self._method_name_check and signature.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
            raise ServingError(Code.INTERNAL,
                               f"Expected prediction signature method_name to be one of {{{PREDICT_METHOD}, "
                               f"{CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: {signature.method_name}")
        wanted = list(output_filter)
        unknown = [name for name in wanted if name not in signature.outputs]
        if unknown:
            raise invalid_argument(
                f"output tensor alias not found in signature: {unknown[0]} Outputs expected to be in the "
                f"set {{{','.join(sorted(signature.outputs))}}}.")
        if self._batcher is None:
            outputs = servable.run(signature_name, inputs, wanted)  # fetches only the filtered outputs, as TF Serving
        else:
            outputs = self._batcher.run(servable, signature_name, inputs)
            outputs = {name: outputs[name] for name in wanted} if wanted else outputs
        return outputs

    def classify(self, servable: Servable, signature_name: str,
                 examples: list[bytes]) -> list[list[tuple[str, float]]]:
        """Per example, (label, score) pairs; a missing classes/scores output gives ""/0.0."""
        return self.multi_inference(servable, [(signature_name, CLASSIFY_METHOD)], examples)[0]

    def regress(self, servable: Servable, signature_name: str, examples: list[bytes]) -> list[float]:
        return self.multi_inference(servable, [(signature_name, REGRESS_METHOD)], examples)[0]

    def multi_inference(self, servable: Servable, tasks: list[tuple[str, str]], examples: list[bytes]) -> list:
        """Classify/regress tasks (signature name, method name) over one set of examples, in one graph run.

        Each result is what `classify` or `regress` returns for its task.
        """
        inputs, fetches, plans = set(), {}, []
        for signature_name, method in tasks:
            key = signature_name or DEFAULT_SIGNATURE
            if any(key == seen for seen, _ in plans):
                raise invalid_argument(f"Duplicate evaluation of signature: {key}")
            if method == CLASSIFY_METHOD:
                signature = self._signature(servable, key, CLASSIFY_METHOD, "classification")
                input_name, outputs = _classification_tensors(signature)
            elif method == REGRESS_METHOD:
                signature = self._signature(servable, key, REGRESS_METHOD, "regression")
                input_name, outputs = _regression_tensors(signature)
            else:
                raise ServingError(Code.UNIMPLEMENTED, f"Unsupported signature method_name: {method}")
            inputs.add(input_name)
            fetches.update({signature.outputs[alias].name: None for alias in outputs})
            plans.append((key, method))
        if not examples:
            raise invalid_argument("Input is empty.")
        batch = np.array(examples, dtype=object)
        values = dict(zip(fetches, servable.run_tensors({name: batch for name in inputs}, list(fetches))))
        results = []
        for key, method in plans:
            signature = servable.signature_defs[key]
            by_alias = {alias: values[info.name] for alias, info in signature.outputs.items() if info.name in values}
            if method == CLASSIFY_METHOD:
                results.append(_classifications(by_alias, len(examples)))
            else:
                results.append(_regressions(by_alias["outputs"], len(examples)))
        return results

    def _signature(self, servable: Servable, signature_name: str, method: str, kind: str):
        """The named signature; its method_name must match only with --enable_signature_method_name_check."""
        key = signature_name or DEFAULT_SIGNATURE
        if key not in servable.signature_defs or key.startswith("__"):
            raise invalid_argument(f"No signature was found with the name: {key}")
        signature = servable.signature_defs[key]
        if self._method_name_check and signature.method_name != method:
            raise invalid_argument(
                f"Expected {kind} signature method_name to be {method}. Was: {signature.method_name}")
        return signature


def _classification_tensors(signature) -> tuple[str, list[str]]:
    """TF Serving's PreProcessClassification: the input tensor name and the output aliases to fetch."""
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise invalid_argument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if "inputs" not in signature.inputs:
        raise invalid_argument(f"No classification inputs found in SignatureDef: {signature_text(signature)}")
    outputs = [name for name in ("classes", "scores") if name in signature.outputs]
    if not outputs:
        raise invalid_argument(
            'Expected classification signature outputs to contain at least one of "classes" or "scores". '
            f"Signature was: {signature_text(signature)}")
    return signature.inputs["inputs"].name, outputs


def _regression_tensors(signature) -> tuple[str, list[str]]:
    """TF Serving's PreProcessRegression."""
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if "inputs" not in signature.inputs:
        raise invalid_argument(f"No regression inputs found in SignatureDef: {signature_text(signature)}")
    if "outputs" not in signature.outputs:
        raise invalid_argument(f"No regression outputs found in SignatureDef: {signature_text(signature)}")
    return signature.inputs["inputs"].name, ["outputs"]


def _classifications(outputs: Mapping[str, np.ndarray], batch: int) -> list[list[tuple[str, float]]]:
    """TF Serving's PostProcessClassificationResult."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    if classes is not None:
        _check_matrix("classes", classes, classes.dtype.kind in "OS", "DT_STRING", batch)
    if scores is not None:
        _check_matrix("scores", scores, scores.dtype == np.float32, "DT_FLOAT", batch)
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid_argument(
            f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. {scores.shape[1]}")
    num_classes = (classes if classes is not None else scores).shape[1]
    return [[(classes[i, c].decode("utf-8", errors="replace") if classes is not None else "",
              float(scores[i, c]) if scores is not None else 0.0)
             for c in range(num_classes)] for i in range(batch)]


def _regressions(values: np.ndarray, batch: int) -> list[float]:
    """TF Serving's PostProcessRegressionResult."""
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise invalid_argument(
            f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {_shape_text(values)}")
    if values.shape[0] != batch:
        raise invalid_argument(f"Input batch size did not match output batch size: {batch} vs. {values.shape[0]}")
    if values.dtype != np.float32:
        raise invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_text(values)}")
    return [float(v) for v in values.reshape(-1)]


def _shape_text(tensor: np.ndarray) -> str:
    return "[" + ",".join(str(d) for d in tensor.shape) + "]"


def _dtype_text(tensor: np.ndarray) -> str:
    return "DT_STRING" if tensor.dtype.kind in "OSU" else "DT_" + tf.dtypes.as_dtype(tensor.dtype).name.upper()


def _check_matrix(name: str, tensor: np.ndarray, dtype_ok: bool, dtype: str, batch: int) -> None:
    if tensor.ndim != 2:
        raise invalid_argument(f"Expected Tensor shape: [batch_size num_classes] but got {_shape_text(tensor)}")
    if not dtype_ok:
        raise invalid_argument(f"Expected {name} Tensor of {dtype}. Got: {_dtype_text(tensor)}")
    if tensor.shape[0] != batch:
        raise invalid_argument(f"Expected {name} output batch size of {batch}. Got: {tensor.shape[0]}")
