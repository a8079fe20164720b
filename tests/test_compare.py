"""Model selection: the winner is chosen on validation (never test), pushed alone, and the table is complete.

The executor tests run the selector and the comparison table on real SavedModels
and real TFRecord splits: two tiny models that rank the validation and the test
rows in opposite orders, so choosing on test would pick the other one.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from sklearn.metrics import roc_auc_score
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components import candidates as cc
from pipeline.compare import Candidate, candidates_for, selection_metric
from specs.dataset import load_spec
from specs.errors import SpecError


def write_split(uri: pathlib.Path, split: str, xs: np.ndarray, labels: np.ndarray) -> None:
    (uri / f"Split-{split}").mkdir(parents=True)
    with tf.io.TFRecordWriter(str(uri / f"Split-{split}" / "data.gz"), options="GZIP") as writer:
        for x, y in zip(xs, labels):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=[x])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[y]))})).SerializeToString())


def write_model(root: pathlib.Path, name: str, weight: float) -> standard_artifacts.Model:
    """A served binary classifier P(label=1) = sigmoid(weight * x), laid out as a candidate Trainer's output."""
    class Served(tf.Module):
        def __init__(self):
            super().__init__()
            self.weight = tf.Variable([weight])

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            x = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
            p = tf.sigmoid(self.weight * x)
            return {"probabilities": tf.concat([1 - p, p], axis=1), "probability": tf.reshape(p, [-1])}

    module = Served()
    artifact = standard_artifacts.Model()
    artifact.uri = str(root / f"Trainer.{name}" / "model" / "7")
    tf.saved_model.save(module, f"{artifact.uri}/Format-Serving", signatures={"serving_tf_example": module.serve})
    return artifact


@pytest.fixture(scope="module")
def opposite_splits(tmp_path_factory):
    """Validation labels follow x > 0, test labels x < 0: `up` wins on validation, `down` would win on test."""
    root = tmp_path_factory.mktemp("candidates")
    rng = np.random.default_rng(0)
    examples = standard_artifacts.Examples()
    examples.uri, examples.split_names = str(root / "ExampleGen" / "examples" / "1"), '["validation", "test"]'
    xs = rng.normal(size=200)
    noisy = xs + rng.normal(scale=0.5, size=200)  # AUCs strictly between 0 and 1
    write_split(pathlib.Path(examples.uri), "validation", xs, (noisy > 0).astype(int))
    write_split(pathlib.Path(examples.uri), "test", xs, (noisy < 0).astype(int))
    models = [write_model(root, "up", 3.0), write_model(root, "down", -3.0)]
    return root, examples, models


def run_selector(root, examples, models):
    model_out, selection = standard_artifacts.Model(), cc.ModelSelection()
    model_out.uri, selection.uri = str(root / "sel" / "model"), str(root / "sel" / "selection")
    cc.SelectorExecutor().Do({"examples": [examples], "models": models}, {"model": [model_out], "selection": [selection]},
                             {"metric": "AUC", "label": "label",
                              "candidates": json.dumps({"up": {"trainer": "keras"}, "down": {"trainer": "tfdf"}})})
    return model_out, selection


def test_winner_is_chosen_on_validation_and_test_is_never_read(opposite_splits, tmp_path):
    root, examples, models = opposite_splits
    # Break the test split: a selector that opened it would fail.
    unreadable = standard_artifacts.Examples()
    unreadable.uri, unreadable.split_names = str(tmp_path / "examples"), '["validation", "test"]'
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "Split-validation").symlink_to(pathlib.Path(examples.uri) / "Split-validation")
    (tmp_path / "examples" / "Split-test").mkdir()
    (tmp_path / "examples" / "Split-test" / "data.gz").write_bytes(b"not a tfrecord")
    model_out, selection_artifact = run_selector(tmp_path, unreadable, models)
    selection = json.loads(pathlib.Path(selection_artifact.uri, cc.SELECTION_FILE).read_text())
    assert selection["split"] == "validation" and selection["winner"] == "up"
    assert selection["scores"]["up"] > 0.8 > 0.2 > selection["scores"]["down"]
    # The selector's model output is the winner's SavedModel, byte for byte (what the Evaluator and Pusher get).
    winner_pb = pathlib.Path(models[0].uri, "Format-Serving", "saved_model.pb").read_bytes()
    assert pathlib.Path(model_out.uri, "Format-Serving", "saved_model.pb").read_bytes() == winner_pb


