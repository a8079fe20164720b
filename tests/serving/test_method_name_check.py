"""--enable_signature_method_name_check: off by default (TF Serving's default), TF Serving's errors when on.

In-process on TF Serving's half_plus_two models: the check is a property of InferenceService,
which both transports share (the server tests cover the default over REST and gRPC).
"""
from __future__ import annotations

import numpy as np
import pytest

from serving.errors import Code, ServingError
from serving.inference import InferenceService
from serving.servable import Servable
from tests.serving.serving_test_support import example_bytes
from tests.serving.test_tf_serving_compat import TF2

TF1 = TF2.parent / "saved_model_half_plus_two_cpu"


@pytest.fixture(scope="module")
def servables():
    loaded = {name: Servable.load(name, 123, str(path / "00000123")) for name, path in [("tf1", TF1), ("tf2", TF2)]}
    yield loaded
    for servable in loaded.values():
        servable.close()


def test_default_runs_tf2_predict_signatures_as_classify_and_regress(servables):
    service = InferenceService()
    assert service.regress(servables["tf2"], "regress_x_to_y", [example_bytes({"x": 2.0})]) == [3.0]
    assert service.classify(servables["tf2"], "classify_x_to_y", [example_bytes({"x": 2.0})]) == [[("", 3.0)]]


def test_check_on_refuses_them_with_tf_servings_message(servables):
    service = InferenceService(method_name_check=True)
    with pytest.raises(ServingError) as error:
        service.regress(servables["tf2"], "regress_x_to_y", [example_bytes({"x": 2.0})])
    assert (error.value.code, error.value.message) == (
        Code.INVALID_ARGUMENT,
        "Expected regression signature method_name to be tensorflow/serving/regress. "
        "Was: tensorflow/serving/predict")
    with pytest.raises(ServingError) as error:
        service.classify(servables["tf2"], "classify_x_to_y", [example_bytes({"x": 2.0})])
    assert "Expected classification signature method_name to be tensorflow/serving/classify" in error.value.message


def test_check_on_still_serves_tf1_signatures_whose_method_names_match(servables):
    service = InferenceService(method_name_check=True)
    assert service.regress(servables["tf1"], "regress_x_to_y", [example_bytes({"x": 2.0})]) == [3.0]
    outputs = service.predict(servables["tf1"], "", {"x": np.array([[2.0]], np.float32)})
    assert outputs["y"].tolist() == [[3.0]]
