"""Small SavedModels with the same signatures the pipeline exports, built in seconds.

The serving tests must not depend on a pipeline run, so they build:
- a Keras binary classifier shaped like the churn export (`serving_default` on raw
  features, `serving_tf_example` on serialized tf.Example, predict method), and
- a TF1-builder model carrying real classify/regress signatures (what Estimator
  exports carry), with y = 2x + 1 so answers are exact.
"""
from __future__ import annotations

import os
import shutil

import tensorflow as tf

GEOGRAPHIES = ["France", "Germany", "Spain"]

RAW_SPEC = {
    "CreditScore": tf.TensorSpec([None], tf.int64, name="CreditScore"),
    "Geography": tf.TensorSpec([None], tf.string, name="Geography"),
    "Balance": tf.TensorSpec([None], tf.float32, name="Balance"),
}

EXAMPLE_FEATURES = {
    "CreditScore": tf.io.FixedLenFeature([], tf.int64),
    "Geography": tf.io.FixedLenFeature([], tf.string),
    "Balance": tf.io.FixedLenFeature([], tf.float32),
}


def build_keras_classifier(export_dir: str, seed: int = 0) -> str:
    """Export a churn-like Keras model with `serving_default` and `serving_tf_example`."""
    tf.keras.utils.set_random_seed(seed)
    credit = tf.keras.Input(shape=(1,), name="CreditScore", dtype=tf.int64)
    geography = tf.keras.Input(shape=(1,), name="Geography", dtype=tf.string)
    balance = tf.keras.Input(shape=(1,), name="Balance", dtype=tf.float32)
    geo_onehot = tf.keras.layers.StringLookup(vocabulary=GEOGRAPHIES, output_mode="one_hot")(geography)
    features = tf.keras.layers.Concatenate()([
        tf.cast(credit, tf.float32) / 850.0,
        geo_onehot,
        balance / 100000.0,
    ])
    hidden = tf.keras.layers.Dense(8, activation="relu")(features)
    probability = tf.keras.layers.Dense(1, activation="sigmoid")(hidden)
    model = tf.keras.Model([credit, geography, balance], probability)

    def outputs(raw: dict) -> dict:
        p = model({name: tf.expand_dims(value, -1) for name, value in raw.items()})
        probabilities = tf.concat([1.0 - p, p], axis=1)
        class_ids = tf.argmax(probabilities, axis=1)
        return {
            "probabilities": probabilities,
            "class_ids": class_ids,
            "classes": tf.gather(tf.constant(["0", "1"]), class_ids),
            "probability": p[:, 0],
        }

    @tf.function(input_signature=list(RAW_SPEC.values()))
    def serve_raw(CreditScore, Geography, Balance):  # noqa: N803 - names are the features
        return outputs({"CreditScore": CreditScore, "Geography": Geography, "Balance": Balance})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples):
        return outputs(tf.io.parse_example(examples, EXAMPLE_FEATURES))

    model.save(export_dir, signatures={
        "serving_default": serve_raw.get_concrete_function(),
        "serving_tf_example": serve_examples.get_concrete_function(),
    })
    return export_dir


def build_estimator_like(export_dir: str) -> str:
    """Export a TF1 SavedModel with classify, regress, predict and a bytes-output signature."""
    sig = tf.compat.v1.saved_model
    with tf.Graph().as_default():
        serialized = tf.compat.v1.placeholder(tf.string, [None], name="input_example_tensor")
        x = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([], tf.float32)})["x"]
        weight = tf.compat.v1.Variable(2.0, name="weight")
        bias = tf.compat.v1.Variable(1.0, name="bias")
        y = weight * x + bias
        scores = tf.stack([tf.sigmoid(-y), tf.sigmoid(y)], axis=1)
        classes = tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(x)[0], 1])
        x_raw = tf.compat.v1.placeholder(tf.float32, [None], name="x_raw")
        payload = tf.compat.v1.placeholder(tf.string, [None], name="payload")
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            builder = sig.Builder(export_dir)
            builder.add_meta_graph_and_variables(
                session, [sig.SERVING],
                signature_def_map={
                    "serving_default": sig.classification_signature_def(serialized, classes, scores),
                    "regression": sig.regression_signature_def(serialized, y),
                    "predict_raw": sig.predict_signature_def({"x": x_raw}, {"y": weight * x_raw + bias}),
                    "echo": sig.predict_signature_def(
                        {"payload": payload},
                        {"payload_bytes": tf.identity(payload), "length": tf.strings.length(payload)}),
                })
            builder.save()
    return export_dir


def copy_version(src: str, base_path: str, version: int) -> str:
    """Copy an export to `<base_path>/<version>` the way a Pusher would (atomically renamed)."""
    target = os.path.join(base_path, str(version))
    staging = os.path.join(base_path, f".tmp-{version}")
    shutil.copytree(src, staging)
    os.rename(staging, target)
    return target
