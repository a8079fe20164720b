"""Per-epoch training history: one progress line per epoch, and `training_history.json` for the run report.

Every trainer mode writes the same file into the Trainer's model run dir
(`fn_args.model_run_dir`) after each epoch, so a run that fails mid-training
still leaves the epochs it finished. Progress lines go to the `progress.*`
loggers, which the console shows even without --verbose.
"""
from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, Mapping

import tensorflow as tf

from models.early_stopping import EarlyStoppingKeepingBest

HISTORY_FILE = "training_history.json"
progress = logging.getLogger("progress.trainer")


def format_metrics(metrics: Mapping[str, float]) -> str:
    """`loss 0.4123, auc 0.8012 | val_loss 0.3990, val_auc 0.8311`: training first, then validation."""
    def part(names):
        return ", ".join(f"{name} {metrics[name]:.4f}" for name in names)
    train = sorted(n for n in metrics if not n.startswith("val_"))
    validation = sorted(n for n in metrics if n.startswith("val_"))
    return " | ".join(p for p in (part(train), part(validation)) if p)


class TrainingHistory:
    """Epoch metrics (training ones by name, validation ones as `val_<name>`) and the epoch that was exported."""

    def __init__(self, run_dir: str, trainer: str, monitor: str = "val_loss") -> None:
        self.path = os.path.join(run_dir, HISTORY_FILE)
        self.data: dict[str, Any] = {"trainer": trainer, "monitor": monitor, "epochs": [], "chosen_epoch": None}

    def record(self, epoch: int, total: int, metrics: Mapping[str, Any]) -> None:
        """Adds epoch `epoch` (1-based) of `total`, logs its progress line and rewrites the file."""
        values = {name: float(value) for name, value in metrics.items()
                  if isinstance(value, (int, float)) or getattr(value, "shape", None) == ()}
        values = {name: value for name, value in values.items() if math.isfinite(value)}
        self.data["epochs"].append({"epoch": epoch, **values})
        progress.info("epoch %d/%d: %s", epoch, total, format_metrics(values))
        self._write()

    def choose(self, epoch: int, reason: str) -> None:
        """The epoch whose weights were exported, and why (e.g. lowest val_loss)."""
        self.data["chosen_epoch"], self.data["chosen_reason"] = epoch, reason
        progress.info("exporting the model of epoch %d (%s)", epoch, reason)
        self._write()

    def _write(self) -> None:
        tf.io.gfile.makedirs(os.path.dirname(self.path))
        with tf.io.gfile.GFile(self.path, "w") as f:
            f.write(json.dumps(self.data, indent=1))


def read_history(run_dir: str) -> dict[str, Any] | None:
    """The history a trainer wrote into `run_dir`, or None (older runs, or training never started)."""
    path = os.path.join(run_dir, HISTORY_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.loads(f.read())


class KerasHistory(tf.keras.callbacks.Callback):
    """Records every epoch of `fit` (also across a fine-tuning second `fit`) and the epoch whose weights it ends on.

    EarlyStoppingKeepingBest ends every fit on the best epoch's weights, so that
    epoch is the exported one.
    """

    def __init__(self, history: TrainingHistory, early_stopping: EarlyStoppingKeepingBest) -> None:
        super().__init__()
        self.history, self.early_stopping = history, early_stopping

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.history.record(epoch + 1, int(self.params.get("epochs") or epoch + 1), logs or {})

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        stopping = self.early_stopping
        if not self.history.data["epochs"]:
            return
        stopped = f"stopped early after epoch {stopping.stopped_epoch + 1}" if stopping.stopped_epoch else \
            f"all {self.history.data['epochs'][-1]['epoch']} epochs run"
        self.history.choose(stopping.best_epoch + 1, f"best {stopping.monitor}; {stopped}")


class EstimatorLossHook(tf.estimator.SessionRunHook):
    """Mean training loss over one `Estimator.train` call (one epoch), like Keras' `loss`.

    Estimator puts the model's training loss last in the LOSSES collection
    before the session starts, so the hook reads it there.
    """

    def __init__(self) -> None:
        self._sum, self._steps, self._loss = 0.0, 0, None

    def begin(self) -> None:
        self._sum, self._steps = 0.0, 0
        self._loss = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.LOSSES)[-1]

    def before_run(self, run_context):
        return tf.estimator.SessionRunArgs(self._loss)

    def after_run(self, run_context, run_values) -> None:
        self._sum += float(run_values.results)
        self._steps += 1

    @property
    def mean_loss(self) -> float:
        return self._sum / self._steps if self._steps else math.nan
