"""The churn pipeline end to end with LocalDagRunner on 1,500 real rows.

One good run is shared by the tests of this module (it takes ~1 minute); the
cache and bad-data runs reuse its ML Metadata and serving directory, so
"nothing new is pushed" is checked against a real earlier push.
"""
import pathlib
from dataclasses import replace as dataclass_replace

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.core.protobuf import saved_model_pb2

from components.validation_gate import DataAnomalyError
from tests.support import isolated_config, write_sample
from pipeline.local_runner import run_local
from pipeline.predict import latest_version, predict, to_inputs
from specs.dataset import PROJECT_ROOT

pytestmark = pytest.mark.e2e
CHURN_CSV = PROJECT_ROOT / "data/churn/Churn_Modelling.csv"
RELAXED = {"AUC": {"lower_bound": 0.6}}  # a 1,500-row sample and 4 epochs cannot reach 0.85


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("churn_e2e")


@pytest.fixture(scope="module")
def config(home):
    return isolated_config(home, thresholds=RELAXED, hparams={"epochs": 4})


@pytest.fixture(scope="module")
def first_run(churn_spec, churn_sample, config):
    return run_local(churn_spec, dataclass_replace(config, input_base=str(churn_sample)))


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
                                                     thresholds=RELAXED, hparams={"epochs": 4}, input_base=str(data)))
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
    tft_output = tft.TFTransformOutput(first_run.component("Transform").outputs["transform_graph"][0].uri)
    raw_spec = tft_output.raw_feature_spec()
    z = tft_output.transform_features_layer()(
        {"CreditScore": tf.constant([[0], [1]], dtype=raw_spec["CreditScore"].dtype)})["CreditScore"].numpy().ravel()
    std = 1.0 / (z[1] - z[0])
    mean = -z[0] * std
    assert abs(train.mean() - both.mean()) > 1.0  # the check below can tell the two apart
    assert mean == pytest.approx(train.mean(), abs=0.1)  # tf.Transform accumulates in float32
    assert std == pytest.approx(train.std(), rel=1e-3)


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


def test_second_run_with_unchanged_inputs_is_cached(first_run, churn_spec, churn_sample, config):
    second = run_local(churn_spec, dataclass_replace(config, input_base=str(churn_sample)))
    states = {c.component: c.state for c in second.components}
    for component in ("CsvExampleGen", "StatisticsGen", "ExampleValidator", "ValidationGate", "Transform", "Trainer"):
        assert states[component] == "CACHED", states
    # The Evaluator re-checks the same model against itself, now the blessed baseline;
    # the Pusher then finds it already served and publishes no copy.
    assert second.blessed is True
    assert second.pushed_path == first_run.pushed_path
    assert sorted(p.name for p in pathlib.Path(first_run.pushed_path).parent.iterdir()) == \
        [pathlib.Path(first_run.pushed_path).name]


def test_slices_are_reported_per_geography_and_gender(first_run):
    assert {"Geography=France", "Geography=Germany", "Geography=Spain", "Gender=Female", "Gender=Male"} <= \
        set(first_run.slices)
    counts = [first_run.slices[f"Gender={g}"]["example_count"] for g in ("Female", "Male")]
    assert sum(counts) == first_run.metrics["example_count"]


def test_a_model_that_misses_a_gate_is_told_which_value_and_bound(first_run, churn_spec, churn_sample, config):
    """Another seed trains another model; the first run's model is its baseline."""
    report = run_local(churn_spec, dataclass_replace(config, input_base=str(churn_sample), seed=7,
                                                     thresholds={"AUC": {"lower_bound": 0.99}}))
    assert report.blessed is False and report.pushed_path is None
    expected = (f"auc on the test split (overall) is {report.metrics['auc']:.4f}, needs >= 0.99; "
                f"last blessed model: {first_run.metrics['auc']:.4f}")
    assert expected in report.failures
    # The no-regression gate fails too exactly when this model scores below the baseline.
    regressed = report.metrics["auc"] < first_run.metrics["auc"]
    assert len(report.failures) == 1 + regressed
    assert f"failed: {expected}" in report.summary()


def _drifted(home: pathlib.Path, name: str, edit) -> pathlib.Path:
    directory = home / name
    path = write_sample(CHURN_CSV, directory, 600)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")
    return directory


def _drop_geography(lines):
    header = lines[0].split(",")
    col = header.index("Geography")
    return [",".join(cells[:col] + cells[col + 1:]) for cells in (line.split(",") for line in lines)]


def _text_in_credit_score(lines):
    cells = lines[5].split(",")
    cells[3] = "n/a"
    return lines[:5] + [",".join(cells)] + lines[6:]


def _unseen_country(lines):
    return [lines[0]] + [line.replace(",Spain,", ",Italy,") for line in lines[1:]]


@pytest.mark.parametrize("name, edit, feature, problem", [
    ("missing_column", _drop_geography, "Geography", "Column dropped"),
    ("wrong_type", _text_in_credit_score, "CreditScore", "Unexpected data type"),
    ("unseen_category", _unseen_country, "Geography", "Unexpected string values"),
])
def test_drifted_csv_is_blocked_before_training(first_run, churn_spec, config, home, name, edit, feature, problem):
    versions_before = sorted(pathlib.Path(config.serving_dir_for(churn_spec)).iterdir())
    data_dir = _drifted(home, name, edit)
    with pytest.raises(DataAnomalyError) as error:
        run_local(churn_spec, dataclass_replace(config, input_base=str(data_dir)))
    message = str(error.value)
    assert str(data_dir) in message and repr(feature) in message and problem in message
    assert sorted(pathlib.Path(config.serving_dir_for(churn_spec)).iterdir()) == versions_before


@pytest.mark.parametrize("trainer", ["estimator", "premade"])
def test_every_trainer_mode_serves_the_same_classification_outputs(first_run, churn_spec, churn_sample, home, trainer):
    """The Keras run above, then each Estimator mode on the same data: same keys, same class names."""
    config = isolated_config(home / trainer, input_base=str(churn_sample), thresholds=RELAXED,
                             trainer=trainer, hparams={"epochs": 2})
    report = run_local(churn_spec, config)
    assert report.blessed is True and report.pushed_path
    instance = dict(churn_spec.example_instance)
    [keras_answer] = predict(pathlib.Path(first_run.pushed_path), [instance])
    [answer] = predict(pathlib.Path(report.pushed_path), [instance])
    assert set(answer) == set(keras_answer) == {"probability", "probabilities", "class_ids", "classes"}
    assert answer["classes"] == churn_spec.label_names[answer["class_ids"]]
    assert answer["probabilities"][1] == pytest.approx(answer["probability"], rel=1e-6)
