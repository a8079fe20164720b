"""The churn pipeline end to end with LocalDagRunner on 1,500 real rows.

One module fixture runs the pipeline several times in one ML Metadata store and
serving directory, in a fixed order, and the tests read what each run did (the
component states TFX recorded, the blessings, the pushes):

1. `first`: blessed and pushed; most tests read its artefacts.
2. `unchanged`: the same inputs again; nothing re-executes, nothing new is pushed.
3. `gate_miss`: another training seed and an unreachable AUC bound; told which value and
   bound it missed, against the first model as the baseline.
4. `epochs`: one more epoch retrains on the cached Transform, against the blessed first model.
5. `threshold`: a new threshold re-evaluates that model without retraining.

The bad-CSV runs that stop before training are in tests/test_bad_csv.py; that the last
pushed model stays after one is checked in tests/test_estimator_modes.py.
"""
import dataclasses
import json
import logging
import pathlib
from dataclasses import replace as dataclass_replace

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.core.protobuf import saved_model_pb2
from tfx.components.trainer.fn_args_utils import DataAccessor
from tfx.components.util import tfxio_utils
from tfx.types import standard_artifacts

from models import in_memory
from tests.support import isolated_config, without_no_regression_gate
from pipeline import eval_results
from pipeline.local_runner import RunReport, run_local
from pipeline.predict import predict, to_inputs
from pipeline.report.transform_stats import z_score_parameters
from specs.dataset import PROJECT_ROOT

pytestmark = pytest.mark.e2e
CHURN_CSV = PROJECT_ROOT / "data/churn/Churn_Modelling.csv"
RELAXED = {"AUC": {"lower_bound": 0.6}}  # a 1,500-row sample and 4 epochs cannot reach 0.85
EPOCHS = 4


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("churn_e2e")


@pytest.fixture(scope="module")
def config(home, churn_sample):
    return isolated_config(home, input_base=str(churn_sample), thresholds=RELAXED, hparams={"epochs": EPOCHS})


@dataclasses.dataclass
class Runs:
    reports: dict[str, RunReport]
    versions: dict[str, list[str]]  # the pushed version directories right after each run

    def __getitem__(self, name: str) -> RunReport:
        return self.reports[name]


@pytest.fixture(scope="module")
def runs(churn_spec, config) -> Runs:
    more_epochs = dataclass_replace(config, hparams={"epochs": EPOCHS + 1})
    serving = pathlib.Path(config.serving_dir_for(churn_spec))
    result = Runs({}, {})
    for name, run_config in [
            ("first", config), ("unchanged", config),
            ("gate_miss", dataclass_replace(config, seed=7, thresholds={"AUC": {"lower_bound": 0.99}})),
            ("epochs", more_epochs),
            ("threshold", dataclass_replace(more_epochs, thresholds={"AUC": {"lower_bound": 0.55}}))]:
        result.reports[name] = run_local(churn_spec, run_config)
        result.versions[name] = sorted(p.name for p in serving.iterdir() if p.name.isdigit())
    return result


@pytest.fixture(scope="module")
def first_run(runs) -> RunReport:
    return runs["first"]


def states(report: RunReport) -> dict[str, str]:
    return {c.component: c.state for c in report.components if c.component != "latest_blessed_model_resolver"}


