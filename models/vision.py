"""Keras image model builders: the lecture's small CNN and VGG16 transfer learning.

Both take the Transform's image output (see `models.images`), end in the task's
probability head from `models.heads` and are compiled by `heads.compile_for_task`,
so logits and loss always agree. The trainer calls them inside `strategy.scope()`.
"""
from __future__ import annotations

import pathlib
from typing import Any, Mapping

import tensorflow as tf
import tensorflow_transform as tft

from models import heads
from models.images import ImageOptions
from specs.dataset import DatasetSpec

VGG16_FINE_TUNE_BLOCK = "block5"


def image_input(spec: DatasetSpec, tf_transform_output: tft.TFTransformOutput,
                hparams: Mapping[str, Any]) -> tuple[tf.keras.Input, ImageOptions]:
    """The model's image input, checked against what the Transform actually produced."""
    if not spec.image_feature:
        raise ValueError(f"{spec.name}: builder {hparams.get('builder')!r} needs an image feature (features.image)")
    options = ImageOptions.from_model(hparams)
    produced = tf_transform_output.transformed_feature_spec()[spec.image_feature].shape
    if tuple(produced) != options.shape:
        raise ValueError(f"{spec.name}: the Transform produced images of shape {tuple(produced)} but "
                         f"{options.builder} expects {options.shape}; builder and image_size must be the same "
                         "for Transform and Trainer (re-run the pipeline after changing them)")
    return tf.keras.Input(shape=options.shape, name=spec.image_feature, dtype=tf.float32), options


def build_cnn(spec: DatasetSpec, tf_transform_output: tft.TFTransformOutput,
              hparams: Mapping[str, Any]) -> tf.keras.Model:
    """The lecture's CNN: Conv32-Conv64-MaxPool-Dropout-Dense128-Dropout-head."""
    inputs, _ = image_input(spec, tf_transform_output, hparams)
    x = tf.keras.layers.Conv2D(32, 3, activation="relu", name="conv_32")(inputs)
    x = tf.keras.layers.Conv2D(64, 3, activation="relu", name="conv_64")(x)
    x = tf.keras.layers.MaxPooling2D(2, name="pool")(x)
    x = tf.keras.layers.Dropout(0.25, name="dropout_conv")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = tf.keras.layers.Dense(128, activation="relu", name="dense_128")(x)
    x = tf.keras.layers.Dropout(0.5, name="dropout_dense")(x)
    model = tf.keras.Model(inputs, heads.output_layer(spec)(x), name=f"{spec.name}_cnn")
    return heads.compile_for_task(model, spec, float(hparams.get("learning_rate", 1e-3)))


def vgg16_weights(value: str | None) -> str | None:
    """`imagenet` (downloaded by Keras), a local .h5 weights file (no top), or none (random init)."""
    if value in (None, "", "none", "None"):
        return None
    if value == "imagenet":
        return "imagenet"
    path = pathlib.Path(value).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model.weights {value!r} is neither 'imagenet', 'none' nor an existing weights file; "
                                "give the path of vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    return str(path)


def vgg16_base(options: ImageOptions, weights: str | None) -> tf.keras.Model:
    try:
        return tf.keras.applications.VGG16(include_top=False, weights=vgg16_weights(weights),
                                           input_shape=options.shape)
    except Exception as e:  # Keras reports a failed download as URL/HTTP/OS errors
        if weights != "imagenet":
            raise
        raise RuntimeError(f"could not load the ImageNet VGG16 weights ({type(e).__name__}: {e}); without internet "
                           "copy vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 into ~/.keras/models/ or set "
                           "model.weights to its path (or 'none' for random weights)") from e


def build_vgg16(spec: DatasetSpec, tf_transform_output: tft.TFTransformOutput,
                hparams: Mapping[str, Any]) -> tf.keras.Model:
    """VGG16 transfer learning: frozen convolutional base, global average pooling, Dense head."""
    inputs, options = image_input(spec, tf_transform_output, hparams)
    base = vgg16_base(options, hparams.get("weights", "imagenet"))
    base.trainable = False
    x = base(inputs, training=False)
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = tf.keras.layers.Dense(int(hparams.get("head_units", 256)), activation="relu", name="head_dense")(x)
    x = tf.keras.layers.Dropout(float(hparams.get("dropout", 0.3)), name="head_dropout")(x)
    model = tf.keras.Model(inputs, heads.output_layer(spec)(x), name=f"{spec.name}_vgg16")
    return heads.compile_for_task(model, spec, float(hparams.get("learning_rate", 1e-3)))


def unfreeze_for_fine_tuning(model: tf.keras.Model, spec: DatasetSpec, hparams: Mapping[str, Any]) -> int:
    """Second phase of transfer learning: unfreeze VGG16's last block, recompile at a lower rate.

    Returns the number of fine-tuning epochs (model.fine_tune_epochs, 0 = no phase);
    call under the strategy scope.
    """
    epochs = int(hparams.get("fine_tune_epochs", 0))
    if not epochs or hparams.get("builder") != "vgg16":
        return 0
    base = model.get_layer("vgg16")
    base.trainable = True
    for layer in base.layers:
        layer.trainable = layer.name.startswith(VGG16_FINE_TUNE_BLOCK)
    learning_rate = float(hparams.get("fine_tune_learning_rate", float(hparams.get("learning_rate", 1e-3)) / 10))
    heads.compile_for_task(model, spec, learning_rate)
    return epochs
