"""Image pipelines end to end: TFDS -> validation -> image Transform -> CNN / VGG16 -> TFMA -> push.

These machines cannot download TFDS data or ImageNet weights, so the runs use
`tfds.testing.mock_data` (TFDS's random examples with the real features and
class names; the executors run in this process, DirectRunner in_memory, where
the patch applies) and VGG16 with random weights at 32x32. Labels are random,
so the blessing thresholds are relaxed; the real-data accuracy of the same path
(scikit-learn digits) is the CLI figure in docs/images.md.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests.support import isolated_config
from models import heads, images, vision
from pipeline.local_runner import run_local
from specs.dataset import load_spec

pytestmark = pytest.mark.e2e
MOCK_EXAMPLES = 40


def run_mocked(spec, config):
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        return run_local(spec, config)


@pytest.fixture(scope="module")
def fashion_cnn(tmp_path_factory):
    """The lecture CNN on fashion_mnist (train/test splits), trained under MirroredStrategy on CPU."""
    spec = load_spec("fashion_mnist")
    config = isolated_config(tmp_path_factory.mktemp("fashion_cnn"), strategy="mirrored",
                         hparams={"epochs": 1, "batch_size": 16},
                         thresholds={"SparseCategoricalAccuracy": {"lower_bound": 0.0}})
    return spec, config, run_mocked(spec, config)


@pytest.fixture(scope="module")
def cats_vgg16(tmp_path_factory):
    """VGG16 transfer learning (random weights, 32x32, one fine-tuning epoch) on cats_vs_dogs
    (train[:80%] / train[80%:]), then the same model through the estimator trainer mode."""
    spec = load_spec("cats_vs_dogs")
    # Random labels: a later model may score below the first, so no no-regression gate here.
    spec = dataclasses.replace(spec, evaluation={**spec.evaluation, "no_regression_metric": None})
    config = isolated_config(tmp_path_factory.mktemp("cats_vgg16"),
                         hparams={"epochs": 1, "fine_tune_epochs": 1, "batch_size": 16, "image_size": [32, 32],
                                  "weights": "none", "head_units": 16},
                         thresholds={"BinaryAccuracy": {"lower_bound": 0.0}})
    keras_report = run_mocked(spec, config)
    # The estimator modes train one phase and refuse fine_tune_epochs (tests/test_early_stopping.py).
    estimator_report = run_mocked(spec, dataclasses.replace(config, trainer="estimator",
                                                            hparams={**config.hparams, "fine_tune_epochs": 0}))
    return spec, config, keras_report, estimator_report


def rest_predict(model_base: str, name: str, images: list[bytes]) -> dict:
    """A TF Serving REST :predict call with {"b64": ...} images, answered by the project's server code."""
    from serving.config import single_model
    from serving.inference import InferenceService
    from serving.manager import ModelManager
    from serving.rest import RestApi

    manager = ModelManager(single_model(name, model_base), poll_wait_seconds=0)
    manager.start()
    try:
        body = json.dumps({"instances": [{"image": {"b64": base64.b64encode(i).decode()}} for i in images]})
        status, answer = RestApi(manager, InferenceService()).handle("POST", f"/v1/models/{name}:predict",
                                                                     body.encode())
    finally:
        manager.stop()
    assert status == 200, answer
    return json.loads(answer)


