"""The run report and run list: training history, progress lines, and real reports opened in headless Chromium.

The e2e tests run churn on 1,500 real rows (blessed and pushed), then the same
pipeline on data with a column missing (stopped by the ValidationGate), and
check both reports in a real browser: sections, rendered figures, and what
stopped the failed run.
"""
from __future__ import annotations

import json
import logging
import math
import pathlib
import re
import subprocess
import sys
from dataclasses import replace as dataclass_replace

import numpy as np
import pytest
import tensorflow as tf

from models.early_stopping import EarlyStoppingKeepingBest
from models.history import HISTORY_FILE, EstimatorLossHook, KerasHistory, TrainingHistory, read_history
from pipeline.progress import _ComponentProgress
from pipeline.report import write_report
from pipeline.runs import format_runs, list_runs
from serving.versions import local_version_dirs
from specs.dataset import PROJECT_ROOT
from tests.browser import browser, image_sizes  # noqa: F401  (fixture)
from tests.support import isolated_config, write_sample

RELAXED = {"AUC": {"lower_bound": 0.6}}
SECTIONS = ["overview", "components", "data", "schema", "transform", "training", "evaluation", "blessing", "push",
            "lineage"]


def _tiny_data(rows: int = 64) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.RandomState(0).randn(rows, 3).astype("float32")
    return x, (x[:, 0] > 0).astype("float32")


def _tiny_model() -> tf.keras.Model:
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    return model


def test_keras_history_records_every_epoch_and_the_best_one(tmp_path):
    x, y = _tiny_data()
    stopping = EarlyStoppingKeepingBest("val_loss", patience=5)
    _tiny_model().fit(x, y, validation_data=(x, y), epochs=3, verbose=0,
                      callbacks=[stopping, KerasHistory(TrainingHistory(str(tmp_path), "keras"), stopping)])
    history = json.loads((tmp_path / HISTORY_FILE).read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2, 3]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history["epochs"][0])
    best = min(history["epochs"], key=lambda e: e["val_loss"])["epoch"]
    assert history["chosen_epoch"] == best and "all 3 epochs run" in history["chosen_reason"]


def test_keras_history_names_the_restored_epoch_after_early_stopping(tmp_path):
    x, y = _tiny_data()
    stopping = EarlyStoppingKeepingBest("val_loss", patience=1)
    stopping.min_delta = -10.0  # no later epoch can beat the first by 10: stops after epoch 2, restores epoch 1
    _tiny_model().fit(x, y, validation_data=(x, y), epochs=5, verbose=0,
                      callbacks=[stopping, KerasHistory(TrainingHistory(str(tmp_path), "keras"), stopping)])
    history = read_history(str(tmp_path))
    assert len(history["epochs"]) == 2 and history["chosen_epoch"] == 1
    assert "stopped early after epoch 2" in history["chosen_reason"]


def test_estimator_loss_hook_averages_the_training_loss_of_an_epoch(tmp_path):
    """With a zero learning rate the weights never move, so the epoch's mean loss equals the evaluated loss."""
    x, y = _tiny_data()
    estimator = tf.estimator.LinearRegressor(
        [tf.feature_column.numeric_column("x", shape=(3,))], model_dir=str(tmp_path),
        optimizer=lambda: tf.keras.optimizers.legacy.SGD(learning_rate=0.0))

    def input_fn():
        return tf.data.Dataset.from_tensor_slices(({"x": x}, y)).batch(16)
    hook = EstimatorLossHook()
    estimator.train(input_fn, hooks=[hook])
    evaluated = estimator.evaluate(input_fn)["average_loss"]
    assert math.isfinite(hook.mean_loss) and hook.mean_loss == pytest.approx(float(evaluated), rel=1e-5)


def test_progress_lines_pass_the_quiet_console_filter():
    def record(name: str, message: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.INFO, __file__, 1, message, (), None)
    quiet = _ComponentProgress()
    assert quiet.filter(record("progress.trainer", "epoch 3/10: loss 0.41"))
    assert not quiet.filter(record("tensorflow", "Saving checkpoints for 3"))


@pytest.mark.parametrize("message, shown", [
    ("Examples artifact does not have payload_format custom property. Falling back to FORMAT_TF_EXAMPLE", False),
    ("Tables initialized inside a tf.function  will be re-initialized on every invocation of the function.", False),
    ("Examples artifact has payload_format FORMAT_PARQUET, which this reader cannot read", True),
])
def test_warnings_every_run_prints_are_dropped_and_others_shown(message, shown):
    warning = logging.LogRecord("absl", logging.WARNING, __file__, 1, message, (), None)
    assert _ComponentProgress().filter(warning) is shown


