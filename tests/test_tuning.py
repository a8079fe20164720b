"""TFX's Tuner component (KerasTuner) from the spec's tuning block: search on validation, hand-over, cache."""
from __future__ import annotations

import dataclasses
import json
import logging
import pathlib

import pytest
import tensorflow as tf

from models.tuning import check_tuning, tuned_hparams
from pipeline.local_runner import run_local
from specs.errors import SpecError
from tests.support import isolated_config, write_sample
from specs.dataset import PROJECT_ROOT

TINY_SEARCH = {"algorithm": "random", "max_trials": 2, "epochs": 2, "seed": 3,
               "search_space": {"units": [8, 16], "layers": [1, 2], "learning_rate": [0.001, 0.01]}}


def test_units_and_layers_become_halving_hidden_units():
    assert tuned_hparams({"units": 128, "layers": 3, "dropout": 0.1}) == {"hidden_units": [128, 64, 32], "dropout": 0.1}
    assert tuned_hparams({"batch_size": 32}) == {"batch_size": 32}


@pytest.mark.parametrize("tuning, message", [
    ({"search_space": {"neurons": [8]}}, "unknown: \\['neurons'\\]"),
    ({"search_space": {}}, "needs some of units"),
    ({"algorithm": "grid", "search_space": {"units": [8]}}, "algorithm 'grid'"),
    ({"search_space": {"dropout": "high"}}, "list of choices or"),
])
def test_unusable_tuning_blocks_are_refused(tuning, message):
    with pytest.raises(SpecError, match=message):
        check_tuning("churn", tuning)


def test_run_tune_without_a_tuning_block_is_a_usage_error(tmp_path):
    from pipeline.pipeline_def import create_pipeline
    from specs.dataset import load_spec
    from specs.errors import UsageError
    with pytest.raises(UsageError, match="digits spec has no tuning block"):
        create_pipeline(load_spec("digits"), isolated_config(tmp_path, tune=True))


@pytest.mark.e2e
def test_tuner_searches_on_validation_hands_its_best_to_the_trainer_and_is_cached(churn_spec, tmp_path, caplog):
    data = tmp_path / "data"
    write_sample(PROJECT_ROOT / "data/churn/Churn_Modelling.csv", data, 600)
    spec = dataclasses.replace(churn_spec, tuning=TINY_SEARCH)
    config = isolated_config(tmp_path, input_base=str(data), tune=True, hparams={"epochs": 2},
                             thresholds={"AUC": {"lower_bound": 0.5}})
    with caplog.at_level(logging.INFO, logger="progress.tuner"):
        first = run_local(spec, config)
    tuner, trainer = first.component("Tuner"), first.component("Trainer")
    assert tuner.state == "COMPLETE" and trainer.state == "COMPLETE"
    assert [m for m in caplog.messages if m.startswith("trial 2/2: ")]
    # Trials see the Transform output, which holds train and validation only.
    assert tuner.inputs["examples"][0].id == first.component("Transform").outputs["transformed_examples"][0].id
    best = tuner.outputs["best_hyperparameters"][0]
    assert trainer.inputs["hyperparameters"][0].id == best.id
    values = json.loads((pathlib.Path(best.uri) / "best_hyperparameters.txt").read_text())["values"]
    model = tf.keras.models.load_model(pathlib.Path(trainer.outputs["model"][0].uri) / "Format-Serving")
    dense = [layer.units for layer in model.layers if layer.name.startswith("dense_")]
    assert dense == tuned_hparams(values)["hidden_units"]

    second = run_local(spec, dataclasses.replace(config, seed=7))  # another training seed: same search
    assert second.component("Tuner").state == "CACHED"
    assert second.component("Trainer").state == "COMPLETE"
