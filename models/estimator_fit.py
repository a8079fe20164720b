"""Training loop shared by the Estimator trainer modes: epochs, early stopping, best checkpoint.

Mirrors the Keras mode's `EarlyStopping(restore_best_weights=True)`: evaluate
after every epoch, stop after `early_stopping_patience` epochs without a lower
eval loss, and export the best checkpoint rather than the last.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Mapping

import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from models.history import EstimatorLossHook, TrainingHistory, progress
from models.images import options_for
from models import operating_point
from models.keras_trainer import make_dataset
from models.strategies import make_strategy
from specs.dataset import DatasetSpec

InputFn = Callable[[], tf.data.Dataset]


def run_config(fn_args: FnArgs, hparams: Mapping[str, Any]) -> tf.estimator.RunConfig:
    """Seeded config with checkpoints in the run dir (one at least per `train` call, i.e. epoch)."""
    name = hparams.get("strategy", "default")
    strategy = None if name == "default" else make_strategy(name, hparams.get("tpu"))
    return tf.estimator.RunConfig(
        model_dir=fn_args.model_run_dir, tf_random_seed=int(hparams["seed"]), train_distribute=strategy,
        save_summary_steps=100, keep_checkpoint_max=3, log_step_count_steps=1000)


def input_fns(fn_args: FnArgs, spec: DatasetSpec, tf_transform_output: tft.TFTransformOutput,
              hparams: Mapping[str, Any]) -> tuple[Callable[[int], InputFn], InputFn]:
    """Train input_fn per epoch (one shuffled pass), and one pass of the eval split.

    Every `train` call rebuilds the dataset, so the shuffle seed changes with the
    epoch; a fixed seed would replay one order every epoch (Keras reshuffles).
    """
    batch_size, seed = int(hparams.get("batch_size", 32)), int(hparams["seed"])
    image_options = options_for(spec.image_feature, hparams)

    def train_input_fn(epoch: int) -> InputFn:
        return lambda: make_dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, spec,
                                    batch_size, seed + epoch, shuffle=True, image_options=image_options)

    def eval_input_fn() -> tf.data.Dataset:
        return make_dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, spec,
                            batch_size, seed, shuffle=False, image_options=image_options)
    return train_input_fn, eval_input_fn


def keep_best(checkpoint: str) -> str:
    """Copies a checkpoint to `<model_dir>/best/`, out of reach of the Saver's rotation."""
    best_dir = os.path.join(os.path.dirname(checkpoint), "best")
    if tf.io.gfile.exists(best_dir):
        tf.io.gfile.rmtree(best_dir)
    tf.io.gfile.makedirs(best_dir)
    for path in tf.io.gfile.glob(f"{checkpoint}.*"):
        tf.io.gfile.copy(path, os.path.join(best_dir, os.path.basename(path)))
    return os.path.join(best_dir, os.path.basename(checkpoint))


def validation_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """`evaluate`'s model metrics as `val_<name>`; average_loss repeats loss, and label/mean,
    prediction/mean and *_baseline describe the data rather than the model."""
    return {f"val_{name}": value for name, value in metrics.items()
            if name not in ("global_step", "average_loss") and "/" not in name and not name.endswith("_baseline")}


def fit(estimator: tf.estimator.Estimator, train_input_fn: Callable[[int], InputFn], eval_input_fn: InputFn,
        hparams: Mapping[str, Any]) -> str:
    """Trains epoch by epoch with early stopping on eval loss; returns the best checkpoint."""
    epochs, patience = int(hparams.get("epochs", 10)), int(hparams.get("early_stopping_patience", 5))
    best_loss, best_checkpoint, best_epoch, waited = math.inf, None, 0, 0
    history, train_loss = TrainingHistory(estimator.model_dir, hparams.get("trainer", "estimator")), EstimatorLossHook()
    for epoch in range(1, epochs + 1):
        estimator.train(train_input_fn(epoch), hooks=[train_loss])
        metrics = estimator.evaluate(eval_input_fn)
        loss = float(metrics["loss"])
        history.record(epoch, epochs, {"loss": train_loss.mean_loss, **validation_metrics(metrics)})
        if loss < best_loss:
            best_loss, best_checkpoint, best_epoch, waited = loss, keep_best(estimator.latest_checkpoint()), epoch, 0
        else:
            waited += 1
            if waited >= patience:
                progress.info("early stopping after epoch %d; best eval loss %.4f", epoch, best_loss)
                break
    if best_checkpoint is None:
        raise RuntimeError(f"training produced no usable checkpoint (eval loss {loss}); "
                           "lower model.learning_rate or check the data for extreme values")
    history.choose(best_epoch, "lowest val_loss (best checkpoint)")
    return best_checkpoint


def operating_threshold(estimator: tf.estimator.Estimator, validation_input_fn: InputFn, head_output,
                        checkpoint: str, hparams: Mapping[str, Any]) -> float:
    """The served decision threshold: `model.operating_point` chosen on validation with the best checkpoint."""
    point = hparams.get("operating_point")
    if not point:
        return operating_point.DEFAULT_THRESHOLD
    labels, scores = operating_point.estimator_validation_scores(estimator, validation_input_fn, head_output,
                                                                 checkpoint)
    return operating_point.choose_and_record(labels, scores, point, estimator.model_dir)
