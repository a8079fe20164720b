"""TF-DF models need TF-DF's custom ops registered in the process that loads them.

A SavedModel exported by the `tfdf` trainer keeps its trees in `assets/` as
Yggdrasil files (`<prefix>header.pb`, `<prefix>nodes-*`); loading it without the
ops fails with "Op type not registered 'SimpleMLInferenceOp...'".
"""
from __future__ import annotations

import os

import tensorflow as tf


def is_tfdf_model(saved_model_dir: str) -> bool:
    return bool(tf.io.gfile.glob(os.path.join(saved_model_dir, "assets", "*header.pb")))


def register_ops_for(saved_model_dir: str) -> None:
    """Imports TF-DF (which registers its ops) when the SavedModel is a TF-DF model."""
    if is_tfdf_model(saved_model_dir):
        import tensorflow_decision_forests  # noqa: F401
