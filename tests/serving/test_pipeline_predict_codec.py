"""`python -m pipeline predict` reads instances with the server's codec and calls the model as the server does."""
from __future__ import annotations

import pathlib

import pytest
import tensorflow as tf

from pipeline.predict import binary_value, predict, to_inputs

HALF_PLUS_TWO = pathlib.Path(__file__).parent / "testdata" / "tf_serving" / "saved_model_half_plus_two_cpu" / "00000123"


def test_predict_answers_like_the_server():
    assert predict(HALF_PLUS_TWO, [{"x": [1.0]}, {"x": [3]}]) == [{"y": [2.5]}, {"y": [3.5]}]


@pytest.mark.parametrize("instances, words", [
    ([{"x": ["a"]}], 'JSON Value: "a" Type: String is not of expected type: float'),
    ([{"x": [1.0], "z": [1.0]}], "does not have named input: z"),
    ([{"x": [1.0]}, {"x": [1.0, 2.0]}], "Expecting tensor size: 1 but got: 2"),
])
def test_predict_refuses_what_the_server_refuses(instances, words):
    with pytest.raises(ValueError) as error:
        predict(HALF_PLUS_TWO, instances)
    assert words in str(error.value)


def test_to_inputs_types_columns_from_the_signature(tmp_path):
    module = tf.Module()
    module.f = tf.function(lambda n, s: {"n": n, "s": s},
                           input_signature=[tf.TensorSpec([None], tf.int64, name="n"),
                                            tf.TensorSpec([None], tf.string, name="s")])
    tf.saved_model.save(module, str(tmp_path), signatures=module.f.get_concrete_function())
    concrete = tf.saved_model.load(str(tmp_path)).signatures["serving_default"]  # keyword inputs, as exports have
    inputs = to_inputs(concrete, [{"n": 3, "s": {"b64": "aGk="}}])
    assert inputs["n"].dtype == tf.int64 and inputs["n"].numpy().tolist() == [3]
    assert inputs["s"].numpy().tolist() == [b"hi"]
    with pytest.raises(ValueError, match="is not of expected type: int64"):
        to_inputs(concrete, [{"n": 3.5, "s": "x"}])


def test_binary_value():
    assert binary_value({"b64": "aGk="}) == b"hi"
    assert binary_value("plain") == "plain"
    with pytest.raises(ValueError, match="invalid base64.*Unable to base64 decode"):
        binary_value({"b64": "not base64!"})
