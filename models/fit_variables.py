"""The optimizer's and compiled metrics' variables, created before `fit` so Keras traces its train function once.

Keras creates them inside the first call of its train function, and TF traces a
`tf.function` whose first trace created variables a second time, for every later
call: on churn, a second trace of model, loss, metrics and optimizer inside the
32-step loop, the Trainer's largest single trace. Creating the same
variables first, from one validation example, leaves training unchanged: they
start at the same values, and nothing is drawn from the shuffled training data
(every new iterator over it moves each epoch's order on by one).
"""
from __future__ import annotations

import tensorflow as tf


def create_fit_variables(model: tf.keras.Model, validation: tf.data.Dataset) -> None:
    """Builds `model`'s compiled loss, metrics and optimizer; call in the strategy's scope, after compile."""
    batch = next(iter(validation.take(1)))
    features, labels = tf.nest.map_structure(lambda tensor: tensor[:1], (batch[0], batch[1]))
    predictions = model(features, training=False)
    if model.compiled_loss is not None and not model.compiled_loss.built:
        model.compiled_loss.build(predictions)
    if model.compiled_metrics is not None and not model.compiled_metrics.built:
        model.compiled_metrics.build(predictions, labels)
    model.optimizer.build(model.trainable_variables)
