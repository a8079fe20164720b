"""The preprocessing_fn under real tf.Transform, and the Keras model builder on its output."""
import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import metadata_io, schema_utils

from models import builders, heads
from models.preprocessing import preprocessing_fn, z_scores
from pipeline.config import DEFAULT_BEAM_ARGS

ROWS = [
    {"CreditScore": 600, "Geography": "France", "Gender": "Male", "Age": 30, "Tenure": 2, "Balance": 0.0,
     "NumOfProducts": 1, "HasCrCard": 1, "IsActiveMember": 0, "EstimatedSalary": 50000.0, "Exited": 0},
    {"CreditScore": 700, "Geography": "Spain", "Gender": "Female", "Age": 50, "Tenure": 8, "Balance": 1000.0,
     "NumOfProducts": 2, "HasCrCard": 0, "IsActiveMember": 1, "EstimatedSalary": 70000.0, "Exited": 1},
    {"CreditScore": 800, "Geography": "France", "Gender": "Female", "Age": 40, "Tenure": 5, "Balance": 500.0,
     "NumOfProducts": 1, "HasCrCard": 1, "IsActiveMember": 1, "EstimatedSalary": 90000.0, "Exited": 0},
]


@pytest.fixture(scope="module")
def transformed(churn_spec, tmp_path_factory):
    """Analyzes the three rows with preprocessing_fn through tft_beam; returns the TFTransformOutput."""
    ints = {"CreditScore", "Age", "Tenure", "NumOfProducts", "HasCrCard", "IsActiveMember", "Exited"}
    feature_spec = {name: tf.io.FixedLenFeature([1], tf.int64 if name in ints else
                                                tf.string if name in ("Geography", "Gender") else tf.float32)
                    for name in ROWS[0]}
    metadata = tft.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))
    rows = [{k: [v] for k, v in row.items()} for row in ROWS]
    output_dir = tmp_path_factory.mktemp("transform")
    config = {"spec": churn_spec.to_dict()}
    with tft_beam.Context(temp_dir=str(output_dir / "tmp"), force_tf_compat_v1=False):
        with beam.Pipeline(argv=list(DEFAULT_BEAM_ARGS)) as p:
            data = p | beam.Create(rows)
            transform_fn = (data, metadata) | tft_beam.AnalyzeDataset(
                lambda inputs: preprocessing_fn(inputs, config))
            _ = transform_fn | tft_beam.WriteTransformFn(str(output_dir))
    metadata_io.write_metadata(metadata, str(output_dir / tft.TFTransformOutput.RAW_METADATA_DIR))
    return tft.TFTransformOutput(str(output_dir))


