"""Early stopping that always ends on the best epoch's weights, across every `fit` it is given.

tf.keras 2.15's `EarlyStopping(restore_best_weights=True)` restores only when it
stops training itself (a run that uses all its epochs exports the last epoch),
and forgets its best at the start of each `fit`, so a fine-tuning second phase
can end on weights worse than the first phase's best. This subclass keeps the
best (monitor value, epoch, weights) across fits and restores it at the end of
every fit. Weights are kept per variable, not as a list, because unfreezing
layers for fine-tuning reorders `model.get_weights()`.
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf


class EarlyStoppingKeepingBest(tf.keras.callbacks.EarlyStopping):
    """Stops after `patience` epochs without improvement of `monitor`; ends every fit on the best weights."""

    def __init__(self, monitor: str = "val_loss", patience: int = 5) -> None:
        super().__init__(monitor=monitor, patience=patience, restore_best_weights=True)
        self._best_values: list[tuple[tf.Variable, Any]] | None = None

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        kept = (getattr(self, "best", None), getattr(self, "best_epoch", 0), self._best_values)
        super().on_train_begin(logs)  # resets the patience counter, and (unwanted) the best
        if self._best_values is not None:
            self.best, self.best_epoch, self._best_values = kept

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        current = self.get_monitor_value(logs)
        if current is None:
            return
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            self._best_values = [(variable, variable.numpy()) for variable in self.model.weights]
        elif self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        for variable, value in self._best_values or ():
            variable.assign(value)
