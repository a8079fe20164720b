"""Every ImageNet backbone serves its own preprocess_input, through the real Transform and export.

The served model gets PNG bytes: its graph decodes them with the Trainer's
decode function (`images.decode_features`) and its first layer applies the
backbone's scaling; the export is the Keras trainer's own export function. Weights are
random (`weights: none`): these machines cannot download ImageNet weights, and
preprocessing does not depend on them.
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import metadata_io, schema_utils

from models import backbones, builders, images, signatures, vision
from models.preprocessing import preprocessing_fn
from pipeline.config import DEFAULT_BEAM_ARGS
from specs.dataset import load_spec

SIZE = 32
OWN_PREPROCESSING = {  # written out, not read from the registry under test
    "vgg16": tf.keras.applications.vgg16.preprocess_input,
    "resnet50": tf.keras.applications.resnet50.preprocess_input,
    "mobilenet_v2": tf.keras.applications.mobilenet_v2.preprocess_input,
    "efficientnet_b0": tf.keras.applications.efficientnet.preprocess_input,
    "densenet121": tf.keras.applications.densenet.preprocess_input,
    "nasnet_mobile": tf.keras.applications.nasnet.preprocess_input,
}


def pixels(seed: int, size: int = SIZE, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(size, size, channels), dtype=np.uint8)


def png(image: np.ndarray) -> bytes:
    return tf.io.encode_png(image).numpy()


@pytest.fixture(scope="module")
def spec():
    return load_spec("cats_vs_dogs")


@pytest.fixture(scope="module")
def transform_output(spec, tmp_path_factory):
    """The project's preprocessing_fn analysed by tf.Transform on two PNG rows."""
    feature_spec = {"image": tf.io.FixedLenFeature([1], tf.string), "label": tf.io.FixedLenFeature([1], tf.int64)}
    metadata = tft.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))
    rows = [{"image": [png(pixels(i))], "label": [i % 2]} for i in range(2)]
    output_dir = tmp_path_factory.mktemp("transform")
    config = {"spec": spec.to_dict()}
    with tft_beam.Context(temp_dir=str(output_dir / "tmp"), force_tf_compat_v1=False):
        with beam.Pipeline(argv=list(DEFAULT_BEAM_ARGS)) as p:
            transform_fn = (p | beam.Create(rows), metadata) | tft_beam.AnalyzeDataset(
                lambda inputs: preprocessing_fn(inputs, config))
            _ = transform_fn | tft_beam.WriteTransformFn(str(output_dir))
    metadata_io.write_metadata(metadata, str(output_dir / tft.TFTransformOutput.RAW_METADATA_DIR))
    return tft.TFTransformOutput(str(output_dir))


def build(spec, transform_output, builder: str, **extra) -> tf.keras.Model:
    hparams = {**spec.model, "builder": builder, "image_size": [SIZE, SIZE], "weights": "none",
               "head_units": 8, **extra}
    return builders.build_model(spec, transform_output, hparams)


@pytest.fixture(scope="module")
def built(spec, transform_output):
    """Each backbone built once with the defaults (building NASNet or DenseNet takes tens of seconds here);
    the tests below read these models and never change them."""
    models: dict[str, tf.keras.Model] = {}

    def get(builder: str) -> tf.keras.Model:
        if builder not in models:
            models[builder] = build(spec, transform_output, builder)
        return models[builder]
    return get


def preprocessing_of(model: tf.keras.Model) -> tf.keras.Model:
    return tf.keras.Model(model.inputs, model.get_layer("preprocess_input").output)


def test_the_transform_keeps_images_encoded(transform_output):
    assert transform_output.transformed_feature_spec()["image"].dtype == tf.string


def test_every_keras_applications_backbone_is_registered():
    assert set(backbones.TRANSFER_BACKBONES) == set(OWN_PREPROCESSING)
    assert set(OWN_PREPROCESSING) <= set(builders.BUILDERS)


