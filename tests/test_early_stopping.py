"""The exported weights are the best validation epoch's, also when no early stop happens and across a second fit.

One weight, zero-initialised, trained by SGD towards y = 2x while validation
wants y = x: the weight climbs 0 -> 2 and validation loss is lowest mid-way, so
the best epoch is neither the first nor the last.
"""
import numpy as np
import pytest
import tensorflow as tf

from models.early_stopping import EarlyStoppingKeepingBest

X = np.linspace(-1, 1, 64, dtype=np.float32).reshape(-1, 1)
TRAIN, VALIDATION = (X, 2 * X), (X, X)


def one_weight_model() -> tf.keras.Model:
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros",
                                                       input_shape=(1,))])
    model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=0.3), loss="mse")
    return model


class WeightPerEpoch(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights, self.val_losses = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(float(self.model.get_weights()[0].ravel()[0]))
        self.val_losses.append(logs["val_loss"])


def fit(model, callback, epochs, initial_epoch=0):
    seen = WeightPerEpoch()
    model.fit(*TRAIN, validation_data=VALIDATION, batch_size=64, epochs=initial_epoch + epochs,
              initial_epoch=initial_epoch, shuffle=False, verbose=0, callbacks=[callback, seen])
    return seen


def weight(model) -> float:
    return float(model.get_weights()[0].ravel()[0])


def test_keras_early_stopping_keeps_the_last_epoch_when_it_never_stops():
    """The tf.keras 2.15 behaviour the project's callback fixes (if Keras changes, this says so)."""
    model = one_weight_model()
    seen = fit(model, tf.keras.callbacks.EarlyStopping(patience=100, restore_best_weights=True), epochs=12)
    best = int(np.argmin(seen.val_losses))
    assert 0 < best < 11
    assert weight(model) == pytest.approx(seen.weights[-1])
    assert weight(model) != pytest.approx(seen.weights[best], abs=0.05)


def test_best_epoch_is_restored_when_all_epochs_run():
    model = one_weight_model()
    seen = fit(model, EarlyStoppingKeepingBest(patience=100), epochs=12)
    best = int(np.argmin(seen.val_losses))
    assert 0 < best < 11
    assert weight(model) == pytest.approx(seen.weights[best])


def test_a_second_fit_that_only_gets_worse_ends_on_the_first_fits_best():
    model, stopping = one_weight_model(), EarlyStoppingKeepingBest(patience=3)
    first = fit(model, stopping, epochs=12)
    best_weight, best_loss = first.weights[int(np.argmin(first.val_losses))], min(first.val_losses)
    # Phase two (as fine-tuning): a higher learning rate overshoots; every epoch is worse than phase one's best.
    model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=2.0), loss="mse")
    second = fit(model, stopping, epochs=4, initial_epoch=12)
    assert min(second.val_losses) > best_loss
    assert weight(model) == pytest.approx(best_weight)
    assert stopping.best_epoch == int(np.argmin(first.val_losses))


def test_patience_still_stops_training():
    model, stopping = one_weight_model(), EarlyStoppingKeepingBest(patience=2)
    seen = fit(model, stopping, epochs=30)
    assert len(seen.weights) < 30 and stopping.stopped_epoch > 0
    assert weight(model) == pytest.approx(seen.weights[int(np.argmin(seen.val_losses))])


@pytest.mark.parametrize("mode", ["estimator", "premade"])
def test_estimator_modes_refuse_fine_tuning_before_the_run_starts(mode, tmp_path):
    from pipeline.pipeline_def import create_pipeline
    from specs.dataset import load_spec
    from specs.errors import SpecError
    from tests.support import isolated_config
    with pytest.raises(SpecError, match=f"fine_tune_epochs .* keras trainer only; the {mode} trainer"):
        create_pipeline(load_spec("cats_vs_dogs"), isolated_config(tmp_path, trainer=mode))