def read_split(examples_uri: str, split: str) -> list[tf.train.Example]:
    records = []
    for path in sorted(pathlib.Path(examples_uri, f"Split-{split}").glob("*.gz")):
        records += [tf.train.Example.FromString(r.numpy())
                    for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP")]
    return records


def feature_values(examples: list[tf.train.Example], name: str) -> np.ndarray:
    def value(example):
        feature = example.features.feature[name]
        return (feature.int64_list.value or feature.float_list.value)[0]
    return np.array([value(e) for e in examples], dtype=np.float64)


def test_run_is_blessed_and_pushed(first_run, config, churn_spec):
    states = {c.component: c.state for c in first_run.components}
    assert all(state == "COMPLETE" for state in states.values()), states
    assert first_run.blessed is True
    assert first_run.metrics["auc"] >= 0.6
    pushed = pathlib.Path(first_run.pushed_path)
    assert pushed.parent == pathlib.Path(config.serving_dir_for(churn_spec))
    assert pushed.name.isdigit() and (pushed / "saved_model.pb").exists()


def test_split_is_70_10_20_and_the_evaluator_reports_on_test_only(first_run):
    examples_uri = first_run.component("CsvExampleGen").outputs["examples"][0].uri
    sizes = {split: len(read_split(examples_uri, split)) for split in ("train", "validation", "test")}
    assert sum(sizes.values()) == 1500
    assert 0.65 < sizes["train"] / 1500 < 0.75 and 0.07 < sizes["validation"] / 1500 < 0.13
    assert 0.16 < sizes["test"] / 1500 < 0.24
    assert first_run.metrics["example_count"] == sizes["test"]


def test_trainer_receives_no_test_split(first_run):
    """Transform writes train and validation only: the test split's rows never reach the Trainer."""
    transformed = first_run.component("Transform").outputs["transformed_examples"][0]
    assert sorted(pathlib.Path(transformed.uri).iterdir()) == [pathlib.Path(transformed.uri, "Split-train"),
                                                               pathlib.Path(transformed.uri, "Split-validation")]
    [trainer_input] = first_run.component("Trainer").inputs["examples"]
    assert trainer_input.id == transformed.id


def test_changing_test_rows_changes_no_weight(first_run, churn_spec, churn_sample, config, home):
    """The sample without its test-split rows trains to the same weights; the test rows were never read."""
    examples_uri = first_run.component("CsvExampleGen").outputs["examples"][0].uri
    test_rows = {(e.features.feature["CreditScore"].int64_list.value[0],
                  np.float32(e.features.feature["EstimatedSalary"].float_list.value[0]))
                 for e in read_split(examples_uri, "test")}
    header, *rows = (churn_sample / CHURN_CSV.name).read_text().splitlines()
    columns = header.split(",")
    score, salary = columns.index("CreditScore"), columns.index("EstimatedSalary")
    kept = [r for r in rows if (int(r.split(",")[score]), np.float32(r.split(",")[salary])) not in test_rows]
    assert len(rows) - len(kept) == len(test_rows)
    data = home / "without_test_rows"
    data.mkdir()
    (data / CHURN_CSV.name).write_text("\n".join([header] + kept) + "\n")
    other = run_local(churn_spec, dataclass_replace(isolated_config(home / "without_test_rows_run"),
                                                     thresholds=RELAXED, hparams={"epochs": EPOCHS}, input_base=str(data)))
    def weights(report):
        model = tf.keras.models.load_model(report.component("Trainer").outputs["model"][0].uri + "/Format-Serving")
        return model.get_weights()
    for ours, theirs in zip(weights(first_run), weights(other), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_scaler_statistics_come_from_the_train_split_only(first_run):
    examples_uri = first_run.component("CsvExampleGen").outputs["examples"][0].uri
    train = feature_values(read_split(examples_uri, "train"), "CreditScore")
    both = np.concatenate([train] + [feature_values(read_split(examples_uri, split), "CreditScore")
                                     for split in ("validation", "test")])
    # The graph's own answer: x = 0 and x = 1 through it (the numeric features are scaled together,
    # so every raw feature goes in; pipeline/report/transform_stats.py).
    mean, variance = z_score_parameters(first_run.component("Transform").outputs["transform_graph"][0].uri,
                                        ["CreditScore"])["CreditScore"]
    std = variance ** 0.5
    assert abs(train.mean() - both.mean()) > 1.0  # the check below can tell the two apart
    assert mean == pytest.approx(train.mean(), abs=0.1)  # tf.Transform accumulates in float32
    assert std == pytest.approx(train.std(), rel=1e-3)


def test_small_splits_train_from_memory_on_every_row_in_a_new_seeded_order_each_epoch(first_run, churn_spec):
    """models/in_memory.py: the Trainer's in-memory copy of the train split is the whole split, each
    epoch's batches are a fresh permutation of it, and the same seed gives the same permutations."""
    transformed = first_run.component("Transform").outputs["transformed_examples"][0].uri
    artifact = standard_artifacts.Examples()
    artifact.uri, artifact.split_names = transformed, '["train", "validation"]'
    accessor = DataAccessor(tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([artifact], []),
                            record_batch_factory=None, data_view_decode_fn=None)
    tft_output = tft.TFTransformOutput(first_run.component("Transform").outputs["transform_graph"][0].uri)
    files = [str(pathlib.Path(transformed, "Split-train", "*"))]
    assert in_memory.fits(files, tft_output, churn_spec)

    features, labels = in_memory.load(files, accessor, tft_output, churn_spec)
    records = read_split(transformed, "train")
    assert labels.shape[0] == len(records) > 1000
    np.testing.assert_array_equal(features["CreditScore"].numpy().ravel(), feature_values(records, "CreditScore"))
    np.testing.assert_array_equal(labels.numpy().ravel(), feature_values(records, churn_spec.label))

    def epoch_orders(seed: int, epochs: int = 2) -> list[np.ndarray]:
        dataset = in_memory.batches((features, labels), 32, seed, shuffle=True)
        return [np.concatenate([batch["CreditScore"].numpy().ravel() for batch, _ in dataset])
                for _ in range(epochs)]
    first, second = epoch_orders(seed=42)
    in_file_order = features["CreditScore"].numpy().ravel()
    for order in (first, second):
        np.testing.assert_array_equal(np.sort(order), np.sort(in_file_order))  # every row, once
        assert not np.array_equal(order, in_file_order)
    assert not np.array_equal(first, second)  # reshuffled every epoch
    again = epoch_orders(seed=42)
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_array_equal(again[1], second)
    assert not np.array_equal(epoch_orders(seed=43, epochs=1)[0], first)

    unshuffled = in_memory.batches((features, labels), 32, 42, shuffle=False)
    np.testing.assert_array_equal(np.concatenate([b["CreditScore"].numpy().ravel() for b, _ in unshuffled]),
                                  in_file_order)


def test_large_or_image_splits_are_streamed(first_run, churn_spec, monkeypatch):
    transformed = first_run.component("Transform").outputs["transformed_examples"][0].uri
    tft_output = tft.TFTransformOutput(first_run.component("Transform").outputs["transform_graph"][0].uri)
    files = [str(pathlib.Path(transformed, "Split-train", "*"))]
    assert in_memory.fits(files, tft_output, churn_spec)
    assert not in_memory.fits(files, tft_output, dataclasses.replace(churn_spec, image_feature="Surname"))
    size = sum(p.stat().st_size for p in pathlib.Path(transformed, "Split-train").iterdir())
    monkeypatch.setattr(in_memory, "MAX_FILE_BYTES", size - 1)
    assert not in_memory.fits(files, tft_output, churn_spec)


def test_served_model_applies_the_transform_to_raw_json_inputs(first_run, churn_spec):
    instance = dict(churn_spec.example_instance)
    [served] = predict(pathlib.Path(first_run.pushed_path), [instance])
    assert set(served) == {"probability", "probabilities", "class_ids", "classes"}
    assert 0.0 <= served["probability"] <= 1.0
    assert served["classes"] == churn_spec.label_names[served["class_ids"]]

    # The same numbers as transforming by hand with the Transform graph, then calling the Keras model.
    model = tf.keras.models.load_model(first_run.pushed_path)
    tft_output = tft.TFTransformOutput(first_run.component("Transform").outputs["transform_graph"][0].uri)
    raw_spec = tft_output.raw_feature_spec()
    raw = {k: tf.constant([[v]], dtype=raw_spec[k].dtype) for k, v in instance.items()}
    transformed = tft_output.transform_features_layer()(raw)
    by_hand = float(model({k: transformed[k] for k in model.input_names}).numpy().ravel()[0])
    assert served["probability"] == pytest.approx(by_hand, rel=1e-5)
    # Skipping the preprocessing (the lecture's fault) gives a different answer.
    untransformed = {k: tf.cast(raw[k], tf.float32) if raw[k].dtype != tf.string else transformed[k]
                     for k in model.input_names}
    assert float(model(untransformed).numpy().ravel()[0]) != pytest.approx(by_hand, abs=1e-3)


def test_tf_example_and_classify_signatures_agree_with_raw_signature(first_run, churn_spec):
    instance = dict(churn_spec.example_instance)
    model = tf.saved_model.load(first_run.pushed_path)
    raw = model.signatures["serving_default"](**to_inputs(model.signatures["serving_default"], [instance]))
    feature = {k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()])) if isinstance(v, str)
               else tf.train.Feature(float_list=tf.train.FloatList(value=[v])) if k in ("Balance", "EstimatedSalary")
               else tf.train.Feature(int64_list=tf.train.Int64List(value=[v])) for k, v in instance.items()}
    example = tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
    from_example = model.signatures["serving_tf_example"](examples=tf.constant([example]))
    np.testing.assert_allclose(raw["probabilities"].numpy(), from_example["probabilities"].numpy(), rtol=1e-6)

    # TF Serving's :classify API: a classify-method signature over tf.Examples, same scores.
    classified = model.signatures["classification"](inputs=tf.constant([example]))
    np.testing.assert_allclose(classified["scores"].numpy(), raw["probabilities"].numpy(), rtol=1e-6)
    assert [c.decode() for c in classified["classes"].numpy()[0]] == list(churn_spec.label_names)
    saved_model = saved_model_pb2.SavedModel.FromString((pathlib.Path(first_run.pushed_path) / "saved_model.pb").read_bytes())
    assert saved_model.meta_graphs[0].signature_def["classification"].method_name == "tensorflow/serving/classify"


