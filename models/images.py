"""Image preprocessing in the Transform graph: encoded bytes -> the backbone's input.

Decode (PNG, JPEG, GIF, BMP), resize to the model's input size, expand grayscale
to RGB for backbones that need 3 channels, then the backbone's own input scaling:
VGG16 wants `vgg16.preprocess_input` (RGB->BGR and ImageNet mean subtraction on
0..255 pixels, "caffe" mode), not 0..1 scaling; the small CNN wants 0..1.
Because this runs in `preprocessing_fn`, the same code is inside the served model,
which therefore takes the encoded image bytes.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import tensorflow as tf

# Model-section keys that decide the Transform output; run overrides of these
# must reach the Transform as well as the Trainer (see pipeline_def).
TRANSFORM_HPARAMS = ("builder", "image_size", "channels")


@dataclasses.dataclass(frozen=True)
class Backbone:
    """What a model builder expects as image input."""

    preprocess: Callable[[tf.Tensor], tf.Tensor]  # float pixels 0..255 -> model input
    channels: int | None = None                   # None: the data set's own (model.channels)
    min_size: int = 1


def _unit_scale(pixels: tf.Tensor) -> tf.Tensor:
    return pixels / 255.0


BACKBONES: dict[str, Backbone] = {
    "cnn": Backbone(_unit_scale),
    "vgg16": Backbone(tf.keras.applications.vgg16.preprocess_input, channels=3, min_size=32),
}


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    """The image input a model gets: size, channels and the backbone preprocessing."""

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
        if builder not in BACKBONES:
            raise ValueError(f"model.builder {builder!r} takes no images; image builders: {sorted(BACKBONES)}")
        backbone = BACKBONES[builder]
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


def decode_images(encoded: tf.Tensor, options: ImageOptions) -> tf.Tensor:
    """[B] encoded images -> [B, H, W, C] float32 pixels in 0..255.

    Decoding with a fixed channel count converts at the decoder: a grayscale
    image decoded with channels=3 repeats its gray level in R, G and B.
    """
    def decode_one(data: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(data, channels=options.channels, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (options.height, options.width))
        return tf.ensure_shape(image, options.shape)

    return tf.map_fn(decode_one, encoded, fn_output_signature=tf.TensorSpec(options.shape, tf.float32))


def preprocess_images(encoded: tf.Tensor, options: ImageOptions) -> tf.Tensor:
    """[B] or [B, 1] encoded images -> the backbone's input [B, H, W, C]."""
    pixels = decode_images(tf.reshape(encoded, [-1]), options)
    return BACKBONES[options.builder].preprocess(pixels)
