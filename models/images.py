"""Images stay encoded through the pipeline; this decodes them where a model needs pixels.

ExampleGen stores the encoded bytes (PNG, JPEG, GIF, BMP) and the Transform passes
them through, so disk use stays near the encoded size instead of H x W x C x 4
bytes of float32 per image. `decode_features` turns the bytes into 0..255 float
pixels of the model's input size (grayscale expanded to RGB for backbones that
need 3 channels). It is the one decode function of both the Trainer's tf.data
input pipeline and the served graph; the backbone's own input scaling is the
model's first layer (`models.backbones.BackbonePreprocessing`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import tensorflow as tf

from models import backbones


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    """The image input a model gets: its builder, size and channels."""

    builder: str
    height: int
    width: int
    channels: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.height, self.width, self.channels

    @classmethod
    def from_model(cls, model: Mapping[str, Any]) -> "ImageOptions":
        """From a spec's model section (plus overrides): builder, image_size [H, W], channels."""
        builder = model.get("builder", "cnn")
        backbone = backbones.get(builder)
        size = model.get("image_size")
        if not size or len(size) != 2:
            raise ValueError(f"an image data set needs model.image_size: [HEIGHT, WIDTH], got {size!r}")
        height, width = (int(v) for v in size)
        if min(height, width) < backbone.min_size:
            raise ValueError(f"{builder} needs images of at least {backbone.min_size}x{backbone.min_size}; "
                             f"model.image_size is {height}x{width} (e.g. pass --image-size "
                             f"{backbone.min_size}x{backbone.min_size})")
        channels = backbone.channels or int(model.get("channels", 3))
        if channels not in (1, 3):
            raise ValueError(f"model.channels must be 1 (grayscale) or 3 (RGB), got {channels}")
        return cls(builder, height, width, channels)

    @classmethod
    def of_model(cls, model: tf.keras.Model, image_feature: str) -> "ImageOptions":
        """From a built model's image input [None, H, W, C]: the served graph decodes to what the model takes."""
        shape = model.inputs[model.input_names.index(image_feature)].shape
        height, width, channels = (int(v) for v in shape[1:])
        return cls(model.name, height, width, channels)


def decode_images(encoded: tf.Tensor, options: ImageOptions) -> tf.Tensor:
    """[B] or [B, 1] encoded images -> [B, H, W, C] float32 pixels in 0..255.

    Decoding with a fixed channel count converts at the decoder: a grayscale
    image decoded with channels=3 repeats its gray level in R, G and B.
    """
    def decode_one(data: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(data, channels=options.channels, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (options.height, options.width))
        return tf.ensure_shape(image, options.shape)

    return tf.map_fn(decode_one, tf.reshape(encoded, [-1]),
                     fn_output_signature=tf.TensorSpec(options.shape, tf.float32))


def decode_features(features: Mapping[str, tf.Tensor], image_feature: str | None,
                    options: ImageOptions | None) -> dict[str, tf.Tensor]:
    """Transform output -> model input: the image feature's bytes become pixels, the rest is unchanged."""
    features = dict(features)
    if image_feature and options is not None:
        features[image_feature] = decode_images(features[image_feature], options)
    return features


def options_for(image_feature: str | None, hparams: Mapping[str, Any]) -> ImageOptions | None:
    """The run's image options, or None for a data set without images."""
    return ImageOptions.from_model(hparams) if image_feature else None