def test_comparison_table_reports_every_candidate_on_test(opposite_splits, tmp_path):
    root, examples, models = opposite_splits
    _, selection = run_selector(tmp_path, examples, models)
    runs = []
    for name, seconds in (("up", 12.5), ("down", 3.0)):
        run = standard_artifacts.ModelRun()
        run.uri = str(tmp_path / f"Trainer.{name}" / "model_run" / "7")
        pathlib.Path(run.uri).mkdir(parents=True)
        pathlib.Path(run.uri, "train_seconds.json").write_text(json.dumps({"seconds": seconds}))
        runs.append(run)
    comparison = cc.ModelComparison()
    comparison.uri = str(tmp_path / "comparison")
    # The Evaluator's config as make_eval_config builds it (thresholds and all): the comparison reuses its
    # model spec and AUC for every candidate.
    gate = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_tf_example", label_key="label",
                                    prediction_key="probability")],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="AUC", per_slice_thresholds=[tfma.PerSliceMetricThreshold(
                slicing_specs=[tfma.SlicingSpec()],
                threshold=tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(
                    lower_bound={"value": 0.99})))])])])
    cc.ComparisonExecutor().Do(
        {"examples": [examples], "models": models, "model_runs": runs, "selection": [selection]},
        {"comparison": [comparison]},
        {"metric": "AUC", "eval_config": proto_utils.proto_to_json(gate), "seed": 42,
         "candidates": json.dumps({"up": {"trainer": "keras", "builder": "mlp"}, "down": {"trainer": "tfdf"}})})
    table = json.loads(pathlib.Path(comparison.uri, cc.TABLE_JSON).read_text())
    assert (table["chosen_on"], table["reported_on"], table["winner"], table["test_rows"]) == ("validation", "test", "up", 200)
    rows = {row["candidate"]: row for row in table["rows"]}
    assert set(rows) == {"up", "down"}
    assert rows["up"]["winner"] and not rows["down"]["winner"]
    # Reported honestly: the validation winner is the worse model on this (opposite) test split.
    assert rows["up"]["test_metric"] < 0.2 < 0.8 < rows["down"]["test_metric"]
    for row in rows.values():
        low, high = row["test_interval"]
        assert low < high and high - low > 0.01
        assert row["parameters"] == 1 and row["size_bytes"] > 0 and row["latency_ms"] > 0
    assert (rows["up"]["train_seconds"], rows["down"]["train_seconds"]) == (12.5, 3.0)
    text = pathlib.Path(comparison.uri, cc.TABLE_TEXT).read_text()
    assert "up *" in text and "[95% CI]" in text and "validation AUC" in text and "POISSON_BOOTSTRAP" in text
    # Test metrics and intervals are the TFMA eval result the artefact holds: one run, every candidate in it.
    evaluation = pathlib.Path(comparison.uri, cc.EVALUATION_DIR)
    config = tfma.load_eval_result(str(evaluation), model_name="up").config
    assert [spec.name for spec in config.model_specs] == ["up", "down"]
    assert all((spec.signature_name, spec.label_key) == ("serving_tf_example", "label") for spec in config.model_specs)
    assert [list(spec.model_names) for spec in config.metrics_specs] == [["up", "down"]]
    assert [m.class_name for m in config.metrics_specs[0].metrics] == ["AUC"]
    assert config.options.compute_confidence_intervals.value
    for name, row in rows.items():
        bounded = tfma.load_eval_result(str(evaluation), model_name=name).get_metrics_for_slice()["auc"]["boundedValue"]
        assert (row["test_metric"], row["test_interval"]) == (
            pytest.approx(bounded["value"]), [pytest.approx(bounded["lowerBound"]), pytest.approx(bounded["upperBound"])])
    # ... and they agree with an independent computation on the same rows (scikit-learn's AUC of the served scores).
    serialized, labels = cc.load_examples(examples, "test", "label")
    for name, model in zip(("up", "down"), models):
        scores = cc.predict(cc.load_served(model), serialized)["probability"]
        assert rows[name]["test_metric"] == pytest.approx(roc_auc_score(labels, scores), abs=2e-3)


@pytest.mark.parametrize("metric, scores, winner", [
    ("AUC", {"a": 0.81, "b": 0.86, "c": 0.84}, "b"),
    ("MeanSquaredError", {"a": 0.52, "b": 0.47, "c": 0.49}, "b"),
    ("AUC", {"a": float("nan"), "b": 0.6}, "b"),
])
def test_choose_takes_the_best_score_in_the_metrics_direction(metric, scores, winner):
    assert cc.choose(metric, scores) == winner


