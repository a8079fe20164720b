"""Native Keras training: fit on the Transform output, early stopping, export."""
from __future__ import annotations

import logging
from typing import Any, Mapping

import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs
from tfx_bsl.public import tfxio

from models import builders, images, in_memory, signatures, vision
from models import operating_point
from models.early_stopping import EarlyStoppingKeepingBest
from models.fit_variables import create_fit_variables
from models.history import KerasHistory, TrainingHistory
from models.step_count import StepCount
from models.strategies import make_strategy, shard_by_example
from specs.dataset import DatasetSpec

log = logging.getLogger(__name__)


def make_dataset(files: list[str], data_accessor: DataAccessor,
                 tf_transform_output: tft.TFTransformOutput, spec: DatasetSpec,
                 batch_size: int, seed: int, shuffle: bool,
                 image_options: images.ImageOptions | None = None) -> tf.data.Dataset:
    """One pass over transformed examples as (features, label) batches; encoded images decoded per batch."""
    dataset = shard_by_example(data_accessor.tf_dataset_factory(
        files,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=spec.label, num_epochs=1,
                                       shuffle=shuffle, shuffle_seed=seed),
        tf_transform_output.transformed_metadata.schema))
    if image_options is None:
        return dataset
    return dataset.map(lambda features, label: (images.decode_features(features, spec.image_feature, image_options),
                                                label), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def datasets(splits: tuple[in_memory.Split, in_memory.Split] | None, fn_args: FnArgs,
             tf_transform_output: tft.TFTransformOutput, spec: DatasetSpec, batch_size: int, seed: int,
             image_options: images.ImageOptions | None = None) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """(train, validation) batches: from `in_memory.load_splits`'s tensors, or streamed when it gave None."""
    if splits is not None:
        return (shard_by_example(in_memory.batches(splits[0], batch_size, seed, shuffle=True)),
                shard_by_example(in_memory.batches(splits[1], batch_size, seed, shuffle=False)))
    return (make_dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, spec,
                         batch_size, seed, shuffle=True, image_options=image_options),
            make_dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, spec,
                         batch_size, seed, shuffle=False, image_options=image_options))


def train(fn_args: FnArgs, spec: DatasetSpec, hparams: Mapping[str, Any]) -> None:
    # First: a multi-worker strategy configures collective ops, which TF allows only before any other op.
    strategy = make_strategy(hparams.get("strategy", "default"), hparams.get("tpu"))
    seed = int(hparams["seed"])
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    batch_size = int(hparams.get("batch_size", 32))
    image_options = images.options_for(spec.image_feature, hparams)
    splits = in_memory.load_splits(fn_args, tf_transform_output, spec)
    log.info("training data: %s", f"in memory, {int(splits[0][1].shape[0])} train and "
             f"{int(splits[1][1].shape[0])} validation rows" if splits else "streamed from the transformed examples")
    train_ds, eval_ds = datasets(splits, fn_args, tf_transform_output, spec, batch_size, seed, image_options)
    # Data of a known size lets Keras run several steps per call; streamed data must go one step at a time.
    hparams = {**hparams, "steps_per_execution": in_memory.STEPS_PER_EXECUTION if splits else 1}
    with strategy.scope():
        model = builders.build_model(spec, tf_transform_output, hparams)
        create_fit_variables(model, eval_ds)
    model.summary(print_fn=log.info)
    # Validation split only (fn_args.eval_files); ends both fits on the best epoch's weights.
    early_stopping = EarlyStoppingKeepingBest("val_loss", patience=int(hparams.get("early_stopping_patience", 5)))
    callbacks = [
        early_stopping,
        tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch"),
        KerasHistory(TrainingHistory(fn_args.model_run_dir, "keras"), early_stopping),  # progress lines + report
        StepCount(fn_args.model_run_dir),  # per process: shows every worker of a cluster stepped
    ]
    history = model.fit(train_ds, validation_data=eval_ds, epochs=int(hparams.get("epochs", 10)),
                        callbacks=callbacks, verbose=0, class_weight=operating_point.class_weights(hparams))
    with strategy.scope():
        fine_tune_epochs = vision.unfreeze_for_fine_tuning(model, spec, hparams)
        if fine_tune_epochs:  # recompiled: a new optimizer and new metrics
            create_fit_variables(model, eval_ds)
    if fine_tune_epochs:  # transfer learning's second phase (VGG16 last block, lower learning rate)
        done = len(history.epoch)
        model.fit(train_ds, validation_data=eval_ds, initial_epoch=done, epochs=done + fine_tune_epochs,
                  callbacks=callbacks, verbose=0, class_weight=operating_point.class_weights(hparams))
    point = hparams.get("operating_point")
    threshold = operating_point.choose_and_record(
        *operating_point.keras_validation_scores(model, eval_ds), point, fn_args.model_run_dir) if point else 0.5
    signatures.export_keras_model(model, spec, tf_transform_output, fn_args.serving_model_dir, threshold)
