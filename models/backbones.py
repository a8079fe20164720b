"""ImageNet backbones for transfer learning, each with its own input preprocessing.

Lecture 10 fed every backbone x/255, so VGG16, ResNet50 (both "caffe" mode: BGR,
ImageNet means subtracted on 0..255 pixels) and EfficientNet (which rescales
0..255 itself) saw inputs they were never trained on. Here each backbone names
its own `keras.applications.<net>.preprocess_input`, applied by a layer inside
the model, so training and serving use the same scaling by construction.
`preprocessing: unit_scale` in the model section reproduces the lecture's x/255
on purpose, to measure what it costs; the default is always the backbone's own.
"""
from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Any, Callable, Mapping

import tensorflow as tf

PREPROCESSING_MODES = ("backbone", "unit_scale")

_apps = tf.keras.applications


@dataclasses.dataclass(frozen=True)
class Backbone:
    """One image model family: how to build it, how its inputs are scaled, what fine-tuning unfreezes."""

    preprocess_input: Callable[[tf.Tensor], tf.Tensor]  # float pixels 0..255 -> what the network was trained on
    application: Callable[..., tf.keras.Model] | None = None  # keras.applications constructor (None: the small CNN)
    weights_file: str = ""           # Keras' no-top ImageNet weights file name, for the offline error message
    fine_tune_layers: str = ""       # regex of the base's layer names that fine-tuning unfreezes (its last block)
    channels: int | None = 3         # None: the data set's own (model.channels)
    min_size: int = 32


def unit_scale(pixels: tf.Tensor) -> tf.Tensor:
    """x/255: right for the small CNN, the lecture's mistake for ImageNet backbones."""
    return pixels / 255.0


BACKBONES: dict[str, Backbone] = {
    "cnn": Backbone(unit_scale, channels=None, min_size=1),
    "vgg16": Backbone(_apps.vgg16.preprocess_input, _apps.VGG16,
                      "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", r"^block5"),
    "resnet50": Backbone(_apps.resnet50.preprocess_input, _apps.ResNet50,
                         "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", r"^conv5_block3"),
    "mobilenet_v2": Backbone(_apps.mobilenet_v2.preprocess_input, _apps.MobileNetV2,
                             "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
                             r"^(block_16|Conv_1|out_relu)"),
    "efficientnet_b0": Backbone(_apps.efficientnet.preprocess_input, _apps.EfficientNetB0,
                                "efficientnetb0_notop.h5", r"^(block7|top_)"),
    "densenet121": Backbone(_apps.densenet.preprocess_input, _apps.DenseNet121,
                            "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
                            r"^(conv5_block16|bn$|relu$)"),
    "nasnet_mobile": Backbone(_apps.nasnet.preprocess_input, _apps.NASNetMobile,
                              "nasnet_mobile_no_top.h5", r"_12$"),
}
TRANSFER_BACKBONES = tuple(name for name, b in BACKBONES.items() if b.application)


def get(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"model.builder {name!r} takes no images; image builders: {sorted(BACKBONES)}")
    return BACKBONES[name]


def preprocessing_mode(hparams: Mapping[str, Any]) -> str:
    mode = hparams.get("preprocessing") or "backbone"
    if mode not in PREPROCESSING_MODES:
        raise ValueError(f"model.preprocessing {mode!r} is not one of {', '.join(PREPROCESSING_MODES)} "
                         "(backbone: the network's own preprocess_input; unit_scale: x/255)")
    return mode


@tf.keras.utils.register_keras_serializable(package="pipeline_kit")
class BackbonePreprocessing(tf.keras.layers.Layer):
    """0..255 pixels -> the backbone's input, as the first layer of every image model."""

    def __init__(self, backbone: str, mode: str = "backbone", **kwargs):
        super().__init__(**kwargs)
        self.backbone, self.mode = backbone, mode
        self._fn = unit_scale if mode == "unit_scale" else get(backbone).preprocess_input

    def call(self, pixels: tf.Tensor) -> tf.Tensor:
        # preprocess_input may modify a NumPy array in place; a tensor it returns anew.
        return self._fn(tf.identity(pixels))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "backbone": self.backbone, "mode": self.mode}


def weights_argument(name: str, value: str | None) -> str | None:
    """`imagenet` (downloaded by Keras), a local .h5 no-top weights file, or none (random init)."""
    if value in (None, "", "none", "None"):
        return None
    if value == "imagenet":
        return "imagenet"
    path = pathlib.Path(value).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model.weights {value!r} is neither 'imagenet', 'none' nor an existing weights file; "
                                f"give the path of {BACKBONES[name].weights_file}")
    return str(path)


def build_base(name: str, shape: tuple[int, int, int], weights: str | None) -> tf.keras.Model:
    """The backbone without its ImageNet classifier, named after its registry key."""
    backbone = get(name)
    try:
        base = backbone.application(include_top=False, weights=weights_argument(name, weights), input_shape=shape)
    except Exception as e:  # Keras reports a failed download as URL/HTTP/OS errors
        if weights != "imagenet":
            raise
        raise RuntimeError(f"could not load the ImageNet {name} weights ({type(e).__name__}: {e}); without internet "
                           f"copy {backbone.weights_file} into ~/.keras/models/ or set model.weights to its path "
                           "(or 'none' for random weights)") from e
    base._name = name  # e.g. MobileNetV2 names itself after the input size
    return base


def unfreeze_last_block(base: tf.keras.Model, name: str) -> list[str]:
    """Makes only the backbone's last block trainable; returns the unfrozen layer names."""
    pattern = re.compile(get(name).fine_tune_layers)
    base.trainable = True
    unfrozen = []
    for layer in base.layers:
        layer.trainable = bool(pattern.search(layer.name))
        if layer.trainable and layer.weights:
            unfrozen.append(layer.name)
    if not unfrozen:
        raise ValueError(f"{name}: no layer matches the fine-tuning pattern {pattern.pattern!r}")
    return unfrozen
