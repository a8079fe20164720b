"""A TF-DF model (the `tfdf` trainer's kind) loads and answers in the model server's Session-based servable."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from serving.custom_ops import is_tfdf_model
from tests.serving.serving_test_support import REPO


@pytest.fixture(scope="module")
def tfdf_model_dir(tmp_path_factory):
    tfdf = pytest.importorskip("tensorflow_decision_forests")
    import tensorflow as tf
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")
    model = tfdf.keras.GradientBoostedTreesModel(num_trees=20, verbose=0, random_seed=1)
    model.fit(tf.data.Dataset.from_tensor_slices(({"a": x[:, 0], "b": x[:, 1]}, y)).batch(64))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, "a"), tf.TensorSpec([None], tf.float32, "b")])
    def serve(a, b):
        return {"probability": model({"a": a, "b": b})}

    path = str(tmp_path_factory.mktemp("tfdf") / "1")
    model.save(path, signatures={"serving_default": serve})
    return path


def test_a_tfdf_model_is_recognised_and_served(tfdf_model_dir):
    """In a fresh process (as the server is): nothing imported TF-DF before the servable loads the model."""
    assert is_tfdf_model(tfdf_model_dir)
    probe = ("import json, sys, numpy as np; from serving.servable import Servable; "
             "assert 'tensorflow_decision_forests' not in sys.modules; "
             f"s = Servable.load('gbt', 1, {tfdf_model_dir!r}); "
             "out = s.run('serving_default', {'a': np.array([2.0, -2.0], np.float32), "
             "'b': np.array([2.0, -2.0], np.float32)}); s.close(); "
             "print(json.dumps(out['probability'].reshape(-1).tolist()))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    probability = json.loads(result.stdout.strip().splitlines()[-1])
    assert probability[0] > 0.5 > probability[1], probability