def test_numeric_features_are_z_scored_and_categories_get_vocabulary_ids(churn_spec, transformed):
    tft_output = transformed
    raw_spec = tft_output.raw_feature_spec()
    raw = {name: tf.constant([[row[name]] for row in ROWS], dtype=raw_spec[name].dtype) for name in ROWS[0]}
    out = tft_output.transform_features_layer()(raw)
    credit = out["CreditScore"].numpy().ravel()
    np.testing.assert_allclose(credit.mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(credit.std(), 1.0, atol=1e-5)
    geography = out["Geography"].numpy().ravel()
    assert geography[0] == geography[2] != geography[1]  # France, Spain, France
    assert tft_output.vocabulary_size_by_name("vocab_Geography") == 2
    assert out["Exited"].dtype == tf.int64 and list(out["Exited"].numpy().ravel()) == [0, 1, 0]


def test_every_numeric_feature_gets_its_own_mean_and_variance(churn_spec, transformed):
    """The one-value features are scaled together by one element-wise analyser (models/preprocessing.py
    `z_scores`): each column must still get its own statistics, as with one analyser per feature."""
    raw_spec = transformed.raw_feature_spec()
    raw = {name: tf.constant([[row[name]] for row in ROWS], dtype=raw_spec[name].dtype) for name in ROWS[0]}
    out = transformed.transform_features_layer()(raw)
    for name in churn_spec.numeric_features:
        values = np.array([row[name] for row in ROWS], dtype=np.float64)
        expected = (values - values.mean()) / values.std() if values.std() else values - values.mean()
        np.testing.assert_allclose(out[name].numpy().ravel(), expected, rtol=1e-5, atol=1e-5, err_msg=name)


def test_features_of_another_width_keep_their_own_analyser(tmp_path):
    """A feature with two values per example is z-scored over all its values, beside two
    one-value features scaled column by column."""
    rows = [{"a": [1.0], "b": [10.0], "pair": [1.0, 5.0]}, {"a": [2.0], "b": [30.0], "pair": [3.0, 7.0]},
            {"a": [6.0], "b": [20.0], "pair": [0.0, 2.0]}]
    feature_spec = {"a": tf.io.FixedLenFeature([1], tf.float32), "b": tf.io.FixedLenFeature([1], tf.float32),
                    "pair": tf.io.FixedLenFeature([2], tf.float32)}
    metadata = tft.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))
    with tft_beam.Context(temp_dir=str(tmp_path), force_tf_compat_v1=False):
        with beam.Pipeline(argv=list(DEFAULT_BEAM_ARGS)) as p:
            transform_fn = (p | beam.Create(rows), metadata) | tft_beam.AnalyzeDataset(z_scores)
            _ = transform_fn | tft_beam.WriteTransformFn(str(tmp_path / "out"))
    metadata_io.write_metadata(metadata, str(tmp_path / "out" / tft.TFTransformOutput.RAW_METADATA_DIR))
    out = tft.TFTransformOutput(str(tmp_path / "out")).transform_features_layer()(
        {name: tf.constant([row[name] for row in rows]) for name in feature_spec})
    for name in ("a", "b"):
        values = np.array([row[name][0] for row in rows])
        np.testing.assert_allclose(out[name].numpy().ravel(), (values - values.mean()) / values.std(), rtol=1e-5)
    pairs = np.array([row["pair"] for row in rows])
    np.testing.assert_allclose(out["pair"].numpy(), (pairs - pairs.mean()) / pairs.std(), rtol=1e-5)
    assert out["pair"].shape == (3, 2)


def test_mlp_builder_is_the_lecture_architecture(churn_spec, transformed):
    tft_output = transformed
    model = builders.build_model(churn_spec, tft_output, dict(churn_spec.model))
    dense = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Dense)]
    assert [d.units for d in dense] == [128, 64, 32, 1]
    assert [d.activation.__name__ for d in dense] == ["relu", "relu", "relu", "sigmoid"]
    assert isinstance(model.optimizer, tf.keras.optimizers.Adam)
    assert isinstance(model.loss, tf.keras.losses.BinaryCrossentropy)
    assert model.loss.get_config()["from_logits"] is False
    # One-hot inputs make room for the out-of-vocabulary bucket.
    assert model.get_layer("Geography_onehot").num_tokens == 3


def test_same_seed_same_initial_weights(churn_spec, transformed):
    tft_output = transformed
    weights = []
    for _ in range(2):
        tf.keras.utils.set_random_seed(7)
        weights.append(builders.build_model(churn_spec, tft_output, dict(churn_spec.model)).get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_softmax_with_from_logits_is_refused(churn_spec):
    inputs = tf.keras.Input(shape=(4,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3, activation="softmax")(inputs))
    with pytest.raises(ValueError, match="from_logits=True"):
        heads.compile_for_task(model, churn_spec, 1e-3,
                               loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logits = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(inputs))
    with pytest.raises(ValueError, match="use from_logits=True"):
        heads.compile_for_task(logits, churn_spec, 1e-3,
                               loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=False))


def test_binary_outputs_are_consistent(churn_spec):
    out = heads.prediction_outputs(churn_spec, tf.constant([[0.2], [0.9]]))
    np.testing.assert_allclose(out["probabilities"].numpy(), [[0.8, 0.2], [0.1, 0.9]], rtol=1e-6)
    assert list(out["class_ids"].numpy()) == [0, 1]
    assert [c.decode() for c in out["classes"].numpy()] == ["stayed", "exited"]
    np.testing.assert_allclose(out["probability"].numpy(), [0.2, 0.9], rtol=1e-6)
