"""Trainer mode `estimator`: the Keras builder's model run through `model_to_estimator`.

For teams whose code is Estimator-based: the very model `keras` mode trains,
trained by the Estimator machinery (RunConfig, checkpoints, train_distribute)
and exported with the same serving signatures and outputs.
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from models import builders, estimator_export, estimator_fit, images
from specs.dataset import DatasetSpec


def train(fn_args: FnArgs, spec: DatasetSpec, hparams: Mapping[str, Any]) -> None:
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    model = builders.build_model(spec, tf_transform_output, hparams)
    # model_to_estimator swaps the compiled Adam for its legacy (graph-mode) twin, same settings.
    estimator = tf.keras.estimator.model_to_estimator(
        keras_model=model, config=estimator_fit.run_config(fn_args, hparams))
    output_name = model.output_names[0]

    def head_output(predictions):
        return predictions[output_name]

    input_fns = estimator_fit.input_fns(fn_args, spec, tf_transform_output, hparams)
    checkpoint = estimator_fit.fit(estimator, *input_fns, hparams)
    threshold = estimator_fit.operating_threshold(estimator, input_fns[1], head_output, checkpoint, hparams)
    estimator_export.export_estimator(estimator, spec, head_output, tf_transform_output, checkpoint,
                                      fn_args.serving_model_dir, images.options_for(spec.image_feature, hparams),
                                      threshold)
