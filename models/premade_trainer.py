"""Trainer mode `premade`: tf.estimator's DNNClassifier / DNNRegressor on the Transform output.

Feature columns read the transformed features: z-scored numerics as numeric
columns, vocabulary ids one-hot encoded (with the out-of-vocabulary bucket), the
same inputs the Keras builder sees. Exported with the common serving interface.
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from models import estimator_export, estimator_fit
from models.preprocessing import OOV_BUCKETS, vocabulary_name
from specs.dataset import DatasetSpec


def feature_columns(spec: DatasetSpec, tf_transform_output: tft.TFTransformOutput) -> list:
    if spec.image_feature:
        raise ValueError(f"{spec.name}: the premade trainer takes tabular features only; "
                         "use --trainer keras for image data")
    columns = [tf.feature_column.numeric_column(name, shape=(1,)) for name in spec.numeric_features]
    for name in spec.categorical_features:
        buckets = tf_transform_output.vocabulary_size_by_name(vocabulary_name(name)) + OOV_BUCKETS
        columns.append(tf.feature_column.indicator_column(
            tf.feature_column.categorical_column_with_identity(name, num_buckets=buckets)))
    return columns


def make_estimator(spec: DatasetSpec, tf_transform_output: tft.TFTransformOutput, hparams: Mapping[str, Any],
                   config: tf.estimator.RunConfig) -> tf.estimator.Estimator:
    learning_rate = float(hparams.get("learning_rate", 1e-3))
    # A factory, not an instance: every train/evaluate call builds a new graph and
    # an optimizer's variables belong to the graph that created them.
    common = dict(hidden_units=list(hparams.get("hidden_units", (128, 64, 32))),
                  feature_columns=feature_columns(spec, tf_transform_output),
                  optimizer=lambda: tf.keras.optimizers.legacy.Adam(learning_rate=learning_rate),
                  config=config)
    if spec.task == "regression":
        return tf.estimator.DNNRegressor(**common)
    return tf.estimator.DNNClassifier(n_classes=spec.num_classes, **common)


def head_output(spec: DatasetSpec):
    """Premade predictions -> what the Keras head of the task outputs (see heads.output_layer)."""
    if spec.task == "regression":
        return lambda predictions: predictions["predictions"]
    if spec.task == "binary_classification":
        return lambda predictions: predictions["probabilities"][:, 1:2]
    return lambda predictions: predictions["probabilities"]


def train(fn_args: FnArgs, spec: DatasetSpec, hparams: Mapping[str, Any]) -> None:
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    estimator = make_estimator(spec, tf_transform_output, hparams, estimator_fit.run_config(fn_args, hparams))
    input_fns = estimator_fit.input_fns(fn_args, spec, tf_transform_output, hparams)
    checkpoint = estimator_fit.fit(estimator, *input_fns, hparams)
    threshold = estimator_fit.operating_threshold(estimator, input_fns[1], head_output(spec), checkpoint, hparams)
    estimator_export.export_estimator(estimator, spec, head_output(spec), tf_transform_output, checkpoint,
                                      fn_args.serving_model_dir, threshold=threshold)
