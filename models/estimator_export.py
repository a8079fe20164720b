"""Exports an Estimator with the same serving interface as a Keras model.

Whatever trained it, a pushed model answers `serving_default` (one raw [None]
input per feature, what a REST client sends) and `serving_tf_example` (input
`examples`, what TFMA and batch scoring send), both running the Transform graph
and returning `heads.prediction_outputs`. Estimators also get TF Serving's
`classification` / `regression` signatures over serialized examples.
"""
from __future__ import annotations

import os
from typing import Callable, Mapping

import tensorflow as tf
import tensorflow_transform as tft

from models import heads, images
from models.assets_extra import write_assets_extra
from models.saved_model_pb import edit_signatures
from models.signatures import raw_serving_spec
from specs.dataset import DatasetSpec

EXAMPLES_RECEIVER = "serving_tf_example"
DEFAULT_KEY = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY

# From an estimator's PREDICT-mode predictions to the tensor a Keras head of the
# same task outputs: [B, 1] positive probability, [B, K] probabilities, [B, 1] value.
HeadOutputFn = Callable[[Mapping[str, tf.Tensor]], tf.Tensor]
ModelFn = Callable[..., tf.estimator.EstimatorSpec]


def serving_input_receiver_fn(spec: DatasetSpec, tf_transform_output: tft.TFTransformOutput,
                              image_options: images.ImageOptions | None = None
                              ) -> Callable[[], tf.estimator.export.ServingInputReceiver]:
    """Raw named inputs by default, serialized tf.Examples as the alternative receiver.

    Each raw input defaults to the value parsed from `examples`, so one graph
    serves both: feeding raw inputs cuts the parsing path off, feeding `examples`
    fills the raw inputs from it. Either way the Transform graph runs in the model.
    """
    def receiver_fn() -> tf.estimator.export.ServingInputReceiver:
        feature_spec = raw_serving_spec(spec, tf_transform_output)
        examples = tf.compat.v1.placeholder(tf.string, [None], name="examples")
        parsed = tf.io.parse_example(examples, feature_spec)
        raw = {name: tf.compat.v1.placeholder_with_default(tf.reshape(parsed[name], [-1]), [None], name=name)
               for name in feature_spec}
        # The schema declares shape [1] per feature; REST rows give scalars.
        batched = {name: tf.reshape(value, [-1, 1]) for name, value in raw.items()}
        transformed = tf_transform_output.transform_raw_features(batched, drop_unused_features=True)
        transformed = images.decode_features(transformed, spec.image_feature, image_options)  # as in training
        return tf.estimator.export.ServingInputReceiver(
            features=transformed, receiver_tensors=raw,
            receiver_tensors_alternatives={EXAMPLES_RECEIVER: {"examples": examples}})
    return receiver_fn


def _export_outputs(spec: DatasetSpec, outputs: Mapping[str, tf.Tensor]) -> dict:
    export_outputs = {DEFAULT_KEY: tf.estimator.export.PredictOutput(dict(outputs))}
    if spec.task == "regression":
        export_outputs["regression"] = tf.estimator.export.RegressionOutput(outputs["predictions"])
    else:
        export_outputs["classification"] = tf.estimator.export.ClassificationOutput(
            scores=outputs["probabilities"], classes=heads.all_classes(spec, outputs["probabilities"]))
    return export_outputs


def served_model_fn(model_fn: ModelFn, spec: DatasetSpec, head_output: HeadOutputFn,
                    threshold: float = 0.5) -> ModelFn:
    """`model_fn` whose PREDICT mode returns exactly the Keras models' served outputs (`threshold`: binary
    class decision, see heads.prediction_outputs)."""
    def wrapped(features, labels, mode, config):
        estimator_spec = model_fn(features, labels, mode, config)
        if mode != tf.estimator.ModeKeys.PREDICT:
            return estimator_spec
        outputs = heads.prediction_outputs(spec, head_output(estimator_spec.predictions), threshold)
        return estimator_spec._replace(predictions=outputs, export_outputs=_export_outputs(spec, outputs))
    return wrapped


def _rename_signatures(saved_model_dir: str) -> None:
    """`serving_tf_example:serving_default` -> `serving_tf_example`, `serving_tf_example:X` -> `X`.

    Estimators name an alternative receiver's signatures `<receiver>:<output>`;
    clients and TFMA expect the names Keras exports use.
    """
    def rename(meta_graph) -> None:
        signatures = meta_graph.signature_def
        for name in [n for n in signatures if n.startswith(f"{EXAMPLES_RECEIVER}:")]:
            output = name.split(":", 1)[1]
            signatures[EXAMPLES_RECEIVER if output == DEFAULT_KEY else output].CopyFrom(signatures[name])
            del signatures[name]

    edit_signatures(saved_model_dir, rename)


def export_estimator(estimator: tf.estimator.Estimator, spec: DatasetSpec, head_output: HeadOutputFn,
                     tf_transform_output: tft.TFTransformOutput, checkpoint_path: str, export_dir: str,
                     image_options: images.ImageOptions | None = None, threshold: float = 0.5) -> str:
    """Exports `checkpoint_path` so that `export_dir` itself holds the SavedModel.

    `export_saved_model` writes a timestamped subdirectory; TFX's Evaluator and
    Pusher read the SavedModel at `fn_args.serving_model_dir`, so it is moved there.
    """
    exporter = tf.estimator.Estimator(
        model_fn=served_model_fn(estimator.model_fn, spec, head_output, threshold),
        model_dir=estimator.model_dir, config=estimator.config)
    staging = os.path.join(estimator.model_dir, "export")
    timestamped = exporter.export_saved_model(
        staging, serving_input_receiver_fn(spec, tf_transform_output, image_options), checkpoint_path=checkpoint_path)
    timestamped = timestamped.decode() if isinstance(timestamped, bytes) else timestamped
    _rename_signatures(timestamped)
    tf.io.gfile.makedirs(os.path.dirname(export_dir.rstrip("/")))
    if tf.io.gfile.exists(export_dir):
        tf.io.gfile.rmtree(export_dir)
    tf.io.gfile.rename(timestamped, export_dir)
    write_assets_extra(export_dir, spec, tf_transform_output)
    return export_dir
