"""How many training steps this process ran, per epoch, in `steps.json` of its model run dir.

In a multi-worker cluster each worker has its own model run dir, so the files
show that every worker stepped (Keras's TensorBoard callback keeps only the
chief's logs; the epoch history is in models/history.py).
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

FILE_NAME = "steps.json"


class StepCount(tf.keras.callbacks.Callback):
    """After every epoch, rewrites DIR/steps.json from the optimizer's step counter.

    Reads `optimizer.iterations` (this process's copy) once per epoch rather than
    counting batches: a batch-level hook would make Keras sync after every step.
    """

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.path = os.path.join(directory, FILE_NAME)
        self.per_epoch: list[int] = []
        self._last = 0

    def _iterations(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._last = self._iterations()  # a fine-tuning fit may bring a new optimizer, counting from 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = self._iterations()
        self.per_epoch.append(now - self._last)
        self._last = now
        tf.io.gfile.makedirs(os.path.dirname(self.path))
        with tf.io.gfile.GFile(self.path, "w") as f:  # rewritten whole: object stores cannot append
            f.write(json.dumps({"steps": sum(self.per_epoch), "steps_per_epoch": self.per_epoch}))


def read_steps(directory: str) -> dict | None:
    """What StepCount wrote into `directory`, or None."""
    path = os.path.join(directory, FILE_NAME)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.loads(f.read())
