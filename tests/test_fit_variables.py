"""Creating the training variables before `fit` saves Keras's second trace and changes nothing trained.

models/fit_variables.py builds the compiled loss, metrics and optimizer from one validation
example. These tests fit the same seeded model (dropout, Adam, several steps per call, a
shuffled training set) with and without it, on Keras itself.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from models.fit_variables import create_fit_variables

ROWS, FEATURES, BATCH = 300, 6, 16


def _data() -> tuple[tf.data.Dataset, tf.data.Dataset]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, FEATURES)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32")
    train = tf.data.Dataset.from_tensor_slices(({"x": x[:240]}, y[:240]))
    train = train.shuffle(240, seed=7, reshuffle_each_iteration=True).batch(BATCH)
    validation = tf.data.Dataset.from_tensor_slices(({"x": x[240:]}, y[240:])).batch(BATCH)
    return train, validation


def _fit(prebuild: bool) -> tuple[tf.keras.Model, tf.keras.callbacks.History]:
    tf.keras.utils.set_random_seed(3)
    inputs = {"x": tf.keras.Input((FEATURES,), name="x")}
    hidden = tf.keras.layers.Dropout(0.3)(tf.keras.layers.Dense(8, activation="relu")(inputs["x"]))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1, activation="sigmoid")(hidden))
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="binary_crossentropy",
                  metrics=["accuracy", tf.keras.metrics.AUC(name="auc")], steps_per_execution=4)
    train, validation = _data()
    if prebuild:
        create_fit_variables(model, validation)
    history = model.fit(train, validation_data=validation, epochs=3, verbose=0)
    return model, history


def test_the_train_function_is_traced_once_instead_of_twice():
    as_keras, _ = _fit(prebuild=False)
    ours, _ = _fit(prebuild=True)
    assert as_keras.train_function.experimental_get_tracing_count() == 2  # Keras as shipped
    assert ours.train_function.experimental_get_tracing_count() == 1


def test_training_is_unchanged():
    as_keras, keras_history = _fit(prebuild=False)
    ours, our_history = _fit(prebuild=True)
    assert our_history.history == keras_history.history
    for mine, theirs in zip(ours.get_weights(), as_keras.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    for mine, theirs in zip(ours.optimizer.variables, as_keras.optimizer.variables):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_a_batch_from_the_shuffled_training_data_would_change_training():
    """Why one validation example: a new iterator over the shuffled data moves every epoch's order on."""
    def first_epoch(draw_first: bool) -> list[list[float]]:
        tf.keras.utils.set_random_seed(3)
        train, _ = _data()
        if draw_first:
            next(iter(train.take(1)))
        return [labels.numpy().tolist() for _, labels in train]

    assert first_epoch(draw_first=False) == first_epoch(draw_first=False)
    assert first_epoch(draw_first=True) != first_epoch(draw_first=False)
