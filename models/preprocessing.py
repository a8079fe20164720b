"""tf.Transform preprocessing_fn driven by the data set spec.

Runs inside Transform (analysis on the train split only, so eval statistics never
leak into the scaler) and again inside the served model through the Transform
graph, so training and serving apply the same code.
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tensorflow_transform as tft

from specs.dataset import DatasetSpec

OOV_BUCKETS = 1


def vocabulary_name(feature: str) -> str:
    return f"vocab_{feature}"


def _dense(value: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    """[batch, 1] dense tensor; the curated schemas give each feature shape [1]."""
    if isinstance(value, tf.SparseTensor):
        default = "" if value.dtype == tf.string else 0
        value = tf.sparse.to_dense(value, default_value=default)
    return value


def transform_label(spec: DatasetSpec, label: tf.Tensor) -> tf.Tensor:
    if spec.is_classification:
        if label.dtype == tf.string:
            raise ValueError(f"{spec.name}: label {spec.label!r} must be integer class ids")
        return tf.cast(label, tf.int64)
    return tf.cast(label, tf.float32)


def z_scores(features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Each feature z-scored with its own train-split mean and variance.

    Features of one value per example are scaled as the columns of one [batch, k] tensor with
    a single element-wise analyser: one mean-and-variance pass in Transform's Beam pipeline and
    one in its graph for all of them, not one per feature (churn has eight such features, digits
    64). Features of another or unknown width keep their own analyser. A feature's scaled value
    depends on its own value only, but the graph takes all of these features as inputs to give
    any one of them (the served signatures always pass every feature)."""
    columns = [name for name, value in features.items() if value.shape.rank == 2 and value.shape[1] == 1]
    scaled = {name: tft.scale_to_z_score(value) for name, value in features.items() if name not in columns}
    if columns:
        stacked = tft.scale_to_z_score(tf.concat([features[name] for name in columns], axis=1), elementwise=True)
        scaled.update({name: stacked[:, index:index + 1] for index, name in enumerate(columns)})
    return {name: scaled[name] for name in features}


def preprocessing_fn(inputs: Mapping[str, Any], custom_config: Mapping[str, Any]) -> dict[str, tf.Tensor]:
    """z-score numeric features, vocabulary-encode categorical ones, pass images (encoded) and the label."""
    spec = DatasetSpec.from_dict(custom_config["spec"])
    outputs: dict[str, tf.Tensor] = {}
    outputs.update(z_scores({name: tf.cast(_dense(inputs[name]), tf.float32) for name in spec.numeric_features}))
    for name in spec.categorical_features:
        outputs[name] = tft.compute_and_apply_vocabulary(
            _dense(inputs[name]), num_oov_buckets=OOV_BUCKETS, vocab_filename=vocabulary_name(name))
    if spec.image_feature:  # kept encoded: decoded per batch by the Trainer's input pipeline and the served graph
        outputs[spec.image_feature] = _dense(inputs[spec.image_feature])
    if spec.label in inputs:
        outputs[spec.label] = transform_label(spec, _dense(inputs[spec.label]))
    return outputs
