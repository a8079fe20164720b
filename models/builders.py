"""The model builder registry: `model.builder` in a spec names one of these, in every trainer mode."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import tensorflow as tf
import tensorflow_transform as tft

from models import backbones, tabular, vision
from specs.dataset import DatasetSpec

Builder = Callable[[DatasetSpec, tft.TFTransformOutput, Mapping[str, Any]], tf.keras.Model]

BUILDERS: dict[str, Builder] = {"mlp": tabular.build_mlp, "cnn": vision.build_cnn,
                                 # vgg16, resnet50, mobilenet_v2, efficientnet_b0, densenet121, nasnet_mobile
                                 **{name: vision.build_transfer for name in backbones.TRANSFER_BACKBONES}}


def build_model(spec: DatasetSpec, tf_transform_output: tft.TFTransformOutput,
                hparams: Mapping[str, Any]) -> tf.keras.Model:
    builder = hparams.get("builder", "mlp")
    if builder not in BUILDERS:
        raise ValueError(f"{spec.name}: unknown model.builder {builder!r}; known: {sorted(BUILDERS)}")
    return BUILDERS[builder](spec, tf_transform_output, hparams)