def png(shape: tuple[int, ...], seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    return tf.io.encode_png(pixels).numpy()


def test_fashion_mnist_cnn_is_blessed_and_pushed(fashion_cnn):
    spec, config, report = fashion_cnn
    assert report.component("TfdsExampleGen").state == "COMPLETE"
    assert report.blessed is True and report.pushed_path
    assert report.metrics["example_count"] == MOCK_EXAMPLES  # the test split is TFDS `test`, not train


def test_pushed_cnn_answers_png_bytes_over_rest_with_class_names(fashion_cnn):
    spec, config, report = fashion_cnn
    answer = rest_predict(config.serving_dir_for(spec), spec.name, [png((28, 28, 1)), png((28, 28, 1), seed=1)])
    predictions = answer["predictions"]
    assert len(predictions) == 2
    for row in predictions:
        assert row["classes"] in spec.label_names
        assert spec.label_names[row["class_ids"]] == row["classes"]
        assert sum(row["probabilities"]) == pytest.approx(1.0, abs=1e-4)


def test_builders_refuse_softmax_with_from_logits(fashion_cnn):
    import tensorflow_transform as tft
    spec, config, report = fashion_cnn
    transform_graph = next(pathlib.Path(config.root_for(spec)).glob("Transform/transform_graph/*"))
    model = vision.build_cnn(spec, tft.TFTransformOutput(str(transform_graph)), {**spec.model, "learning_rate": 1e-3})
    assert model.layers[-1].activation.__name__ == "softmax"
    assert model.loss.get_config()["from_logits"] is False
    with pytest.raises(ValueError, match="from_logits=True"):
        heads.compile_for_task(model, spec, 1e-3, loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def test_vgg16_keras_and_estimator_models_are_blessed_and_pushed(cats_vgg16):
    spec, config, keras_report, estimator_report = cats_vgg16
    for report in (keras_report, estimator_report):
        assert report.blessed is True and report.pushed_path
    assert estimator_report.component("Transform").state == "CACHED"  # same data, only the trainer changed
    assert estimator_report.pushed_path != keras_report.pushed_path


def test_served_vgg16_preprocessing_is_preprocess_input(cats_vgg16):
    spec, config, keras_report, _ = cats_vgg16
    pixels = np.random.default_rng(3).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    encoded = tf.saved_model.load(keras_report.pushed_path).tft_layer(
        {"image": tf.constant([[tf.io.encode_png(pixels).numpy()]])})["image"]
    assert encoded.dtype == tf.string  # the Transform keeps images encoded; the model's graph decodes them
    served = tf.keras.models.load_model(keras_report.pushed_path)
    decoded = images.decode_features({"image": encoded}, "image", images.ImageOptions.of_model(served, "image"))
    scaled = tf.keras.Model(served.inputs, served.get_layer("preprocess_input").output)(decoded["image"])
    expected = tf.keras.applications.vgg16.preprocess_input(pixels[np.newaxis].astype(np.float32))
    np.testing.assert_allclose(scaled.numpy(), expected, atol=1e-4)


def test_pushed_vgg16_answers_png_bytes_of_any_size_over_rest(cats_vgg16):
    spec, config, _, _ = cats_vgg16
    answer = rest_predict(config.serving_dir_for(spec), spec.name, [png((50, 70, 3)), png((20, 20, 1))])
    for row in answer["predictions"]:
        assert row["classes"] in ("cat", "dog")
        assert 0.0 <= row["probability"] <= 1.0


def test_vgg16_base_is_frozen_and_fine_tuning_unfreezes_only_the_last_block(cats_vgg16):
    import tensorflow_transform as tft
    spec, config, _, _ = cats_vgg16
    transform_graph = next(pathlib.Path(config.root_for(spec)).glob("Transform/transform_graph/*"))
    hparams = {**spec.model, **config.hparams, "fine_tune_epochs": 1}
    model = vision.build_transfer(spec, tft.TFTransformOutput(str(transform_graph)), hparams)
    base = model.get_layer("vgg16")
    assert base.trainable_weights == []
    assert model.layers[-1].activation.__name__ == "sigmoid" and model.loss.get_config()["from_logits"] is False
    assert vision.unfreeze_for_fine_tuning(model, spec, hparams) == 1
    assert {w.name.split("/")[0] for w in base.trainable_weights} == {"block5_conv1", "block5_conv2", "block5_conv3"}
    assert model.optimizer.learning_rate.numpy() == pytest.approx(float(spec.model["fine_tune_learning_rate"]))
