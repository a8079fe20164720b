"""Keras image model builders: the lecture's small CNN and ImageNet transfer learning.

Every image model takes 0..255 float pixels (decoded by `models.images`) and
starts with `BackbonePreprocessing`, the backbone's own input scaling, so the
served model scales exactly as training did. Transfer models are a frozen
backbone (`models.backbones`), global average pooling and a Dense head;
`fine_tune_epochs` then unfreezes the backbone's last block. All end in the
task's probability head from `models.heads` and are compiled by
`heads.compile_for_task`, so logits and loss always agree. The trainer calls
them inside `strategy.scope()`.
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tensorflow_transform as tft

from models import backbones, heads
from models.images import ImageOptions
from specs.dataset import DatasetSpec


def image_input(spec: DatasetSpec, tf_transform_output: tft.TFTransformOutput,
                hparams: Mapping[str, Any]) -> tuple[tf.keras.Input, tf.Tensor, ImageOptions]:
    """The model's pixel input and its preprocessed form; the Transform must pass encoded images through."""
    if not spec.image_feature:
        raise ValueError(f"{spec.name}: builder {hparams.get('builder')!r} needs an image feature (features.image)")
    options = ImageOptions.from_model(hparams)
    produced = tf_transform_output.transformed_feature_spec()[spec.image_feature]
    if produced.dtype != tf.string:
        raise ValueError(f"{spec.name}: the Transform output {spec.image_feature!r} is {produced.dtype.name}, not "
                         "encoded image bytes; this Transform graph is from an older version, re-run with --no-cache")
    inputs = tf.keras.Input(shape=options.shape, name=spec.image_feature, dtype=tf.float32)
    scaled = backbones.BackbonePreprocessing(options.builder, backbones.preprocessing_mode(hparams),
                                             name="preprocess_input")(inputs)
    return inputs, scaled, options


def build_cnn(spec: DatasetSpec, tf_transform_output: tft.TFTransformOutput,
              hparams: Mapping[str, Any]) -> tf.keras.Model:
    """The lecture's CNN: Conv32-Conv64-MaxPool-Dropout-Dense128-Dropout-head."""
    inputs, x, _ = image_input(spec, tf_transform_output, hparams)
    x = tf.keras.layers.Conv2D(32, 3, activation="relu", name="conv_32")(x)
    x = tf.keras.layers.Conv2D(64, 3, activation="relu", name="conv_64")(x)
    x = tf.keras.layers.MaxPooling2D(2, name="pool")(x)
    x = tf.keras.layers.Dropout(0.25, name="dropout_conv")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = tf.keras.layers.Dense(128, activation="relu", name="dense_128")(x)
    x = tf.keras.layers.Dropout(0.5, name="dropout_dense")(x)
    model = tf.keras.Model(inputs, heads.output_layer(spec)(x), name=f"{spec.name}_cnn")
    return heads.compile_for_task(model, spec, float(hparams.get("learning_rate", 1e-3)))


def build_transfer(spec: DatasetSpec, tf_transform_output: tft.TFTransformOutput,
                   hparams: Mapping[str, Any]) -> tf.keras.Model:
    """Transfer learning: frozen ImageNet backbone, global average pooling, Dense head."""
    inputs, x, options = image_input(spec, tf_transform_output, hparams)
    base = backbones.build_base(options.builder, options.shape, hparams.get("weights", "imagenet"))
    base.trainable = False
    x = base(x, training=False)  # batch norm stays in inference mode, also when fine-tuning
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = tf.keras.layers.Dense(int(hparams.get("head_units", 256)), activation="relu", name="head_dense")(x)
    x = tf.keras.layers.Dropout(float(hparams.get("dropout", 0.3)), name="head_dropout")(x)
    model = tf.keras.Model(inputs, heads.output_layer(spec)(x), name=f"{spec.name}_{options.builder}")
    return heads.compile_for_task(model, spec, float(hparams.get("learning_rate", 1e-3)))


def unfreeze_for_fine_tuning(model: tf.keras.Model, spec: DatasetSpec, hparams: Mapping[str, Any]) -> int:
    """Second phase of transfer learning: unfreeze the backbone's last block, recompile at a lower rate.

    Returns the number of fine-tuning epochs (model.fine_tune_epochs, 0 = no phase);
    call under the strategy scope.
    """
    epochs = int(hparams.get("fine_tune_epochs", 0))
    builder = hparams.get("builder")
    if not epochs or builder not in backbones.TRANSFER_BACKBONES:
        return 0
    backbones.unfreeze_last_block(model.get_layer(builder), builder)
    learning_rate = float(hparams.get("fine_tune_learning_rate", float(hparams.get("learning_rate", 1e-3)) / 10))
    heads.compile_for_task(model, spec, learning_rate)
    return epochs
