"""Trainer entry point (`run_fn`): seeds, then the trainer mode the run asked for."""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Mapping

import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs

from models import estimator_trainer, keras_trainer, premade_trainer
from specs.dataset import DatasetSpec
from specs.errors import SpecError

TrainFn = Callable[[FnArgs, DatasetSpec, Mapping[str, Any]], None]
TRAIN_TIME_FILE = "train_seconds.json"  # in the model run dir: `pipeline compare` reports it


def train_tfdf(fn_args: FnArgs, spec: DatasetSpec, hparams: Mapping[str, Any]) -> None:
    from models import tfdf_trainer  # TF-DF's ops load only for the runs that use them
    tfdf_trainer.train(fn_args, spec, hparams)


TRAINER_MODES: dict[str, TrainFn] = {
    "keras": keras_trainer.train,          # native Keras
    "estimator": estimator_trainer.train,  # the same Keras model through model_to_estimator
    "premade": premade_trainer.train,      # DNNClassifier / DNNRegressor on feature columns
    "tfdf": train_tfdf,                    # gradient-boosted trees (TensorFlow Decision Forests)
}


def set_seeds(seed: int) -> None:
    """Same data order and initial weights on every run with the same seed."""
    tf.keras.utils.set_random_seed(seed)


def check_mode_options(hparams: Mapping[str, Any]) -> None:
    """Refuses, before anything runs, options the chosen trainer mode would silently ignore."""
    mode = hparams.get("trainer", "keras")
    if mode != "keras" and int(hparams.get("fine_tune_epochs") or 0):
        raise SpecError(f"model.fine_tune_epochs (a second, fine-tuning fit) is done by the keras trainer only; "
                        f"the {mode} trainer trains one phase: use --trainer keras, or set fine_tune_epochs: 0")
    if mode != "keras" and hparams.get("class_weight"):
        raise SpecError("model.class_weight is applied by the keras trainer only; use --trainer keras, "
                        "or remove class_weight from the spec's model block")


def tuned(fn_args: FnArgs) -> dict[str, Any]:
    """The Tuner's best trial (its `best_hyperparameters` artifact), as model options; {} without a Tuner.

    Run options (`--epochs`, ...) still override it, and the spec's model block fills the rest."""
    if not fn_args.hyperparameters:
        return {}
    import keras_tuner as kt
    from models.tuning import tuned_hparams
    return tuned_hparams(kt.HyperParameters.from_config(fn_args.hyperparameters).values)


def run_fn(fn_args: FnArgs) -> None:
    config = fn_args.custom_config
    spec = DatasetSpec.from_dict(config["spec"])
    hparams = {**spec.model, **tuned(fn_args), **config.get("hparams", {})}
    mode = hparams.get("trainer", "keras")
    if mode not in TRAINER_MODES:
        raise ValueError(f"trainer mode {mode!r} is not available; choose one of {sorted(TRAINER_MODES)}")
    check_mode_options(hparams)
    set_seeds(int(hparams["seed"]))
    started = time.monotonic()
    TRAINER_MODES[mode](fn_args, spec, hparams)
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, TRAIN_TIME_FILE), "w") as f:
        f.write(json.dumps({"trainer": mode, "seconds": round(time.monotonic() - started, 2)}))
