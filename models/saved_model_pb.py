"""Edits of a SavedModel's signature map in place (saved_model.pb), shared by the Keras and estimator exports.

Neither Keras nor Estimators write exactly the signatures TF Serving's clients
expect (method names, signature names); both fix them up with this one rewriter.
"""
from __future__ import annotations

import os
from typing import Callable

import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

SignatureEdit = Callable[[meta_graph_pb2.MetaGraphDef], None]


def edit_signatures(saved_model_dir: str, edit: SignatureEdit) -> None:
    """Applies `edit` to every meta graph of `saved_model_dir`/saved_model.pb and writes it back."""
    path = os.path.join(saved_model_dir, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        edit(meta_graph)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(saved_model.SerializeToString())