def test_an_unchanged_rerun_executes_nothing_and_says_the_model_is_already_blessed(runs):
    first, again = runs["first"], runs["unchanged"]
    assert set(states(first).values()) == {"COMPLETE"}
    assert set(states(again).values()) == {"CACHED"}, states(again)
    # The Evaluator's earlier result stands (this model is the blessed baseline now);
    # the Pusher publishes no copy.
    assert again.evaluation_reused and again.blessed is True and again.pushed_path == first.pushed_path
    assert "Not re-evaluated: this model is already the blessed one" in again.summary()
    assert json.dumps(again.metrics, sort_keys=True) == json.dumps(first.metrics, sort_keys=True)  # NaN-safe
    assert runs.versions["unchanged"] == runs.versions["first"] == [pathlib.Path(first.pushed_path).name]


def test_more_epochs_retrain_on_the_cached_transform_and_compare_with_the_blessed_model(runs):
    run = states(runs["epochs"])
    assert run["Transform"] == "CACHED" and run["Trainer"] == "COMPLETE" and run["Evaluator"] == "COMPLETE", run
    assert not runs["epochs"].evaluation_reused
    # The baseline the Evaluator got is the first run's model, blessed and pushed earlier (the
    # gate_miss run in between blessed nothing).
    [baseline] = runs["epochs"].component("Evaluator").inputs["baseline_model"]
    [first_model] = runs["first"].component("Trainer").outputs["model"]
    assert baseline.id == first_model.id


