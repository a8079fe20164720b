"""The decision threshold of a binary classifier, chosen on the validation split.

`model.operating_point` in a spec: `{target: f1}` (the threshold with the best
F1) or `{target: recall, value: 0.6}` (the highest threshold that still catches
that share of positives). The served model's `class_ids`/`classes` use the
chosen threshold (heads.prediction_outputs); `probability` stays as it is. The
choice and its validation precision/recall/F1 are written to
`operating_point.json` in the Trainer's run dir for the run summary. Nothing
here reads the test split.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Mapping

import numpy as np
import tensorflow as tf


DEFAULT_THRESHOLD = 0.5
OPERATING_POINT_FILE = "operating_point.json"
progress = logging.getLogger("progress.trainer")


def rates(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 when `score >= threshold` means positive."""
    predicted = scores >= threshold
    true_positives = float(np.sum(predicted & (labels == 1)))
    precision = true_positives / max(float(np.sum(predicted)), 1.0)
    recall = true_positives / max(float(np.sum(labels == 1)), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def choose_threshold(labels: np.ndarray, scores: np.ndarray, point: Mapping[str, Any]) -> float:
    """Best-F1 threshold, or the highest threshold whose recall reaches `value`; among observed scores."""
    candidates = np.unique(scores)
    if point["target"] == "f1":
        return float(max(candidates, key=lambda t: rates(labels, scores, t)["f1"]))
    reaching = [t for t in candidates if rates(labels, scores, t)["recall"] >= float(point["value"])]
    return float(max(reaching))


def choose_and_record(labels: np.ndarray, scores: np.ndarray, point: Mapping[str, Any] | None,
                      run_dir: str) -> float:
    """The threshold to serve (0.5 without an operating point); logged and written next to the run."""
    if not point:
        return DEFAULT_THRESHOLD
    threshold = choose_threshold(labels, scores, point)
    record = {"target": dict(point), "threshold": threshold, "validation_examples": int(len(labels)),
              "validation": rates(labels, scores, threshold),
              "validation_at_0.5": rates(labels, scores, DEFAULT_THRESHOLD)}
    progress.info("operating point (%s, chosen on validation): threshold %.3f, precision %.3f, recall %.3f, "
                  "F1 %.3f", point["target"], threshold, *(record["validation"][k] for k in ("precision", "recall", "f1")))
    tf.io.gfile.makedirs(run_dir)
    with tf.io.gfile.GFile(os.path.join(run_dir, OPERATING_POINT_FILE), "w") as f:
        f.write(json.dumps(record, indent=1))
    return threshold


def keras_validation_scores(model: tf.keras.Model, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(labels, positive-class probabilities) over one pass of the validation split."""
    labels, scores = [], []
    for features, label in dataset:
        scores.append(np.ravel(model(features, training=False)))
        labels.append(np.ravel(label))
    return np.concatenate(labels).astype(int), np.concatenate(scores)


def class_weights(hparams: Mapping[str, Any]) -> dict[int, float] | None:
    """`model.class_weight: {0: 1.0, 1: 3.0}` as Keras wants it (keys may arrive as strings from JSON)."""
    weights = hparams.get("class_weight")
    return {int(k): float(v) for k, v in weights.items()} if weights else None


def estimator_validation_scores(estimator: tf.estimator.Estimator, validation_input_fn, head_output,
                                checkpoint: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, positive-class probabilities) of the `checkpoint` over one pass of the validation split."""
    labels = np.concatenate([np.ravel(label) for _, label in validation_input_fn()]).astype(int)
    scores = np.concatenate([np.ravel(head_output(batch)) for batch in estimator.predict(
        validation_input_fn, checkpoint_path=checkpoint, yield_single_examples=False)])
    return labels, scores
