"""Estimator mode parts without a pipeline: served outputs per task, RunConfig seed and strategy."""
import dataclasses

import pytest
import tensorflow as tf
from tfx import v1 as tfx

from models import estimator_export, estimator_fit, heads, premade_trainer
from specs.dataset import load_spec

PROBABILITIES = [[0.1, 0.9], [0.8, 0.2]]


def served(spec, predictions):
    """PREDICT-mode outputs and export outputs of a premade-like model_fn wrapped for serving."""
    def model_fn(features, labels, mode, config):
        return tf.estimator.EstimatorSpec(mode=mode, predictions={k: tf.constant(v) for k, v in predictions.items()})

    with tf.Graph().as_default():
        wrapped = estimator_export.served_model_fn(model_fn, spec, premade_trainer.head_output(spec))
        estimator_spec = wrapped({}, None, tf.estimator.ModeKeys.PREDICT, None)
        with tf.compat.v1.Session() as session:
            outputs = session.run(estimator_spec.predictions)
        return outputs, estimator_spec.export_outputs


def keras_keys(spec, model_output):
    return set(heads.prediction_outputs(spec, tf.constant(model_output)))


def test_binary_premade_outputs_match_the_keras_served_outputs():
    spec = load_spec("churn")
    outputs, export_outputs = served(spec, {"probabilities": PROBABILITIES, "logits": [[0.0, 1.0], [1.0, 0.0]]})
    assert set(outputs) == keras_keys(spec, [[0.9], [0.2]]) == {"probability", "probabilities", "class_ids", "classes"}
    assert outputs["probability"].tolist() == pytest.approx([0.9, 0.2])
    assert outputs["classes"].tolist() == [b"exited", b"stayed"]
    assert set(export_outputs) == {"serving_default", "classification"}


def test_multiclass_and_regression_outputs_match_the_keras_served_outputs():
    digits = load_spec("digits")
    probabilities = [[0.0] * 9 + [1.0], [1.0] + [0.0] * 9]
    outputs, export_outputs = served(digits, {"probabilities": probabilities})
    assert set(outputs) == keras_keys(digits, probabilities)
    assert outputs["classes"].tolist() == [b"9", b"0"]
    assert isinstance(export_outputs["classification"], tf.estimator.export.ClassificationOutput)

    wine = load_spec("wine_white")
    outputs, export_outputs = served(wine, {"predictions": [[5.5], [6.0]]})
    assert set(outputs) == keras_keys(wine, [[5.5], [6.0]]) == {"predictions"}
    assert set(export_outputs) == {"serving_default", "regression"}


def test_run_config_is_seeded_and_carries_the_strategy(tmp_path):
    fn_args = tfx.components.FnArgs(model_run_dir=str(tmp_path))
    config = estimator_fit.run_config(fn_args, {"seed": 7, "strategy": "default"})
    assert config.tf_random_seed == 7 and config.train_distribute is None
    mirrored = estimator_fit.run_config(fn_args, {"seed": 7, "strategy": "mirrored"})
    assert isinstance(mirrored.train_distribute, tf.distribute.MirroredStrategy)


def test_premade_refuses_image_features():
    spec = dataclasses.replace(load_spec("wine_white"), image_feature="image")
    with pytest.raises(ValueError, match="premade trainer takes tabular features only"):
        premade_trainer.feature_columns(spec, tf_transform_output=None)
