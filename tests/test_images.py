"""Image path units: the Transform's image preprocessing, TFDS ingestion options, TPU errors."""
from __future__ import annotations

import socket

import numpy as np
import pytest
import tensorflow as tf

from components.tfds_example_gen import (TfdsExampleGen, TfdsSourceError, check_label_names, load_builder,
                                         to_feature)
from models import backbones, images
from models.strategies import StrategyError, make_strategy


def png(pixels: np.ndarray) -> bytes:
    return tf.io.encode_png(pixels).numpy()


def known_image(channels: int, size: int = 32) -> np.ndarray:
    """A deterministic image with distinct values per pixel and channel."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(size, size, channels), dtype=np.uint8)


def test_vgg16_preprocessing_is_keras_preprocess_input_on_0_255_pixels():
    pixels = known_image(3)
    options = images.ImageOptions.from_model({"builder": "vgg16", "image_size": [32, 32]})
    decoded = images.decode_images(tf.constant([[png(pixels)]]), options)
    served = backbones.BackbonePreprocessing("vgg16")(decoded).numpy()
    expected = tf.keras.applications.vgg16.preprocess_input(pixels[np.newaxis].astype(np.float32))
    np.testing.assert_allclose(served, expected, atol=1e-4)
    # caffe mode: BGR order, ImageNet means subtracted, no 0..1 scaling
    np.testing.assert_allclose(served[0, 0, 0, 0], float(pixels[0, 0, 2]) - 103.939, atol=1e-3)


def test_grayscale_images_become_rgb_for_vgg16():
    gray = known_image(1)
    options = images.ImageOptions.from_model({"builder": "vgg16", "image_size": [32, 32], "channels": 1})
    assert options.channels == 3
    decoded = images.decode_images(tf.constant([png(gray)]), options).numpy()
    np.testing.assert_array_equal(decoded, np.repeat(gray, 3, axis=-1)[np.newaxis].astype(np.float32))


def test_cnn_preprocessing_resizes_and_scales_to_unit_range():
    options = images.ImageOptions.from_model({"builder": "cnn", "image_size": [28, 28], "channels": 1})
    jpeg = tf.io.encode_jpeg(known_image(3, size=50)).numpy()  # colour JPEG of another size
    decoded = images.decode_images(tf.constant([png(known_image(1, size=8)), jpeg]), options)
    served = backbones.BackbonePreprocessing("cnn")(decoded).numpy()
    assert served.shape == (2, 28, 28, 1)
    assert 0.0 <= served.min() and served.max() <= 1.0


@pytest.mark.parametrize("model, message", [
    ({"builder": "vgg16", "image_size": [16, 16]}, "at least 32x32"),
    ({"builder": "cnn"}, "model.image_size"),
    ({"builder": "mlp", "image_size": [8, 8]}, "takes no images"),
])
def test_image_options_refuse_unusable_settings(model, message):
    with pytest.raises(ValueError, match=message):
        images.ImageOptions.from_model(model)


def test_tfds_example_gen_needs_train_validation_and_test_splits():
    with pytest.raises(TfdsSourceError, match="exactly train, validation, test"):
        TfdsExampleGen("fashion_mnist", {"train": "train"}, {"image": "image", "label": "label"}, "label")


def test_spec_label_names_must_be_the_tfds_class_names():
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=1):
        builder = tfds.builder("cats_vs_dogs")
        check_label_names(builder, "label", ["cat", "dog"])
        with pytest.raises(TfdsSourceError, match=r"differ from the TFDS class names \['cat', 'dog'\]"):
            check_label_names(builder, "label", ["dog", "cat"])


def test_unknown_tfds_data_set_is_named_in_the_error():
    with pytest.raises(TfdsSourceError, match="TFDS has no data set 'no_such_images'"):
        load_builder({"name": "no_such_images"})


def test_tfds_values_become_typed_features():
    assert to_feature(b"\x89PNG").bytes_list.value == [b"\x89PNG"]
    assert to_feature(np.int64(3)).int64_list.value == [3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tpu_strategy_without_a_tpu_fails_fast_with_what_to_do(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    monkeypatch.delenv("KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", raising=False)
    with pytest.raises(StrategyError, match="no TPU is attached to this machine.*--tpu local"):
        make_strategy("tpu")


def test_tpu_strategy_with_an_unreachable_address_fails_fast():
    # A closed loopback port: nothing listens, so the TCP probe is refused at once.
    with pytest.raises(StrategyError, match="no TPU answers at grpc://127.0.0.1"):
        make_strategy("tpu", f"grpc://127.0.0.1:{free_port()}")


def test_predict_accepts_rest_b64_binary_strings():
    from pipeline.predict import binary_value
    assert binary_value({"b64": "iVBORw=="}) == b"\x89PNG"
    assert binary_value("plain") == "plain"
    with pytest.raises(ValueError, match="invalid base64"):
        binary_value({"b64": "not base64!"})