@pytest.mark.parametrize("builder", sorted(OWN_PREPROCESSING))
def test_model_input_preprocessing_is_the_backbones_own_preprocess_input(built, builder):
    model = built(builder)
    image = pixels(11)
    # What the served graph and the Trainer's input pipeline feed the model: the decode function on PNG bytes.
    decoded = images.decode_features({"image": tf.constant([[png(image)]])}, "image",
                                     images.ImageOptions.of_model(model, "image"))["image"]
    np.testing.assert_array_equal(decoded.numpy()[0], image.astype(np.float32))
    expected = OWN_PREPROCESSING[builder](image[np.newaxis].astype(np.float32))
    np.testing.assert_allclose(preprocessing_of(model)(decoded).numpy(), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("builder", sorted(OWN_PREPROCESSING))
def test_served_graph_preprocesses_png_bytes_with_the_backbones_own_preprocess_input(
        spec, transform_output, built, builder, tmp_path):
    """Every backbone, through an exported served graph: the built model cut after its preprocess_input layer.

    The export is the trainer's own (`export_keras_model`: Transform layer, PNG decode, the model); the cut model's
    output is the preprocessed image, which the binary head passes through flattened as `probability`. Exporting
    the whole network costs minutes per backbone here (NASNet the most); the full served model is checked below.
    """
    model = built(builder)
    cut = tf.keras.Model(model.inputs, model.get_layer("preprocess_input").output, name=model.name)
    assert [layer.name for layer in cut.layers] == ["image", "preprocess_input"]
    signatures.export_keras_model(cut, spec, transform_output, str(tmp_path / "served"))
    image = pixels(13)
    served = tf.saved_model.load(str(tmp_path / "served")).signatures["serving_default"]
    answer = served(image=tf.constant([png(image)]))["probability"].numpy().reshape((1, SIZE, SIZE, 3))
    expected = OWN_PREPROCESSING[builder](image[np.newaxis].astype(np.float32))
    np.testing.assert_allclose(answer, expected, rtol=1e-5, atol=1e-4)
    if builder != "efficientnet_b0":  # EfficientNet's preprocess_input passes pixels through (it rescales inside)
        assert not np.allclose(answer, image[np.newaxis])


# The whole network exported and served; two (caffe mode and EfficientNet's in-model scaling) keep the test
# affordable on a 2-core machine (a NASNet export takes minutes).
@pytest.mark.parametrize("builder", ["vgg16", "efficientnet_b0"])
def test_served_model_preprocesses_png_bytes_with_the_backbones_own_preprocess_input(
        spec, transform_output, built, builder, tmp_path):
    model = built(builder)
    image = pixels(12)
    signatures.export_keras_model(model, spec, transform_output, str(tmp_path / "served"))
    reloaded = tf.keras.models.load_model(str(tmp_path / "served"))
    expected = OWN_PREPROCESSING[builder](image[np.newaxis].astype(np.float32))
    np.testing.assert_allclose(preprocessing_of(reloaded)(image[np.newaxis].astype(np.float32)).numpy(), expected,
                               rtol=1e-5, atol=1e-4)
    # The served signature answers PNG bytes exactly as the model answers those pixels.
    served = tf.saved_model.load(str(tmp_path / "served")).signatures["serving_default"]
    answer = served(image=tf.constant([png(image)]))["probabilities"].numpy()
    np.testing.assert_allclose(answer[:, 1:], model(image[np.newaxis].astype(np.float32), training=False).numpy(),
                               rtol=1e-4, atol=1e-5)


def test_unit_scale_reproduces_the_lectures_x_over_255_on_purpose(spec, transform_output, built):
    image = pixels(5)[np.newaxis].astype(np.float32)
    lecture = preprocessing_of(build(spec, transform_output, "vgg16", preprocessing="unit_scale"))(image).numpy()
    np.testing.assert_allclose(lecture, image / 255.0, rtol=1e-6)
    own = preprocessing_of(built("vgg16"))(image).numpy()
    assert own.min() < -100  # caffe mode: ImageNet means subtracted from 0..255 pixels, far from x/255


def test_unknown_preprocessing_mode_is_refused_with_the_choices(spec, transform_output):
    with pytest.raises(ValueError, match="backbone, unit_scale"):
        build(spec, transform_output, "mobilenet_v2", preprocessing="imagenet")


def test_grayscale_images_are_decoded_to_rgb_for_backbones():
    gray = pixels(3, channels=1)
    options = images.ImageOptions.from_model({"builder": "resnet50", "image_size": [SIZE, SIZE], "channels": 1})
    assert options.channels == 3
    decoded = images.decode_images(tf.constant([png(gray)]), options).numpy()[0]
    np.testing.assert_array_equal(decoded, np.repeat(gray, 3, axis=-1).astype(np.float32))


@pytest.mark.parametrize("builder", ["resnet50", "mobilenet_v2", "nasnet_mobile"])
def test_fine_tuning_unfreezes_only_the_backbones_last_block(spec, transform_output, builder):
    model = build(spec, transform_output, builder, fine_tune_epochs=1)
    base = model.get_layer(builder)
    assert base.trainable_weights == []
    assert vision.unfreeze_for_fine_tuning(model, spec, {**spec.model, "builder": builder, "fine_tune_epochs": 1}) == 1
    trainable = {layer.name for layer in base.layers if layer.trainable and layer.weights}
    assert trainable and len(trainable) < len([layer for layer in base.layers if layer.weights]) / 4


def test_missing_local_weights_file_names_the_file_to_copy(tmp_path):
    with pytest.raises(FileNotFoundError, match="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        backbones.weights_argument("resnet50", str(tmp_path / "absent.h5"))