def test_a_new_threshold_re_evaluates_without_retraining(runs):
    run = states(runs["threshold"])
    assert run["Transform"] == "CACHED" and run["Trainer"] == "CACHED" and run["Evaluator"] == "COMPLETE", run


def test_slices_are_reported_per_geography_and_gender(first_run):
    assert {"Geography=France", "Geography=Germany", "Geography=Spain", "Gender=Female", "Gender=Male"} <= \
        set(first_run.slices)
    counts = [first_run.slices[f"Gender={g}"]["example_count"] for g in ("Female", "Male")]
    assert sum(counts) == first_run.metrics["example_count"]


def test_a_result_with_a_baseline_is_read_as_the_candidates_without_tfma_warnings(runs, caplog):
    """With a baseline TFMA names the models; asked for no name it warns once per slice (the control
    below shows the check sees that), and pipeline/eval_results.py asks for the candidate."""
    import tensorflow_model_analysis as tfma
    alone = runs["first"].component("Evaluator").outputs["evaluation"][0].uri
    with_baseline = runs["epochs"].component("Evaluator").outputs["evaluation"][0].uri
    assert eval_results.candidate_name(alone) is None
    assert eval_results.candidate_name(with_baseline) == "candidate"

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if "Fail to find" in r.getMessage()]
    with caplog.at_level(logging.WARNING):
        tfma.load_eval_result(with_baseline)
    assert warnings()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        metrics = eval_results.overall_metric_values(with_baseline)
    assert not warnings()
    candidate = tfma.load_eval_result(with_baseline, model_name="candidate")
    [overall] = [m for key, m in candidate.slicing_metrics if key == ()]
    assert metrics["auc"] == overall[""][""]["auc"]["doubleValue"]
    assert "auc_diff" in metrics and runs["epochs"].metrics == metrics