# ---- e2e: real runs and their reports in a real browser ----

@pytest.fixture(scope="module")
def home(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("report_e2e")


@pytest.fixture(scope="module")
def config(home, churn_sample):
    return isolated_config(home, input_base=str(churn_sample), thresholds=RELAXED, hparams={"epochs": 3})


@pytest.fixture(scope="module")
def good_run(churn_spec, config):
    from pipeline.local_runner import run_local  # the whole TFX pipeline: imported by the e2e tests only
    result = run_local(churn_spec, config)
    return result, write_report(churn_spec, config)


@pytest.fixture(scope="module")
def failed_report(good_run, churn_spec, config, home):
    """The same pipeline on data without the Geography column: stopped by the ValidationGate."""
    from components.validation_gate import DataAnomalyError
    from pipeline.local_runner import run_local
    path = write_sample(PROJECT_ROOT / "data/churn/Churn_Modelling.csv", home / "drifted", 400)
    lines = [line.split(",") for line in path.read_text().splitlines()]
    column = lines[0].index("Geography")
    path.write_text("\n".join(",".join(cells[:column] + cells[column + 1:]) for cells in lines) + "\n")
    drifted = dataclass_replace(config, input_base=str(path.parent))
    with pytest.raises(DataAnomalyError):
        run_local(churn_spec, drifted)
    return write_report(churn_spec, drifted)


def _section_text(driver, anchor: str) -> str:
    return driver.find_element("id", anchor).text


@pytest.mark.e2e
def test_report_of_a_blessed_run_shows_every_section_with_rendered_figures(browser, good_run):  # noqa: F811
    _, report = good_run
    browser.get(report.as_uri())
    assert [s.get_attribute("id") for s in browser.find_elements("tag name", "section")] == SECTIONS
    sizes = image_sizes(browser)
    assert sizes and all(width > 0 and height > 0 for _, width, height in sizes), sizes
    names = {name for name, _, _ in sizes}
    assert {"component timeline", "histogram of Age", "top values of Geography", "training curves", "ROC curve",
            "precision-recall curve", "calibration plot", "confusion matrix at threshold 0.5"} <= names
    assert "Blessed: every gate passed." in _section_text(browser, "blessing")
    assert "Trainer mode keras: " in _section_text(browser, "training")
    # The held-out split the Evaluator scored is named from the run's own record, and its AUC gate is shown.
    evaluation = _section_text(browser, "evaluation")
    assert "held-out split" in evaluation and ">= 0.6" in evaluation


@pytest.mark.e2e
def test_report_needs_no_network_and_its_scaler_statistics_are_the_train_split_s(good_run):
    _, report = good_run
    text = report.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert text.count('src="data:image/png;base64,') >= 8


@pytest.mark.e2e
def test_served_version_gets_a_copy_of_its_report_beside_the_versions(good_run, churn_spec, config):
    result, report = good_run
    version_dir = pathlib.Path(result.pushed_path)
    served_copy = version_dir.parent / "reports" / f"{version_dir.name}.html"
    assert served_copy.read_text() == report.read_text()
    assert list(local_version_dirs(str(version_dir.parent)).values()) == [version_dir.name]  # `reports` is no version


@pytest.mark.e2e
def test_training_history_of_the_run_is_in_the_model_run_dir(good_run):
    result, _ = good_run
    history = read_history(result.component("Trainer").outputs["model_run"][0].uri)
    epochs = history["epochs"]
    assert history["trainer"] == "keras" and 1 <= len(epochs) <= 3
    assert all({"loss", "val_loss", "auc", "val_auc"} <= set(e) for e in epochs)
    assert history["chosen_epoch"] in [e["epoch"] for e in epochs]


@pytest.mark.e2e
def test_report_of_a_failed_run_says_what_stopped_it(browser, failed_report):  # noqa: F811
    browser.get(failed_report.as_uri())
    overview = _section_text(browser, "overview")
    assert "FAILED" in overview and "ValidationGate failed" in overview
    schema = _section_text(browser, "schema")
    assert "Geography" in schema and "Column dropped" in schema
    assert "No training in this run: the run stopped at ValidationGate" in _section_text(browser, "training")
    assert all(width > 0 for _, width, _ in image_sizes(browser))


@pytest.mark.e2e
def test_runs_lists_the_blessed_and_the_failed_run(failed_report, good_run, churn_spec, config):
    result, _ = good_run
    runs = list_runs(churn_spec, config)
    assert [r.state for r in runs][:2] == ["COMPLETE", "FAILED"]  # run_with_baseline may add a third
    assert runs[0].blessed is True and runs[0].version == pathlib.Path(result.pushed_path).name
    assert runs[0].metric == "auc" and runs[0].value == pytest.approx(result.metrics["auc"])
    assert runs[1].blessed is None and runs[1].version is None
    command = [sys.executable, "-m", "pipeline", "runs", "--dataset", "churn", "--home", str(config.home),
               "--serving-dir", str(config.serving_dir)]
    listing = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, check=True).stdout
    assert listing.strip() == format_runs(runs)


