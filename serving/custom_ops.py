"""Custom TF ops a SavedModel needs registered in the process that loads it.

TF Serving links such ops into its binary; in Python, importing the op library
registers them. The one case here: TF-DF models (trainer `tfdf`) keep their trees
in `assets/` as Yggdrasil files (`<prefix>header.pb`, `<prefix>nodes-*`), and
loading one without TF-DF's ops fails with "Op type not registered
'SimpleMLInferenceOp...'". The model server, `pipeline predict` and the model
comparison all load models through `register_ops_for`.
"""
from __future__ import annotations

import os

import tensorflow as tf


def is_tfdf_model(saved_model_dir: str) -> bool:
    return bool(tf.io.gfile.glob(os.path.join(saved_model_dir, "assets", "*header.pb")))


def register_ops_for(saved_model_dir: str) -> None:
    """Imports TF-DF (which registers its ops) when the SavedModel is a TF-DF model."""
    if is_tfdf_model(saved_model_dir):
        try:
            import tensorflow_decision_forests  # noqa: F401
        except ImportError as error:
            raise RuntimeError(f"{saved_model_dir} is a TensorFlow Decision Forests model; install "
                               f"tensorflow-decision-forests (the release matching TensorFlow) to load it") from error
