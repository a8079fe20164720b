"""Trainer entry point (`run_fn`): seeds, then the trainer mode the run asked for."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs

from models import estimator_trainer, keras_trainer, premade_trainer
from specs.dataset import DatasetSpec

TrainFn = Callable[[FnArgs, DatasetSpec, Mapping[str, Any]], None]
TRAINER_MODES: dict[str, TrainFn] = {
    "keras": keras_trainer.train,          # native Keras
    "estimator": estimator_trainer.train,  # the same Keras model through model_to_estimator
    "premade": premade_trainer.train,      # DNNClassifier / DNNRegressor on feature columns
}


def set_seeds(seed: int) -> None:
    """Same data order and initial weights on every run with the same seed."""
    tf.keras.utils.set_random_seed(seed)


def run_fn(fn_args: FnArgs) -> None:
    config = fn_args.custom_config
    spec = DatasetSpec.from_dict(config["spec"])
    hparams = {**spec.model, **config.get("hparams", {})}
    mode = hparams.get("trainer", "keras")
    if mode not in TRAINER_MODES:
        raise ValueError(f"trainer mode {mode!r} is not available; choose one of {sorted(TRAINER_MODES)}")
    set_seeds(int(hparams["seed"]))
    TRAINER_MODES[mode](fn_args, spec, hparams)