@pytest.fixture(scope="module")
def run_with_baseline(failed_report, good_run, churn_spec, config):
    """The pipeline again with one hyperparameter changed: a new model, evaluated beside the blessed one."""
    from pipeline.local_runner import run_local
    changed = dataclass_replace(config, hparams={**config.hparams, "epochs": 2})
    return run_local(churn_spec, changed), write_report(churn_spec, changed)


@pytest.mark.e2e
def test_report_of_a_run_with_a_baseline_shows_the_baselines_metrics_beside_the_candidates(
        browser, good_run, run_with_baseline):  # noqa: F811
    first, _ = good_run
    result, report = run_with_baseline
    assert result.component("Transform").state == "CACHED" and result.component("Trainer").state == "COMPLETE"
    browser.get(report.as_uri())
    metric_table = browser.find_element("id", "evaluation").find_element("tag name", "table")
    headers = [th.text for th in metric_table.find_elements("tag name", "th")]
    rows = {cells[0]: dict(zip(headers[1:], cells[1:])) for cells in (
        [td.text for td in tr.find_elements("tag name", "td")] for tr in metric_table.find_elements("tag name", "tr"))
        if cells}
    # The candidate is this run's model; the baseline, the first run's blessed model on the same test split.
    assert float(rows["auc"]["candidate"]) == pytest.approx(result.metrics["auc"], abs=5e-5)
    assert float(rows["auc"]["baseline"]) == pytest.approx(first.metrics["auc"], abs=5e-5)
    assert result.metrics["auc"] != first.metrics["auc"]  # two models: the columns are not one value twice


def test_tfds_preparation_and_reading_log_progress(caplog):
    """TFDS's own mock data stands in for the download (no internet here)."""
    import tensorflow_datasets as tfds
    from components.tfds_example_gen import _ReadSplit, prepare
    options = {"name": "fashion_mnist", "version": "", "data_dir": "", "module": "", "label_names": [],
               "features": {"image": "image", "label": "label"}, "label_feature": "label"}
    with caplog.at_level(logging.INFO, logger="progress.tfds"), tfds.testing.mock_data(num_examples=3):
        prepare(options)
        examples = list(_ReadSplit(options).process("train"))
    assert len(examples) == 3
    messages = [r.getMessage() for r in caplog.records if r.name == "progress.tfds"]
    assert any(m.startswith("TFDS fashion_mnist ready in") for m in messages), messages
    assert messages[-1] == "TFDS fashion_mnist[train]: 3 examples read, done"


@pytest.mark.e2e
def test_report_of_an_image_run_shows_held_out_images_worst_first(browser, tmp_path_factory):  # noqa: F811
    """fashion_mnist on TFDS's mock data (no download here): random labels, so only the mechanics are checked."""
    import tensorflow_datasets as tfds
    from pipeline.local_runner import run_local
    from specs.dataset import load_spec
    spec = load_spec("fashion_mnist")
    config = isolated_config(tmp_path_factory.mktemp("report_images"), hparams={"epochs": 1, "batch_size": 16},
                             thresholds={"SparseCategoricalAccuracy": {"lower_bound": 0.0}})
    with tfds.testing.mock_data(num_examples=40):
        run_local(spec, config)
    browser.get(write_report(spec, config).as_uri())
    assert "images" in [s.get_attribute("id") for s in browser.find_elements("tag name", "section")]
    assert re.search(r"\d+ of \d+ test images misclassified", _section_text(browser, "images"))
    sizes = {name: (width, height) for name, width, height in image_sizes(browser)}
    assert min(sizes["held-out images with predictions"]) > 0 and min(sizes["confusion matrix"]) > 0
