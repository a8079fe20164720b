"""Hyperparameter search for TFX's Tuner component (KerasTuner), driven by the spec's `tuning:` block.

Trials train on the `train` split and are scored on `validation` (the Tuner's
train_args/eval_args); the test split is never seen. The best trial's values
reach the Trainer as the `best_hyperparameters` artifact, where `tuned_hparams`
turns them into model options again. One progress line per trial.

    tuning:
      enabled: false          # `run --tune` turns it on for one run
      algorithm: bayesian     # random | bayesian | hyperband
      max_trials: 8
      epochs: 40              # per trial, with early stopping on validation loss
      patience: 5             # epochs without a lower validation loss (default: model.early_stopping_patience)
      search_space:
        units: [64, 128, 256]          # first hidden layer; each next layer halves it
        layers: [2, 3]
        dropout: [0.0, 0.1, 0.2, 0.3]
        learning_rate: {min: 0.0003, max: 0.003, sampling: log}
        batch_size: [32, 64, 128]
"""
from __future__ import annotations

import logging
import math
from typing import Any, Mapping

import keras_tuner as kt
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.components.tuner.component import TunerFnResult

from models import builders, in_memory
from models.early_stopping import EarlyStoppingKeepingBest
from models.fit_variables import create_fit_variables
from models.keras_trainer import datasets
from specs.dataset import DatasetSpec
from specs.errors import SpecError

progress = logging.getLogger("progress.tuner")

ALGORITHMS = {"random": kt.RandomSearch, "bayesian": kt.BayesianOptimization}
SEARCHABLE = ("units", "layers", "dropout", "learning_rate", "batch_size")


def define(hp: kt.HyperParameters, name: str, space: Any) -> Any:
    """A list is a choice; {min, max[, step][, sampling: log]} a range (int if both ends are whole)."""
    if isinstance(space, list):
        return hp.Choice(name, space)
    if isinstance(space, Mapping) and {"min", "max"} <= set(space):
        kind = hp.Int if all(isinstance(space[k], int) for k in ("min", "max")) else hp.Float
        options = {k: space[k] for k in ("step", "sampling") if k in space}
        return kind(name, space["min"], space["max"], **options)
    raise SpecError(f"tuning.search_space.{name}: give a list of choices or {{min, max}}, got {space!r}")


def tuned_hparams(values: Mapping[str, Any]) -> dict[str, Any]:
    """Search values -> model options: `units` and `layers` become `hidden_units` (halving per layer)."""
    hparams = {k: v for k, v in values.items() if k not in ("units", "layers")}
    if "units" in values or "layers" in values:
        units, layers = int(values.get("units", 64)), int(values.get("layers", 2))
        hparams["hidden_units"] = [max(units >> i, 4) for i in range(layers)]
    return hparams


def check_tuning(spec_name: str, tuning: Mapping[str, Any]) -> None:
    """Refuses a `tuning:` block the Tuner could not run, before the pipeline starts."""
    space = tuning.get("search_space") or {}
    unknown = sorted(set(space) - set(SEARCHABLE))
    if not space or unknown:
        raise SpecError(f"{spec_name}: tuning.search_space needs some of {', '.join(SEARCHABLE)}"
                        + (f"; unknown: {unknown}" if unknown else ""))
    algorithm = tuning.get("algorithm", "random")
    if algorithm not in ALGORITHMS and algorithm != "hyperband":
        raise SpecError(f"{spec_name}: tuning.algorithm {algorithm!r} is not one of random, bayesian, hyperband")
    for name, value in space.items():
        define(kt.HyperParameters(), name, value)


class SpecHyperModel(kt.HyperModel):
    """Builds the spec's model with one trial's values and fits it on train, scored on validation."""

    def __init__(self, spec: DatasetSpec, fn_args: FnArgs, hparams: Mapping[str, Any],
                 search_space: Mapping[str, Any], max_trials: int) -> None:
        super().__init__()
        self.spec, self.fn_args, self.hparams, self.search_space = spec, fn_args, dict(hparams), search_space
        self.tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
        self.splits = in_memory.load_splits(fn_args, self.tf_transform_output, spec)  # read once for all trials
        self.hparams["steps_per_execution"] = in_memory.STEPS_PER_EXECUTION if self.splits else 1
        self.max_trials, self.trials, self.best = max_trials, 0, math.inf

    def trial_hparams(self, hp: kt.HyperParameters) -> dict[str, Any]:
        values = {name: define(hp, name, space) for name, space in self.search_space.items()}
        return {**self.hparams, **tuned_hparams(values)}

    def build(self, hp: kt.HyperParameters) -> tf.keras.Model:
        tf.keras.utils.set_random_seed(int(self.hparams["seed"]))  # trials differ by their values only
        return builders.build_model(self.spec, self.tf_transform_output, self.trial_hparams(hp))

    def fit(self, hp: kt.HyperParameters, model: tf.keras.Model, *args, **kwargs) -> tf.keras.callbacks.History:
        hparams = self.trial_hparams(hp)
        batch_size, seed = int(hparams.get("batch_size", 32)), int(hparams["seed"])
        train, validation = datasets(self.splits, self.fn_args, self.tf_transform_output, self.spec,
                                     batch_size, seed)
        create_fit_variables(model, validation)
        stopping = EarlyStoppingKeepingBest("val_loss", patience=int(hparams.get("early_stopping_patience", 5)))
        history = model.fit(train, validation_data=validation, epochs=int(self.hparams["tuning_epochs"]),
                            callbacks=[stopping, *kwargs.get("callbacks", [])], verbose=0)
        self.trials += 1
        loss = min(history.history["val_loss"])
        self.best = min(self.best, loss)
        progress.info("trial %d/%d: %s -> val_loss %.4f after %d epochs (best so far %.4f)", self.trials,
                      self.max_trials, ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                 for k, v in hp.values.items()),
                      loss, len(history.epoch), self.best)
        return history


def make_tuner(hypermodel: SpecHyperModel, tuning: Mapping[str, Any], seed: int, directory: str) -> kt.Tuner:
    algorithm = tuning.get("algorithm", "random")
    common = dict(hypermodel=hypermodel, objective=kt.Objective("val_loss", "min"), seed=seed,
                  directory=directory, project_name="tuning", overwrite=True)
    if algorithm == "hyperband":
        return kt.Hyperband(max_epochs=int(hypermodel.hparams["tuning_epochs"]), **common)
    return ALGORITHMS[algorithm](max_trials=hypermodel.max_trials, **common)


def tuner_fn(fn_args: FnArgs) -> TunerFnResult:
    """TFX Tuner entry point: the search over the spec's `tuning.search_space`."""
    config = fn_args.custom_config
    spec = DatasetSpec.from_dict(config["spec"])
    tuning = config["tuning"]
    check_tuning(spec.name, tuning)
    hparams = {**spec.model, **config.get("hparams", {}), "tuning_epochs": int(tuning.get("epochs", 30))}
    hparams["early_stopping_patience"] = int(tuning.get("patience", hparams.get("early_stopping_patience", 5)))
    max_trials = int(tuning.get("max_trials", 8))
    hypermodel = SpecHyperModel(spec, fn_args, hparams, tuning["search_space"], max_trials)
    progress.info("tuning %s: %s search, %d trials of up to %d epochs, scored on the validation split",
                  spec.name, tuning.get("algorithm", "random"), max_trials, hparams["tuning_epochs"])
    return TunerFnResult(tuner=make_tuner(hypermodel, tuning, int(hparams["seed"]), fn_args.working_dir),
                         fit_kwargs={})