def test_churn_and_digits_images_ship_candidates_including_tfdf_gbt():
    churn = candidates_for(load_spec("churn"))
    assert [c.model.get("trainer") for c in churn] == ["keras", "estimator", "premade", "tfdf"]
    assert selection_metric(load_spec("churn")) == "AUC"
    digits = candidates_for(load_spec("digits_images"))
    assert {c.model["builder"] for c in digits} >= {"cnn", "mobilenet_v2"}
    assert any(c.model.get("preprocessing") == "unit_scale" for c in digits)


def test_builders_option_makes_one_candidate_per_builder():
    spec = load_spec("cats_vs_dogs")
    assert candidates_for(spec, ["vgg16", "resnet50"]) == [Candidate("vgg16", {"builder": "vgg16"}),
                                                           Candidate("resnet50", {"builder": "resnet50"})]


@pytest.mark.parametrize("candidates, message", [
    ((), "nothing to compare"),
    (({"name": "a"}, {"name": "a", "trainer": "premade"}), "must be unique"),
    (({"name": "a-b"}, {"name": "c"}), "letters, digits and _"),
    (({"name": "a"}, {"name": "b", "trainer": "xgboost"}), "not one of"),
    (({"name": "a"},), "at least two"),
])
def test_bad_candidate_lists_are_refused(candidates, message):
    spec = dataclasses.replace(load_spec("churn"), candidates=candidates)
    with pytest.raises(SpecError, match=message):
        candidates_for(spec)


@pytest.mark.e2e
def test_compare_on_churn_pushes_only_the_validation_winner(tmp_path):
    """The real pipeline on 1,500 churn rows: a keras MLP against TF-DF gradient-boosted trees."""
    from pipeline.compare import run_compare
    from specs.dataset import PROJECT_ROOT
    from tests.support import isolated_config, write_sample

    data = write_sample(PROJECT_ROOT / "data/churn/Churn_Modelling.csv", tmp_path / "data", 1500).parent
    spec = dataclasses.replace(load_spec("churn"), candidates=(
        {"name": "mlp", "trainer": "keras"}, {"name": "gbt", "trainer": "tfdf", "num_trees": 50}))
    config = isolated_config(tmp_path, input_base=str(data), hparams={"epochs": 3},
                             thresholds={"AUC": {"lower_bound": 0.5}})
    report, table = run_compare(spec, config)

    assert {c.component for c in report.components} >= {"Trainer.mlp", "Trainer.gbt", "CandidateSelector",
                                                         "Evaluator", "Pusher", "CandidateComparison"}
    selection_uri = report.component("CandidateSelector").outputs["selection"][0].uri
    selection = json.loads(pathlib.Path(selection_uri, cc.SELECTION_FILE).read_text())
    assert selection["winner"] == max(selection["scores"], key=selection["scores"].get)
    # Only the winner is pushed: one version, byte-identical to the winning Trainer's SavedModel.
    versions = [p for p in pathlib.Path(config.serving_dir_for(spec)).iterdir() if p.name.isdigit()]
    assert len(versions) == 1 and report.blessed and report.pushed_path == str(versions[0])
    winner = report.component(f"Trainer.{selection['winner']}").outputs["model"][0].uri
    assert (versions[0] / "saved_model.pb").read_bytes() == \
        pathlib.Path(winner, "Format-Serving", "saved_model.pb").read_bytes()
    # The table: both candidates on the test split from one TFMA run (TF-DF's trees included); the winner's
    # figure is the Evaluator's own TFMA AUC on the same rows.
    comparison_uri = report.component("CandidateComparison").outputs["comparison"][0].uri
    comparison = json.loads(pathlib.Path(comparison_uri, cc.TABLE_JSON).read_text())
    rows = {row["candidate"]: row for row in comparison["rows"]}
    assert set(rows) == {"mlp", "gbt"} and rows[selection["winner"]]["winner"]
    assert rows["mlp"]["parameters"] > 10_000 and rows["gbt"]["parameters"] is None
    assert all(row["train_seconds"] > 0 and row["latency_ms"] > 0 and row["size_bytes"] > 0 for row in rows.values())
    assert rows[selection["winner"]]["test_metric"] == pytest.approx(report.metrics["auc"], abs=1e-6)
    for name, row in rows.items():
        result = tfma.load_eval_result(str(pathlib.Path(comparison_uri, cc.EVALUATION_DIR)), model_name=name)
        assert row["test_metric"] == pytest.approx(result.get_metrics_for_slice()["auc"]["boundedValue"]["value"])
        assert row["test_interval"][0] < row["test_interval"][1]
    assert "mlp" in table and "gbt" in table