def test_a_model_that_misses_a_gate_is_told_which_value_and_bound(runs, first_run):
    """Another seed trains another model; the first run's model is its baseline."""
    report = runs["gate_miss"]
    assert report.blessed is False and report.pushed_path is None
    assert runs.versions["gate_miss"] == runs.versions["first"]
    expected = (f"auc on the test split (overall) is {report.metrics['auc']:.4f}, needs >= 0.99; "
                f"last blessed model: {first_run.metrics['auc']:.4f}")
    assert expected in report.failures
    # The no-regression gate fails too exactly when this model scores below the baseline.
    regressed = report.metrics["auc"] < first_run.metrics["auc"]
    assert len(report.failures) == 1 + regressed
    assert f"failed: {expected}" in report.summary()


@pytest.fixture(scope="module")
def estimator_mode_runs(churn_spec, churn_sample, home) -> dict[str, RunReport]:
    """Both Estimator modes in one store (the second reuses the cached Transform). Without the
    no-regression gate: each mode must be blessed on its own merits, not against the other."""
    spec = without_no_regression_gate(churn_spec)
    config = isolated_config(home / "estimator_modes", input_base=str(churn_sample), thresholds=RELAXED,
                             hparams={"epochs": 2})
    return {trainer: run_local(spec, dataclass_replace(config, trainer=trainer)) for trainer in ("estimator", "premade")}


@pytest.mark.parametrize("trainer", ["estimator", "premade"])
def test_every_trainer_mode_serves_the_same_classification_outputs(first_run, estimator_mode_runs, churn_spec, trainer):
    """The Keras run above, then each Estimator mode on the same data: same keys, same class names."""
    report = estimator_mode_runs[trainer]
    assert report.blessed is True and report.pushed_path
    instance = dict(churn_spec.example_instance)
    [keras_answer] = predict(pathlib.Path(first_run.pushed_path), [instance])
    [answer] = predict(pathlib.Path(report.pushed_path), [instance])
    assert set(answer) == set(keras_answer) == {"probability", "probabilities", "class_ids", "classes"}
    assert answer["classes"] == churn_spec.label_names[answer["class_ids"]]
    assert answer["probabilities"][1] == pytest.approx(answer["probability"], rel=1e-6)
